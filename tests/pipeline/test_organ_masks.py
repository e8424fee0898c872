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
