"""Summary figures and significance tests of per-case metric values.

Everything here takes 1-D sequences of per-case values (``nan`` = undefined, e.g. a
surface distance when one mask is empty) and returns plain numbers:

* :func:`mean_sd`: mean and sample standard deviation (``ddof=1``) of the finite values;
* :func:`ks_normality`: Kolmogorov-Smirnov test of the values against a normal
  distribution with their own mean and sd;
* :func:`signed_rank` (paired) and :func:`rank_sum` (unpaired): two-sided Wilcoxon tests;
* :func:`compare`: picks one of the two from how the cases of two models line up.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from orgseg.errors import DataContractError

KS_TEST = "Kolmogorov-Smirnov (normal, fitted mean/sd)"
SIGNED_RANK = "Wilcoxon signed-rank"
RANK_SUM = "Wilcoxon rank-sum"


@dataclass(frozen=True, slots=True)
class TestResult:
    """One two-sided test: its name, statistic, p-value (``nan`` when it cannot be
    computed, with the reason in ``note``) and the sample sizes."""

    test: str
    statistic: float
    p_value: float
    n_a: int
    n_b: int
    note: str = ""


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise DataContractError(f"expected a 1-D sequence of values, got shape {arr.shape}")
    return arr[np.isfinite(arr)]


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample sd (``ddof=1``) of the finite values; ``nan`` where undefined.

    >>> mean_sd([0.8, 0.9, 1.0, float("nan")])
    (0.9, 0.1)
    >>> mean_sd([0.5])
    (0.5, nan)
    """
    arr = _finite(values)
    if arr.size == 0:
        return math.nan, math.nan
    mean = float(arr.mean())
    sd = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return round(mean, 12), round(sd, 12)


def ks_normality(values: Sequence[float]) -> TestResult:
    """Kolmogorov-Smirnov test of the finite values against N(mean, sd) fitted to them.

    A small p-value says the values are not normally distributed, so mean +- sd
    summarises them poorly and rank tests are the right comparison. Fewer than 3 values,
    or values that are all equal, give ``nan``.
    """
    arr = _finite(values)
    n = int(arr.size)
    if n < 3:
        return TestResult(KS_TEST, math.nan, math.nan, n, 0, note="fewer than 3 values")
    sd = float(arr.std(ddof=1))
    if sd == 0.0:
        return TestResult(KS_TEST, math.nan, math.nan, n, 0, note="all values equal")
    res = stats.kstest(arr, "norm", args=(float(arr.mean()), sd))
    return TestResult(KS_TEST, float(res.statistic), float(res.pvalue), n, 0)


def signed_rank(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Wilcoxon signed-rank test of paired values (pairs with a ``nan`` dropped).

    All-zero differences (identical results) give ``p = 1``.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise DataContractError(
            f"expected two 1-D sequences of paired values of one length, got {x.shape} and "
            f"{y.shape}"
        )
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n == 0:
        return TestResult(SIGNED_RANK, math.nan, math.nan, 0, 0, note="no complete pairs")
    if not np.any(x - y):
        return TestResult(SIGNED_RANK, 0.0, 1.0, n, n, note="all differences zero")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small-sample normal approximation
        res = stats.wilcoxon(x, y, alternative="two-sided")
    return TestResult(SIGNED_RANK, float(res.statistic), float(res.pvalue), n, n)


def rank_sum(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Wilcoxon rank-sum test (Mann-Whitney U) of two independent samples.

    The statistic is Mann-Whitney's U of ``a``.
    """
    x, y = _finite(a), _finite(b)
    if x.size == 0 or y.size == 0:
        return TestResult(
            RANK_SUM, math.nan, math.nan, int(x.size), int(y.size), note="an empty sample"
        )
    res = stats.mannwhitneyu(x, y, alternative="two-sided")
    return TestResult(RANK_SUM, float(res.statistic), float(res.pvalue), int(x.size), int(y.size))


def compare(a: Mapping[str, float], b: Mapping[str, float]) -> TestResult:
    """Compare two models' per-case values, keyed by case id.

    Paired (signed-rank over the shared cases) when the two share at least one case;
    unpaired (rank-sum) when their cases are disjoint, e.g. one model evaluated on one
    test subset and another model on another.

    >>> compare({"c1": 0.9, "c2": 0.8}, {"c3": 0.7}).test
    'Wilcoxon rank-sum'
    """
    shared = sorted(set(a) & set(b))
    if shared:
        return signed_rank([a[c] for c in shared], [b[c] for c in shared])
    return rank_sum(list(a.values()), list(b.values()))
