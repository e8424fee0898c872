"""``orgseg evaluate`` end to end: synthetic sets, and TotalSegmentator's real outputs."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, stats

from orgseg.catalog import label_ids
from orgseg.cli import main
from orgseg.core.metrics import dice
from orgseg.core.volume import Volume
from orgseg.evaluation.inputs import read_case_labels
from orgseg.evaluation.labelling import labelling
from orgseg.io import read_volume, write_volume
from orgseg.sources.totalseg import TOTAL_CLASSES

DATA = Path(__file__).resolve().parents[1] / "data" / "totalseg_example"
IDS = label_ids(["liver", "spleen"])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def label_map(seed: int, shift: int = 0) -> np.ndarray:
    lab = np.zeros((20, 24, 24), np.uint8)
    lab[4 + shift : 14 + shift, 4:14, 4:14] = IDS["liver"]
    lab[6:12, 15:21, 15 - seed % 2 : 20] = IDS["spleen"]
    return lab


@pytest.fixture()
def sets(tmp_path):
    """ref: 6 cases; good: 1-voxel-eroded liver; shifted: the liver one slice off;
    a CSV with source and age."""
    spacing = (2.0, 1.5, 1.5)
    rows = ["case,source,age"]
    for i in range(6):
        ref = label_map(i)
        write_volume(Volume(ref, spacing_mm=spacing), str(tmp_path / "ref" / f"case{i}.nii.gz"))
        good = ref.copy()
        liver = ref == IDS["liver"]
        good[liver & ~ndimage.binary_erosion(liver, iterations=1 + i % 2)] = 0
        write_volume(Volume(good, spacing_mm=spacing), str(tmp_path / "good" / f"case{i}.nii.gz"))
        write_volume(
            Volume(label_map(i, shift=1), spacing_mm=spacing),
            str(tmp_path / "shifted" / f"case{i}.nii.gz"),
        )
        rows.append(f"case{i},{'lits' if i < 3 else 'ctorg'},{8 if i == 5 else 50}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_evaluate_two_models_grouped_with_tests_and_report(sets, capsys):
    out = sets / "out"
    (sets / "shifted" / "case4.nii.gz").unlink()  # a model not run on one case
    code = main(
        [
            "evaluate",
            "--pred", f"good={sets / 'good'}",
            "--pred", f"shifted={sets / 'shifted'}",
            "--ref", str(sets / "ref"),
            "--group-by", "source", "size",
            "--cases", str(sets / "cases.csv"),
            "-o", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    per_case = read_csv(out / "per_case.csv")
    good_liver = {
        r["case"]: float(r["dice"])
        for r in per_case
        if r["model"] == "good" and r["organ"] == "liver"
    }
    # recomputed from the files directly
    for case, value in good_liver.items():
        ref = np.asarray(read_volume(str(sets / "ref" / f"{case}.nii.gz")).array)
        pred = np.asarray(read_volume(str(sets / "good" / f"{case}.nii.gz")).array)
        assert value == pytest.approx(dice(pred == IDS["liver"], ref == IDS["liver"]))
    summary = read_csv(out / "summary.csv")  # the first model
    groups = {(r["group"], r["organ"]): r for r in summary}
    assert set(groups) == {
        (g, o)
        for g in ("all", "source:lits", "source:ctorg", "size:adult", "size:paediatric")
        for o in ("liver", "spleen")
    }
    values = list(good_liver.values())
    assert float(groups[("all", "liver")]["dice_mean"]) == pytest.approx(np.mean(values))
    assert float(groups[("all", "liver")]["dice_sd"]) == pytest.approx(np.std(values, ddof=1))
    assert groups[("size:paediatric", "liver")]["n"] == "1"  # age 8
    assert float(groups[("all", "spleen")]["dice_mean"]) == 1.0
    comps = read_csv(out / "comparisons.csv")
    liver = next(
        c for c in comps if (c["group"], c["organ"], c["metric"]) == ("all", "liver", "dice")
    )
    shifted = {
        r["case"]: float(r["dice"])
        for r in per_case
        if r["model"] == "shifted" and r["organ"] == "liver"
    }
    shared = sorted(shifted)
    assert len(shared) == 5 and liver["test"] == "Wilcoxon signed-rank"
    expected = stats.wilcoxon([good_liver[c] for c in shared], [shifted[c] for c in shared])
    assert float(liver["p_value"]) == pytest.approx(expected.pvalue)
    info = json.loads((out / "evaluation.json").read_text())
    assert info["missing"] == {"good": [], "shifted": ["case4"]}
    html = (out / "report.html").read_text()
    for png in ("dice_boxplot.png", "dice_good_vs_shifted.png"):
        assert f"src='{png}'" in html
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Wilcoxon signed-rank" in html and "Kolmogorov-Smirnov" in html
    assert "no prediction for 1 case(s): case4" in html
    assert "report.html" in capsys.readouterr().out


def test_evaluate_reports_unreadable_and_misaligned_cases_and_exits_1(sets, capsys):
    (sets / "good" / "case1.nii.gz").write_bytes(b"not a nifti")
    write_volume(
        Volume(label_map(2)[:, :, :20], spacing_mm=(2.0, 1.5, 1.5)),
        str(sets / "good" / "case2.nii.gz"),
    )
    out = sets / "out"
    code = main(
        ["evaluate", "--pred", str(sets / "good"), "--ref", str(sets / "ref"), "-o", str(out)]
    )
    assert code == 1
    failures = json.loads((out / "evaluation.json").read_text())["failures"]
    assert len(failures) == 2
    assert any(f.startswith("case2 good") and "not on the reference grid" in f for f in failures)
    assert {r["case"] for r in read_csv(out / "per_case.csv")} == {
        "case0",
        "case3",
        "case4",
        "case5",
    }
    assert "FAILED: 2 case(s)" in capsys.readouterr().out


def test_evaluate_rejects_bad_options(sets, capsys):
    code = main(
        ["evaluate", "--pred", str(sets / "good"), "--ref", str(sets / "ref"),
         "--group-by", "age", "-o", str(sets / "o")]
    )  # fmt: skip
    assert code == 2 and "choose from ['source', 'size']" in capsys.readouterr().err
    code = main(
        ["evaluate", "--pred", str(sets / "good"), "--ref", str(sets / "ref"),
         "--ref-labels", "nope", "-o", str(sets / "o")]
    )  # fmt: skip
    assert code == 2 and "unknown labelling 'nope'" in capsys.readouterr().err


# ------------------------------------------------------------ TotalSegmentator outputs


def test_total_class_table_matches_totalsegmentator_statistics():
    names = list(json.loads((DATA / "example_seg_fast" / "statistics.json").read_text()))
    assert list(TOTAL_CLASSES.values()) == names
    assert len(names) == 117


def test_totalsegmentator_label_map_maps_to_catalog_organs():
    ts = labelling("totalsegmentator")
    organs = ("liver", "kidneys", "lungs", "vertebrae", "ribs")
    case = read_case_labels(str(DATA / "example_seg.nii.gz"), ts, organs)
    raw = np.asarray(read_volume(str(DATA / "example_seg.nii.gz")).array)
    voxel_ml = 27 / 1000
    # liver ~1043 ml in TotalSegmentator's own total map
    assert case.masks["liver"].sum() * voxel_ml == pytest.approx(1043.1, abs=0.1)
    # kidneys = right (2) + left (3) + cysts (23, 24); lungs = the five lobes 10-14
    assert case.masks["kidneys"].sum() == np.isin(raw, [2, 3, 23, 24]).sum()
    assert case.masks["lungs"].sum() == np.isin(raw, range(10, 15)).sum() > 0
    assert case.masks["vertebrae"].sum() == np.isin(raw, range(26, 51)).sum() > 0
    assert case.masks["ribs"].sum() == np.isin(raw, range(92, 116)).sum() > 0


def test_totalsegmentator_class_folder_volumes_match_its_statistics():
    ts = labelling("totalsegmentator")
    case = read_case_labels(str(DATA / "example_seg_fast"), ts, ("liver", "kidneys", "spleen"))
    stats_json = json.loads((DATA / "example_seg_fast" / "statistics.json").read_text())
    voxel_mm3 = float(np.prod(case.spacing_mm))
    assert case.masks["liver"].sum() * voxel_mm3 == pytest.approx(stats_json["liver"]["volume"])
    kidneys = stats_json["kidney_left"]["volume"] + stats_json["kidney_right"]["volume"]
    assert case.masks["kidneys"].sum() * voxel_mm3 == pytest.approx(kidneys)
    assert set(case.masks) == {"liver", "kidneys", "spleen"}


def test_evaluate_totalsegmentator_alongside_a_model(tmp_path, capsys):
    """Reference: TotalSegmentator's total map; 'ours': the same map converted to orgseg
    ids with one organ damaged; TotalSegmentator's fast per-class output alongside."""
    raw = read_volume(str(DATA / "example_seg.nii.gz"))
    ts = labelling("totalsegmentator")
    masks = ts.masks_from_label_map(np.asarray(raw.array), ("liver", "spleen", "kidneys"))
    ids = label_ids(["liver", "spleen", "kidneys"])
    ours = np.zeros(raw.shape, np.uint8)
    for organ, mask in masks.items():
        ours[mask] = ids[organ]
    ours[ours == ids["spleen"]] = 0  # our model missed the spleen
    write_volume(
        Volume(ours, raw.spacing_mm, raw.origin_mm, raw.direction), str(tmp_path / "ours.nii.gz")
    )
    shutil.copytree(DATA / "example_seg_fast", tmp_path / "ts_fast")
    out = tmp_path / "out"
    code = main(
        [
            "evaluate",
            "--pred", f"ours={tmp_path / 'ours.nii.gz'}",
            "--totalseg", str(tmp_path / "ts_fast"),
            "--ref", str(DATA / "example_seg.nii.gz"),
            "--ref-labels", "totalsegmentator",
            "--organs", "liver", "spleen", "kidneys",
            "-o", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    rows = {(r["model"], r["organ"]): r for r in read_csv(out / "per_case.csv")}
    assert float(rows[("ours", "liver")]["dice"]) == 1.0
    assert float(rows[("ours", "kidneys")]["dice"]) == 1.0
    assert float(rows[("ours", "spleen")]["dice"]) == 0.0
    assert rows[("ours", "spleen")]["hd_mm"] == ""  # undefined: nothing predicted
    for organ in ("liver", "spleen", "kidneys"):
        assert 0.95 < float(rows[("totalsegmentator", organ)]["dice"]) < 1.0
    assert float(rows[("totalsegmentator", "liver")]["pred_ml"]) == pytest.approx(1062.45)
    assert float(rows[("ours", "liver")]["ref_ml"]) == pytest.approx(1043.1, abs=0.1)
    html = (out / "report.html").read_text()
    assert "totalsegmentator — all" in html and "ours — all" in html


def test_evaluate_reads_and_writes_urls():
    import fsspec

    lab = np.zeros((10, 12, 12), np.uint8)
    lab[2:8, 2:8, 2:8] = IDS["liver"]
    half = lab.copy()
    half[5:8] = 0
    for case in ("a", "b"):
        write_volume(Volume(lab), f"memory://evaluate-url/ref/{case}.nii.gz")
        write_volume(Volume(half), f"memory://evaluate-url/pred/{case}.nii.gz")
    code = main(
        ["evaluate", "--pred", "memory://evaluate-url/pred", "--ref",
         "memory://evaluate-url/ref", "-o", "memory://evaluate-url/out"]
    )  # fmt: skip
    assert code == 0
    text = fsspec.filesystem("memory").cat_file("/evaluate-url/out/summary.csv").decode()
    liver = next(line for line in text.splitlines() if line.startswith("all,liver,2,"))
    assert float(liver.split(",")[3]) == pytest.approx(2 * 108 / (216 + 108))


def test_the_dice_box_plot_is_legible_legend_beside_the_panel_axis_zoomed(monkeypatch):
    import matplotlib.figure

    from orgseg.evaluation import plots
    from orgseg.evaluation.tables import CaseMetrics

    seen = {}
    save = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):  # the figure as drawn, before it becomes bytes
        ax = fig.axes[0]
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        panel = ax.get_window_extent(renderer)
        seen["ylim"] = ax.get_ylim()
        seen["legend_outside"] = ax.get_legend().get_window_extent(renderer).x0 >= panel.x1
        seen["ticks_fit"] = all(
            t.get_window_extent(renderer).width < panel.width / 2 for t in ax.get_xticklabels()
        )
        seen["title_size"] = ax.title.get_fontsize()
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    rows = [
        CaseMetrics(
            case=f"c{i}",
            organ=o,
            model=m,
            dice=d,
            jaccard=d,
            msd_mm=1.0,
            hd_mm=2.0,
            hd95_mm=2.0,
            vd_ml=0.0,
            ref_ml=1.0,
            pred_ml=1.0,
            source="s",
            size_group="adult",
        )  # fmt: skip
        for i in range(20)
        for o in ("liver", "spleen", "kidneys")
        for m, d in (("strategy1", 0.93 + 0.002 * i), ("strategy2", 0.90 + 0.003 * i))
    ]
    rows[0] = dataclasses.replace(rows[0], dice=0.0)  # one failed case
    assert plots.dice_boxplot(rows)[:4] == b"\x89PNG"
    assert 0.8 <= seen["ylim"][0] < 0.9  # not flattened by the one failure
    assert seen["legend_outside"] and seen["ticks_fit"] and seen["title_size"] <= 11
