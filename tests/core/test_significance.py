from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from orgseg.core.significance import (
    KS_TEST,
    RANK_SUM,
    SIGNED_RANK,
    compare,
    ks_normality,
    mean_sd,
    rank_sum,
    signed_rank,
)
from orgseg.errors import DataContractError

RNG = np.random.default_rng(7)


def test_mean_sd_hand_computed_and_nan_dropped():
    mean, sd = mean_sd([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, math.nan])
    assert mean == pytest.approx(5.0)
    # sample sd: sum of squared deviations 32 over n-1 = 7
    assert sd == pytest.approx(math.sqrt(32 / 7))
    assert math.isnan(mean_sd([3.0])[1])
    assert all(math.isnan(v) for v in mean_sd([math.nan]))


@pytest.mark.parametrize("n", [5, 12, 40])
def test_ks_normality_equals_scipy_with_fitted_normal(n):
    x = RNG.gamma(2.0, size=n)
    res = ks_normality(list(x))
    ref = stats.kstest(x, "norm", args=(x.mean(), x.std(ddof=1)))
    assert res.test == KS_TEST
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.n_a == n


def test_ks_normality_undefined_cases_say_why():
    assert ks_normality([1.0, 2.0]).note == "fewer than 3 values"
    assert ks_normality([0.5] * 6).note == "all values equal"
    assert math.isnan(ks_normality([0.5] * 6).p_value)


@pytest.mark.parametrize("n", [6, 15, 60])
def test_signed_rank_equals_scipy(n):
    a = RNG.uniform(0.7, 0.95, n)
    b = a + RNG.normal(0.01, 0.02, n)
    res = signed_rank(list(a), list(b))
    ref = stats.wilcoxon(a, b, alternative="two-sided")
    assert res.test == SIGNED_RANK
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.statistic == pytest.approx(ref.statistic)


def test_signed_rank_drops_incomplete_pairs_and_handles_ties():
    a = [0.9, 0.8, math.nan, 0.7, 0.95, 0.85, 0.6]
    b = [0.91, 0.7, 0.5, 0.75, 0.9, 0.8, 0.65]
    res = signed_rank(a, b)
    keep = [i for i in range(7) if i != 2]
    ref = stats.wilcoxon([a[i] for i in keep], [b[i] for i in keep])
    assert res.n_a == 6 and res.p_value == pytest.approx(ref.pvalue)
    same = signed_rank([0.9, 0.8], [0.9, 0.8])
    assert same.p_value == 1.0 and same.note == "all differences zero"
    with pytest.raises(DataContractError, match="one length"):
        signed_rank([1.0, 2.0], [1.0])


def test_rank_sum_equals_scipy_mann_whitney():
    a = RNG.uniform(0.8, 0.95, 9)
    b = RNG.uniform(0.75, 0.9, 14)
    res = rank_sum(list(a) + [math.nan], list(b))
    ref = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert res.test == RANK_SUM
    assert (res.n_a, res.n_b) == (9, 14)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.statistic == pytest.approx(ref.statistic)


def test_compare_pairs_shared_cases_and_ranks_disjoint_ones():
    a = {"c1": 0.9, "c2": 0.8, "c3": 0.85, "c4": 0.7, "c5": 0.75, "c6": 0.95}
    b = {"c1": 0.8, "c2": 0.82, "c3": 0.7, "c4": 0.6, "c5": 0.7, "c6": 0.9, "x": 0.1}
    paired = compare(a, b)
    shared = sorted(a)
    assert paired.test == SIGNED_RANK and paired.n_a == 6
    ref = stats.wilcoxon([a[c] for c in shared], [b[c] for c in shared])
    assert paired.p_value == pytest.approx(ref.pvalue)
    other = {"t1": 0.6, "t2": 0.65, "t3": 0.7}
    unpaired = compare(a, other)
    assert unpaired.test == RANK_SUM
    assert unpaired.p_value == pytest.approx(
        stats.mannwhitneyu(list(a.values()), list(other.values())).pvalue
    )
