"""Organ masks of several cases by several organ models, through the streamed engine
(what pseudo-labels and strategy-1 test predictions run): each CT read once, each model
loaded once, every mask equal to the engine on that case, committed with its record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orgseg.config import RunConfig
from orgseg.core.volume import Volume
from orgseg.inference.engine import segment_volume
from orgseg.inference.model import SegmentationModel
from orgseg.io import read_volume
from orgseg.phantoms import make_phantom
from orgseg.pipeline.organ_masks import (
    MaskTargets,
    case_cache,
    predict_organ_masks,
    run_engine_options,
)

pytestmark = [pytest.mark.nnunet]


def test_each_ct_read_once_each_model_loaded_once(phantom_model_dir, tmp_path):
    cts = {
        f"case{i}": Volume(
            make_phantom(shape=(48, 64, 64), spacing_mm=(8.0, 7.5, 7.5), seed=20 + i).ct_hu,
            spacing_mm=(8.0, 7.5, 7.5),
        )
        for i in range(2)
    }
    reads: list[str] = []
    loads: list[str] = []

    def read(case_id: str):  # noqa: ANN202
        reads.append(case_id)
        return cts[case_id], None

    def load(organ: str) -> SegmentationModel:
        loads.append(organ)
        return SegmentationModel(phantom_model_dir)

    config = RunConfig(run_root=str(tmp_path), data_root=str(tmp_path))
    targets = MaskTargets(
        mask=lambda c, o: str(tmp_path / f"{c}_{o}.nii.gz"),
        record=lambda c, o: str(tmp_path / f"{c}_{o}.json"),
    )
    todo = {"liver": ["case0", "case1"], "lungs": ["case1", "case0"]}
    with case_cache(read, body_crop=True) as cache:
        written = predict_organ_masks(config, todo, cache, targets, load_model=load)
    assert written == 4
    assert sorted(reads) == ["case0", "case1"]  # once per case, not once per organ
    assert loads == ["liver", "lungs"]  # once per organ
    model = SegmentationModel(phantom_model_dir)
    nets = model.predictor.fold_networks()
    assert model.predictor.fold_networks() is nets  # built once, kept for every scan
    for case_id, ct in cts.items():
        seg = segment_volume(model, ct, run_engine_options(config))
        assert seg.mode == "stream"
        for organ in todo:
            mask = np.asarray(read_volume(targets.mask(case_id, organ)).array)
            expected = seg.labels == model.labels[organ]
            assert expected.any()
            np.testing.assert_array_equal(mask, expected.astype(np.uint8))
            record = json.loads(Path(targets.record(case_id, organ)).read_text())
            assert record["voxels"] == int(expected.sum()) and record["engine"] == "stream"
            assert record["organ"] == organ and record["folds"] == [0]
            qc = record["qc"]
            assert qc["fold_agreement"] is None  # one fold: nothing to agree with
            assert "fold_voxels" not in qc
            assert 0.0 <= qc["fragmented_share"] < 1.0 and qc["outside_body_share"] == 0.0
            voxel_ml = float(np.prod(ct.spacing_mm)) / 1000.0
            assert qc["volume_ml"] == pytest.approx(expected.sum() * voxel_ml, rel=1e-3)


def test_fold_agreement_comes_from_the_ensembles_own_folds(phantom_model_dir):
    import torch

    from orgseg.core.metrics import dice
    from orgseg.inference.model import ModelOptions

    ph = make_phantom(shape=(48, 64, 64), spacing_mm=(8.0, 7.5, 7.5), seed=31)
    ct = Volume(ph.ct_hu, spacing_mm=(8.0, 7.5, 7.5))
    options = run_engine_options(RunConfig(run_root="/x", data_root="/x"))
    twin = SegmentationModel(phantom_model_dir, ModelOptions(folds=(0, 0)))
    seg = segment_volume(twin, ct, options)
    assert seg.fold_agreement and set(seg.fold_agreement.values()) == {1.0}  # twins agree
    liver = twin.labels["liver"]
    twin_voxels = seg.fold_voxels[liver]
    assert len(twin_voxels) == 2 and twin_voxels[0] == twin_voxels[1] > 0
    assert seg.fold_overlaps[liver] == (twin_voxels[0],)  # twins overlap everywhere
    # a second fold that differs: its weights perturbed
    nets = twin.predictor.fold_networks()
    with torch.no_grad():
        for p in nets[1].parameters():
            p.add_(0.3 * p.std() * torch.randn_like(p))
    seg = segment_volume(twin, ct, options)
    assert 0.0 < seg.fold_agreement[liver] < 1.0
    assert seg.fold_voxels[liver][0] == twin_voxels[0]  # fold 0 is untouched
    # close to the Dice of the two folds' own label maps (those are on the scan's grid,
    # the agreement on the model's)
    alone = []
    for k in (0, 1):
        single = SegmentationModel(phantom_model_dir, ModelOptions(folds=(0,)))
        single.predictor._nets = [nets[k]]
        alone.append(segment_volume(single, ct, options).labels == liver)
    assert seg.fold_agreement[liver] == pytest.approx(dice(alone[0], alone[1]), abs=0.05)
    # a fold that collapsed to background: it counts no voxel, the other keeps its own
    with torch.no_grad():
        nets[1].decoder.seg_layers[-1].bias[0] += 100.0
    seg = segment_volume(twin, ct, options)
    assert seg.fold_voxels[liver] == (twin_voxels[0], 0)
    assert seg.fold_overlaps[liver] == (0,)
    assert seg.fold_agreement[liver] == 0.0
