"""Cross-validation tables from nnU-Net validation files; the chunking reproducibility
table on a real (briefly trained) nnU-Net phantom model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from orgseg.errors import DataContractError
from orgseg.evaluation.chunking import chunking_rows, chunking_table
from orgseg.evaluation.commands import cv_report
from orgseg.evaluation.cv import read_fold_cases


def nnunet_fold(folder, fold, per_case):
    """A validation summary as nnU-Net writes it (``metric_per_case`` entries)."""
    entries = [
        {
            "metrics": {k: {"Dice": d, "IoU": d / (2 - d) if d is not None else None}
                        for k, d in metrics.items()},
            "prediction_file": f"/x/fold_{fold}/validation/{case}.nii.gz",
            "reference_file": f"/x/gt_segmentations/{case}.nii.gz",
        }
        for case, metrics in per_case.items()
    ]  # fmt: skip
    path = folder / f"fold_{fold}" / "validation" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"metric_per_case": entries, "foreground_mean": {}}))


def test_cv_table_pools_validation_cases_over_folds(tmp_path, capsys):
    liver = tmp_path / "Dataset512_Liver"
    (liver).mkdir()
    (liver / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1}}))
    nnunet_fold(liver, 0, {"a": {"1": 0.9}, "b": {"1": 0.8}})
    nnunet_fold(liver, 1, {"c": {"1": 1.0}})
    s2 = tmp_path / "Dataset600_Strategy2"
    s2.mkdir()
    (s2 / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "liver": 1, "spleen": 2}})
    )
    nnunet_fold(s2, 0, {"a": {"1": 0.95, "2": 0.7}, "b": {"1": 0.85, "2": None}})
    (s2 / "fold_1").mkdir()  # training not finished: left out
    cases = read_fold_cases(str(liver))
    assert [(c.fold, c.case, c.dice) for c in cases] == [
        (0, "a", 0.9),
        (0, "b", 0.8),
        (1, "c", 1.0),
    ]
    rows = cv_report([("strategy1", str(liver)), ("strategy2", str(s2))], str(tmp_path / "out"))
    by = {(r["strategy"], r["organ"]): r for r in rows}
    s1_liver = by[("strategy1", "liver")]
    assert (s1_liver["n"], s1_liver["folds"]) == (3, "0 1")
    assert s1_liver["dice_mean"] == pytest.approx(0.9)
    assert s1_liver["dice_sd"] == pytest.approx(0.1)
    assert by[("strategy2", "liver")]["dice_mean"] == pytest.approx(0.9)
    spleen = by[("strategy2", "spleen")]
    assert spleen["dice_mean"] == pytest.approx(0.7) and math.isnan(spleen["dice_sd"])
    md = (tmp_path / "out" / "cv.md").read_text()
    assert "| liver | 0.900 ± 0.100 (n=3) | 0.900 ± 0.071 (n=2) |" in md
    assert "| spleen | - | 0.700 (n=2) |" in md
    assert (tmp_path / "out" / "cv.csv").read_text().startswith("strategy,organ,folds,n,")


def test_cv_needs_dataset_json_and_a_validated_fold(tmp_path):
    with pytest.raises(DataContractError, match="dataset.json"):
        read_fold_cases(str(tmp_path))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "x": 1}}))
    (tmp_path / "fold_0").mkdir()
    with pytest.raises(DataContractError, match="train and validate"):
        read_fold_cases(str(tmp_path))


@pytest.mark.slow
@pytest.mark.nnunet
def test_chunking_table_on_a_real_model(phantom_model_dir):
    from orgseg.inference.model import SegmentationModel
    from orgseg.phantoms import make_phantom

    model = SegmentationModel(phantom_model_dir)
    phantom = make_phantom(shape=(48, 64, 64), spacing_mm=(8.0, 7.5, 7.5), seed=101)
    from orgseg.core.volume import Volume

    ct = Volume(phantom.ct_hu, spacing_mm=phantom.spacing_mm)
    rows = chunking_rows(model, {"p101": ct}, model.labels, chunk_mm=240.0, overlaps_mm=(0.0, 80.0))
    settings = {r["setting"] for r in rows}
    assert settings == {"overlap 0 mm", "overlap 80 mm", "stream"}
    assert all(r["chunks"] >= 2 for r in rows if r["setting"] != "stream")
    dice = {(r["setting"], r["organ"]): r["dice"] for r in rows}
    for organ in model.labels:
        # the default engine reproduces the unchunked label map exactly
        assert dice[("stream", organ)] == 1.0
        assert 0.0 <= dice[("overlap 0 mm", organ)] <= 1.0
    changed = {r["setting"]: 0 for r in rows}
    for r in rows:
        changed[r["setting"]] += r["voxels_changed"]
    assert changed["stream"] == 0
    # a chunk border without overlap changes more voxels than one with 80 mm of it
    assert changed["overlap 0 mm"] >= changed["overlap 80 mm"]
    table = chunking_table(rows, chunk_mm=240.0)
    assert table.columns == ("organ", "overlap 0 mm", "overlap 80 mm", "stream")
    assert len(table.rows) == len(model.labels)
    assert np.all([c.endswith("(min 1.0000)") for c in (r[3] for r in table.rows)])
