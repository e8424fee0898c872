"""The whole pipeline on real nnU-Net, tiny: phantoms, 2 organs, 1 fold, a few iterations.

Slow (a few minutes on 2 cores); the default test command runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from orgseg.config import load_run_config
from orgseg.io import read_volume
from orgseg.orchestrate.runner import train_all
from orgseg.pipeline.cases import load_manifest
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.phantom_set import PhantomSetConfig, write_phantom_set
from orgseg.pipeline.strategy1 import configuration_name, train_strategy1_unit

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.nnunet]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    config = load_run_config((ROOT / "jobs" / "ci.yaml").read_text())
    config = dataclasses.replace(config, run_root=str(base / "run"), data_root=str(base / "data"))
    write_phantom_set(
        config.data_root,
        PhantomSetConfig(n_sources=2, n_cases=6, seed=1, organs=("liver", "lungs", "spleen")),
    )
    train_all(config)
    return config


def test_train_all_produces_models_predictions_and_report(tiny_run):
    config = tiny_run
    layout = RunLayout.of(config)
    run = Path(config.run_root)
    model = run / "models" / "strategy2"
    info = json.loads((model / "orgseg_model.json").read_text())
    assert info["catalog_ids"] == {"liver": 11, "lungs": 12}
    assert (model / "fold_0" / "checkpoint_final.pth").exists()
    assert set(json.loads((run / "strategy1" / "cv_dice.json").read_text())) == {"liver", "lungs"}
    manifest = load_manifest(config)
    for case_id in manifest.test:
        case = manifest.case(case_id)
        for strategy in (1, 2):
            pred = read_volume(layout.prediction(strategy, case_id))
            image = read_volume(case.image_url)
            assert pred.same_grid(image)  # in the input's own geometry
            assert set(np.unique(pred.array)) <= {0, 11, 12}
    # pseudo-labels exist exactly for the (train case, organ) pairs lacking manual masks
    for case_id in manifest.train:
        case = manifest.case(case_id)
        for organ in config.strategy1_organs:
            has_pseudo = (run / "pseudo" / case_id / f"{organ}.json").exists()
            assert has_pseudo == (organ not in case.manual_organs)
    report = (run / "report.md").read_text()
    assert "| liver |" in report and "| lungs |" in report


def test_train_all_ends_with_the_evaluation_report(tiny_run):
    import csv

    out = Path(tiny_run.run_root) / "evaluation"
    manifest = load_manifest(tiny_run)
    with (out / "per_case.csv").open() as f:
        per_case = list(csv.DictReader(f))
    assert {r["model"] for r in per_case} == {"strategy1", "strategy2"}
    assert {r["case"] for r in per_case} <= set(manifest.test)
    assert {r["source"] for r in per_case} <= {c.source for c in manifest.cases}
    with (out / "summary.csv").open() as f:
        groups = {r["group"] for r in csv.DictReader(f)}
    assert "all" in groups and any(g.startswith("source:") for g in groups)
    assert any(g.startswith("size:") for g in groups)
    html = (out / "report.html").read_text()
    # cross-validation table from nnU-Net's fold validation of both strategies
    assert "Cross-validation Dice" in html and "strategy1 Dice" in html
    assert "strategy2 Dice" in html
    assert "Chunking reproducibility" in html
    assert "src='dice_boxplot.png'" in html and "src='dice_strategy1_vs_strategy2.png'" in html
    with (out / "chunking.csv").open() as f:
        chunking = list(csv.DictReader(f))
    assert {r["setting"] for r in chunking} >= {"overlap 0 mm", "overlap 50 mm"}


def test_fused_maps_keep_manual_masks(tiny_run):
    config = tiny_run
    layout = RunLayout.of(config)
    from orgseg.pipeline.cases import load_manual_masks

    case_id = load_manifest(config).train[0]
    fused = np.asarray(read_volume(layout.fused(case_id)).array)
    manual = load_manual_masks(layout, case_id)
    ids = {"liver": 1, "lungs": 2}
    for organ, mask in manual.items():
        if organ in ids:
            assert np.all(fused[mask] == ids[organ])


def test_rerun_skips_done_work_and_gives_the_same_result(tiny_run):
    config = tiny_run
    run = Path(config.run_root)
    outputs = sorted((run / "predictions").rglob("*.nii.gz")) + [run / "report.md"]
    before = {p: digest(p) for p in outputs}
    ckpt = next((run / "nnunet" / "results").rglob("checkpoint_final.pth"))
    mtime = ckpt.stat().st_mtime
    train_all(config)
    assert {p: digest(p) for p in outputs} == before
    assert ckpt.stat().st_mtime == mtime  # nothing retrained


def test_interrupted_unit_resumes_from_latest_checkpoint(tiny_run):
    config = tiny_run
    layout = RunLayout.of(config)
    one_epoch = dataclasses.replace(
        config,
        strategy1_training=dataclasses.replace(config.strategy1_training, epochs=1, folds=(1,)),
    )
    first = train_strategy1_unit(one_epoch, "liver", 1)
    fold = Path(first.output_folder)
    assert fold.name == "fold_1" and layout.nnunet.results in fold.parents
    # simulate a job killed after its first epoch: only checkpoint_latest survives
    (fold / "checkpoint_final.pth").rename(fold / "checkpoint_latest.pth")
    (fold / "orgseg_unit.json").unlink()
    shutil.rmtree(fold / "validation")
    two_epochs = dataclasses.replace(
        config,
        strategy1_training=dataclasses.replace(config.strategy1_training, epochs=2, folds=(1,)),
    )
    resumed = train_strategy1_unit(two_epochs, "liver", 1)
    assert resumed.resumed_from_epoch == 1
    assert (fold / "checkpoint_final.pth").exists()
    assert configuration_name(config) in str(fold)


def test_every_pseudo_label_is_judged_before_fusion(tiny_run):
    import csv

    config = tiny_run
    run = Path(config.run_root)
    manifest = load_manifest(config)
    with (run / "qc" / "qc.csv").open() as f:
        rows = list(csv.DictReader(f))
    expected = {
        (c, o)
        for c in manifest.train
        for o in config.strategy1_organs
        if o not in manifest.case(c).manual_organs
    }
    assert {(r["case_id"], r["organ"]) for r in rows} == expected
    for r in rows:
        assert float(r["volume_ml"]) >= 0 and r["flagged"] in ("0", "1")
        assert (r["flagged"] == "1") == bool(r["reasons"])
    flags = json.loads((run / "qc" / "flags.json").read_text())
    assert set(flags) == {c for c, _ in expected}
    assert {o for c in flags.values() for o in c} <= set(config.strategy1_organs)
    for organ in {o for _, o in expected}:
        assert (run / "qc" / "sheets" / f"{organ}.png").read_bytes()[:4] == b"\x89PNG"
    # each fused case says how it treated what QC did not trust
    for case_id in manifest.train:
        record = json.loads((run / "fused" / f"{case_id}.json").read_text())
        assert record["policy"] == config.fusion.untrusted
        doubted = set(flags.get(case_id, {})) & set(config.strategy2_organs)
        assert set(record["untrusted"]) == doubted - set(manifest.case(case_id).manual_organs)
