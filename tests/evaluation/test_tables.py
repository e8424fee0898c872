"""Summary, normality and comparison tables against hand-computed figures and scipy."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from scipy import stats

from orgseg.core.volume import Volume
from orgseg.errors import ConfigError, DataContractError
from orgseg.evaluation.inputs import CaseInfo, CaseLabels
from orgseg.evaluation.scoring import score_case
from orgseg.evaluation.tables import (
    SUMMARY_COLUMNS,
    CaseMetrics,
    check_group_by,
    comparisons,
    normality,
    summarize,
    to_csv,
)


def row(model, case, organ, dice, *, source="a", size="adult", hd=1.0):
    return CaseMetrics(
        model=model,
        case=case,
        source=source,
        size_group=size,
        organ=organ,
        dice=dice,
        jaccard=dice / (2 - dice),
        msd_mm=hd / 2,
        hd_mm=hd,
        hd95_mm=hd,
        vd_ml=10 * (dice - 0.9),
        ref_ml=100.0,
        pred_ml=100.0,
    )


ROWS = [
    row("m1", "c1", "liver", 0.8, source="a", size="adult"),
    row("m1", "c2", "liver", 0.9, source="a", size="paediatric", hd=math.nan),
    row("m1", "c3", "liver", 1.0, source="b", size="adult", hd=3.0),
    row("m1", "c1", "spleen", 0.7),
]


def test_summary_mean_sd_per_group_hand_computed():
    out = summarize(ROWS, ("source", "size"))
    by = {(s["group"], s["organ"]): s for s in out}
    liver = by[("all", "liver")]
    assert liver["n"] == 3
    assert liver["dice_mean"] == pytest.approx(0.9)
    assert liver["dice_sd"] == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    # the undefined HD of c2 is left out of the mean, not counted as 0
    assert liver["hd_mm_mean"] == pytest.approx(2.0)
    assert liver["hd_mm_sd"] == pytest.approx(math.sqrt(2.0))
    assert by[("source:a", "liver")]["n"] == 2
    assert by[("source:a", "liver")]["dice_mean"] == pytest.approx(0.85)
    assert by[("source:b", "liver")]["n"] == 1 and math.isnan(by[("source:b", "liver")]["dice_sd"])
    assert by[("size:paediatric", "liver")]["dice_mean"] == pytest.approx(0.9)
    assert by[("size:adult", "liver")]["n"] == 2
    assert [s["group"] for s in out][:2] == ["all", "all"]  # 'all' first, catalog organ order
    assert [s["organ"] for s in out if s["group"] == "all"] == ["liver", "spleen"]


def test_summary_csv_has_the_agreed_columns():
    text = to_csv(summarize(ROWS), SUMMARY_COLUMNS)
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    assert header == [
        "group", "organ", "n", "dice_mean", "dice_sd", "jaccard_mean", "jaccard_sd",
        "msd_mm_mean", "msd_mm_sd", "hd_mm_mean", "hd_mm_sd", "hd95_mm_mean", "hd95_mm_sd",
        "vd_ml_mean", "vd_ml_sd",
    ]  # fmt: skip
    spleen = next(r for r in reader if r[1] == "spleen")
    assert spleen[2] == "1" and float(spleen[3]) == pytest.approx(0.7) and spleen[4] == ""


def test_normality_rows_equal_scipy():
    rng = np.random.default_rng(3)
    values = rng.uniform(0.6, 1.0, 8)
    rows = [row("m", f"c{i}", "liver", float(v)) for i, v in enumerate(values)]
    tests = {t["metric"]: t for t in normality(rows)}
    ref = stats.kstest(values, "norm", args=(values.mean(), values.std(ddof=1)))
    assert tests["dice"]["p_value"] == pytest.approx(ref.pvalue)
    assert tests["dice"]["test"].startswith("Kolmogorov-Smirnov")


def test_comparisons_paired_and_unpaired_equal_scipy():
    rng = np.random.default_rng(5)
    a = rng.uniform(0.8, 0.95, 10)
    b = a - rng.uniform(0.0, 0.05, 10)
    c = rng.uniform(0.7, 0.9, 7)
    rows = [row("s1", f"c{i}", "liver", float(v)) for i, v in enumerate(a)]
    rows += [row("s2", f"c{i}", "liver", float(v)) for i, v in enumerate(b)]
    rows += [row("ts", f"t{i}", "liver", float(v)) for i, v in enumerate(c)]  # other subset
    comps = {
        (x["model_a"], x["model_b"]): x
        for x in comparisons(rows)
        if x["metric"] == "dice" and x["group"] == "all"
    }
    paired = comps[("s1", "s2")]
    assert paired["test"] == "Wilcoxon signed-rank"
    assert paired["p_value"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    unpaired = comps[("s1", "ts")]
    assert unpaired["test"] == "Wilcoxon rank-sum"
    assert unpaired["p_value"] == pytest.approx(stats.mannwhitneyu(a, c).pvalue)
    assert (unpaired["n_a"], unpaired["n_b"]) == (10, 7)
    only = comparisons(rows, pairs=[("s2", "ts")])
    assert {(x["model_a"], x["model_b"]) for x in only} == {("s2", "ts")}
    with pytest.raises(ConfigError, match="unknown model"):
        comparisons(rows, pairs=[("s1", "nope")])


def test_group_by_is_checked():
    assert check_group_by(["size", "source", "size"]) == ("size", "source")
    with pytest.raises(ConfigError, match="choose from"):
        check_group_by(["age"])


def grid(shape, spacing=(2.0, 1.0, 1.0)):
    return Volume(np.zeros(shape, np.uint8), spacing_mm=spacing)


def test_score_case_hand_computed_and_skips_what_cannot_be_scored():
    ref = np.zeros((4, 6, 6), bool)
    ref[1:3, 1:4, 1:4] = True  # 18 voxels of 2 mm^3
    pred = np.zeros_like(ref)
    pred[1:3, 1:4, 1:3] = True  # 12 of them
    refs = CaseLabels({"liver": ref, "spleen": np.zeros_like(ref), "lungs": ref}, grid(ref.shape))
    preds = CaseLabels({"liver": pred, "spleen": pred}, grid(ref.shape))
    rows = score_case("m", "c1", CaseInfo(source="s", size_group="adult"), preds, refs)
    # spleen: empty reference; lungs: the model does not output it
    assert [r.organ for r in rows] == ["liver"]
    liver = rows[0]
    assert liver.dice == pytest.approx(2 * 12 / 30)
    assert liver.jaccard == pytest.approx(12 / 18)
    assert liver.vd_ml == pytest.approx(-6 * 2 / 1000)
    assert (liver.ref_ml, liver.pred_ml) == (0.036, 0.024)
    assert liver.hd_mm == pytest.approx(1.0)
    with pytest.raises(DataContractError, match="not on the reference grid"):
        score_case("m", "c1", CaseInfo(), CaseLabels({}, grid((4, 6, 7))), refs)
