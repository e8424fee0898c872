"""Strategy 1: one binary nnU-Net per organ, k-fold cross-validation.

A unit of work is (organ, fold): :func:`train_strategy1_unit` is importable and
idempotent so an orchestrator can run units anywhere, in any order, more than once.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from orgseg.config import RunConfig, TrainingConfig
from orgseg.core.volume import Volume
from orgseg.errors import JobError
from orgseg.io import write_bytes
from orgseg.nnunet.train import UnitResult, read_unit, train_unit
from orgseg.pipeline.cases import load_manifest, load_manual_masks
from orgseg.pipeline.datasets import build_dataset, strategy1_dataset
from orgseg.pipeline.layout import RunLayout

log = logging.getLogger(__name__)


def training_cases(config: RunConfig, organ: str) -> list[str]:
    manifest = load_manifest(config)
    train = set(manifest.train)
    return sorted(
        c.case_id for c in manifest.cases if c.case_id in train and organ in c.manual_organs
    )


def build_strategy1_dataset(config: RunConfig, organ: str) -> str:
    """Stage ``strategy1-data`` for one organ; returns the configuration to train."""
    layout = RunLayout.of(config)
    dataset_id, name = strategy1_dataset(config, organ)

    def label_of(case_id: str, ct: Volume) -> np.ndarray:
        return load_manual_masks(layout, case_id)[organ]

    return build_dataset(
        config,
        dataset_id=dataset_id,
        name=name,
        labels={organ: 1},
        case_ids=training_cases(config, organ),
        label_of=label_of,
        description=f"orgseg strategy 1: {organ}",
    )


def configuration_name(config: RunConfig) -> str:
    from orgseg.nnunet.plan import derived_configuration_name

    return derived_configuration_name(config.nnunet.configuration, config.nnunet.features_scale)


def train_dataset_unit(
    config: RunConfig, dataset: str, fold: int, training: TrainingConfig
) -> UnitResult:
    """One (dataset, fold) unit with the run's nnU-Net settings (both strategies)."""
    return train_unit(
        RunLayout.of(config).nnunet,
        dataset,
        fold,
        configuration=configuration_name(config),
        training=training,
        device=config.nnunet.device,
        seed=config.seed,
    )


def train_strategy1_unit(config: RunConfig, organ: str, fold: int) -> UnitResult:
    """Train one (organ, fold) unit; resumes from its latest checkpoint; skips when done."""
    _, name = strategy1_dataset(config, organ)
    return train_dataset_unit(config, name, fold, config.strategy1_training)


def collect_cv_dice(config: RunConfig) -> dict[str, float]:
    """Mean validation Dice over the trained folds of each organ; written to the run."""
    layout = RunLayout.of(config)
    out: dict[str, float] = {}
    for organ in config.strategy1_organs:
        _, name = strategy1_dataset(config, organ)
        units = [
            read_unit(layout.nnunet, name, configuration_name(config), f)
            for f in config.strategy1_training.folds
        ]
        missing = [f for f, u in zip(config.strategy1_training.folds, units) if u is None]
        if missing:
            raise JobError(f"strategy 1 {organ}: folds {missing} are not trained yet")
        out[organ] = float(np.mean([u.val_dice for u in units if u is not None]))
    write_bytes(layout.cv_dice(1), json.dumps(out, indent=2).encode())
    return out
