from __future__ import annotations

from pathlib import Path

import pytest

from orgseg.config import load_run_config
from orgseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_jobs_configs_parse():
    demo = load_run_config((ROOT / "jobs" / "demo.yaml").read_text())
    assert demo.strategy1_training.folds == (0,)
    assert set(demo.strategy2_organs) <= set(demo.strategy1_organs)
    assert len(demo.strategy2_organs) >= 4


def test_defaults_are_the_reference_setup():
    c = load_run_config("run_root: r\ndata_root: d\n")
    assert len(c.strategy1_organs) == 26 and len(c.strategy2_organs) == 19
    assert c.strategy1_training.epochs == 2000 and c.strategy1_training.folds == (0, 1, 2, 3, 4)
    assert c.nnunet.configuration == "3d_fullres"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run_root: r\n", "missing required key 'data_root'"),
        ("run_root: r\ndata_root: d\nepochs: 3\n", "valid keys are"),
        ("run_root: r\ndata_root: d\nstrategy1_training: {epoch: 3}\n", "epochs"),
        ("run_root: r\ndata_root: d\nstrategy1_training: {epochs: three}\n", "integer"),
        ("run_root: r\ndata_root: d\nstrategy1_organs: [livr]\n", "unknown organ"),
        (
            "run_root: r\ndata_root: d\nstrategy1_organs: [liver]\nstrategy2_organs: [spleen]\n",
            "not in strategy1_organs",
        ),
        ("run_root: r\ndata_root: d\nstrategy1_training: {folds: [5]}\n", "folds"),
        ("run_root: r\ndata_root: d\nnnunet: {device: tpu}\n", "one of"),
        ("run_root: r\ndata_root: d\nnnunet: {features_scale: 2}\n", "features_scale"),
        ("run_root: [\n", "YAML"),
    ],
)
def test_bad_configs_are_explained(text, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(text)
