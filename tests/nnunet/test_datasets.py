from __future__ import annotations

import json
from pathlib import Path

import pytest

from orgseg.errors import ConfigError, DataContractError
from orgseg.nnunet.datasets import dataset_name, make_dataset_json
from orgseg.nnunet.plan import add_scaled_configuration, derived_configuration_name

GOLDEN = Path(__file__).parent / "golden"


def test_dataset_json_matches_golden():
    got = make_dataset_json(
        labels={"liver": 1}, n_training=12, description="orgseg strategy 1: liver"
    )
    expected = json.loads((GOLDEN / "dataset_liver.json").read_text())
    assert got == expected


def test_dataset_json_needs_consecutive_labels():
    with pytest.raises(DataContractError, match="consecutive"):
        make_dataset_json(labels={"liver": 11, "spleen": 15}, n_training=3, description="x")
    with pytest.raises(DataContractError):
        dataset_name(1000, "X")


def test_scaled_configuration_inherits_and_halves_features():
    plans = {
        "configurations": {
            "3d_fullres": {
                "architecture": {
                    "network_class_name": "X",
                    "arch_kwargs": {"features_per_stage": [32, 64, 128, 320]},
                }
            }
        }
    }
    name = add_scaled_configuration(plans, "3d_fullres", 0.5)
    assert name == "3d_fullres_fs0.5" == derived_configuration_name("3d_fullres", 0.5)
    derived = plans["configurations"][name]
    assert derived["inherits_from"] == "3d_fullres"
    assert derived["architecture"]["arch_kwargs"]["features_per_stage"] == [16, 32, 64, 160]
    # the base configuration is untouched
    assert plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"][
        "features_per_stage"
    ] == [32, 64, 128, 320]
    assert add_scaled_configuration(plans, "3d_fullres", 1.0) == "3d_fullres"


def test_derived_configuration_with_a_smaller_patch_checks_the_downsampling():
    arch = {
        "network_class_name": "X",
        "arch_kwargs": {
            "features_per_stage": [32, 64, 128],
            "strides": [[1, 1, 1], [2, 2, 2], [1, 2, 2]],
        },
    }
    plans = {"configurations": {"3d_fullres": {"architecture": arch}}}
    name = add_scaled_configuration(plans, "3d_fullres", 0.25, (16, 32, 24))
    assert name == "3d_fullres_fs0.25_ps16x32x24"
    assert plans["configurations"][name]["patch_size"] == [16, 32, 24]
    with pytest.raises(ConfigError, match=r"total downsampling \[2, 4, 4\]"):
        add_scaled_configuration(plans, "3d_fullres", 0.25, (16, 30, 24))
