"""nnU-Net's rules as the lean model-folder reader reproduces them, checked against
nnU-Net's own functions."""

from __future__ import annotations

import itertools

import pytest

from orgseg.errors import DataContractError
from orgseg.nnunet.folder import FolderPlan, _resolved, model_shape, separate_z, tile_weights

SPACINGS = [
    (1.5, 0.8, 0.8),
    (5.0, 0.7, 0.7),
    (3.0, 1.0, 1.0),
    (2.0, 2.0, 2.0),
    (0.8, 0.8, 5.0),
    (6.0, 6.0, 1.0),
    (0.24, 1.25, 1.25),
]


@pytest.mark.parametrize(("spacing", "target"), list(itertools.product(SPACINGS, SPACINGS)))
@pytest.mark.parametrize("force", [None, True, False])
def test_separate_z_is_nnunets(spacing, target, force):
    from nnunetv2.preprocessing.resampling.default_resampling import (
        determine_do_sep_z_and_axis,
    )

    separate, axis = determine_do_sep_z_and_axis(force, spacing, target)
    assert separate_z(force, spacing, target) == (bool(separate), axis)


@pytest.mark.parametrize(
    ("shape", "spacing", "target"),
    [
        ((240, 191, 320), (1.5, 1.2, 1.2), (3.0, 3.0, 3.0)),
        ((97, 33, 61), (2.5, 0.7, 0.9), (1.0, 1.3, 2.7)),
    ],
)
def test_model_shape_is_nnunets(shape, spacing, target):
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

    assert model_shape(shape, spacing, target) == tuple(
        int(v) for v in compute_new_shape(shape, spacing, target)
    )


@pytest.mark.parametrize("patch", [(64, 64, 64), (40, 56, 48), (128, 112, 160)])
def test_tile_weights_are_nnunets_gaussian(patch):
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    ref = compute_gaussian(patch, 1.0 / 8, 10, device=torch.device("cpu"))
    got = tile_weights(patch)
    assert got.dtype == ref.dtype and torch.equal(got, ref)


def test_configurations_inherit_and_a_circle_is_refused():
    confs = {
        "3d_fullres": {"patch_size": [64, 64, 64], "spacing": [3, 3, 3]},
        "3d_bs4": {"inherits_from": "3d_fullres", "batch_size": 4, "spacing": [2, 2, 2]},
        "a": {"inherits_from": "b"},
        "b": {"inherits_from": "a"},
    }
    got = _resolved(confs, "3d_bs4")
    assert got == {"patch_size": [64, 64, 64], "spacing": [2, 2, 2], "batch_size": 4}
    with pytest.raises(DataContractError, match="circle"):
        _resolved(confs, "a")
    with pytest.raises(DataContractError, match="no configuration 'x'"):
        _resolved(confs, "x")


def _plan(labels: dict, trainer: str = "nnUNetTrainer", **conf) -> FolderPlan:
    return FolderPlan(
        model_dir=None,  # type: ignore[arg-type]
        configuration_name="3d_fullres",
        configuration={"patch_size": [8, 8, 8], "spacing": [1, 1, 1], "architecture": {}, **conf},
        transpose_forward=(0, 1, 2),
        transpose_backward=(0, 1, 2),
        intensity_properties={},
        labels=labels,
        n_inputs=1,
        trainer_name=trainer,
        mirror_axes=(0, 1, 2),
        plans={},
        dataset={"labels": labels},
    )


def test_heads_leave_out_the_ignore_label_and_other_trainers_are_not_lean():
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    for labels in (
        {"background": 0, "liver": 1},
        {"background": 0, "liver": 1, "spleen": 2, "ignore": 3},
        {"background": 0, "a": [1, 2], "b": 2},
    ):
        regions = any(isinstance(v, list) for v in labels.values())
        ref = LabelManager(labels, regions_class_order=[1, 2] if regions else None)
        plan = _plan(labels)
        assert plan.n_heads == ref.num_segmentation_heads
        assert plan.has_regions == ref.has_regions
    assert _plan({"background": 0, "a": 1}).lean
    for variant in (
        "nnUNetTrainerNoMirroring",
        "nnUNetTrainer_4000epochs_NoMirroring",
        "nnUNetTrainer_2000_epochs_DA5NoMirroring",
        "nnUNetTrainerDA5",
    ):
        assert _plan({"background": 0, "a": 1}, trainer=variant).lean, variant
    for other in ("nnUNetTrainerUMamba", "MyTrainer", "nnUNetTrainerCascade"):
        assert not _plan({"background": 0, "a": 1}, trainer=other).lean, other
    assert not _plan({"background": 0, "a": 1}, previous_stage="3d_lowres").lean
