"""Fusion of manual and pseudo masks, and strategy 2: one multi-label nnU-Net.

The strategy-2 nnU-Net dataset uses consecutive training ids 1..K (nnU-Net requires
them); the exported model maps them back to orgseg's fixed catalog ids
(``orgseg_model.json``), so every label map orgseg writes uses the catalog ids.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from orgseg.catalog import label_ids
from orgseg.config import RunConfig
from orgseg.core.fusion import fuse_by_priority
from orgseg.core.splits import shard_of
from orgseg.core.volume import Volume
from orgseg.errors import JobError
from orgseg.inference.model import export_model
from orgseg.io import exists, join_url, read_bytes, read_volume, write_volume
from orgseg.io.storage import is_local, names_in, sync_up
from orgseg.nnunet.train import UnitResult, model_folder, read_unit
from orgseg.pipeline.cases import load_manifest, load_manual_masks
from orgseg.pipeline.datasets import build_dataset, strategy2_dataset
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.pseudo import load_pseudo_volume
from orgseg.pipeline.strategy1 import configuration_name, train_dataset_unit

log = logging.getLogger(__name__)


def training_ids(config: RunConfig) -> dict[str, int]:
    """Consecutive nnU-Net training ids of the strategy-2 organs, in config order."""
    return {o: i + 1 for i, o in enumerate(config.strategy2_organs)}


def fuse_case(config: RunConfig, case_id: str, cv_dice: dict[str, float]) -> str:
    """One case's non-overlapping map with training ids (manual masks win, then the
    organ with the higher strategy-1 CV Dice), on the case's cropped grid."""
    layout = RunLayout.of(config)
    url = layout.fused(case_id)
    manual = load_manual_masks(layout, case_id)
    masks = {}
    grid: Volume | None = None
    for organ in config.strategy2_organs:
        if organ in manual:
            masks[organ] = manual[organ]
            continue
        pseudo = load_pseudo_volume(config, case_id, organ)
        masks[organ] = np.asarray(pseudo.array) > 0
        grid = grid or pseudo
    fused = fuse_by_priority(masks, training_ids(config), manual=set(manual), cv_dice=cv_dice)
    if grid is None:  # every organ manual: the geometry is the cropped CT's
        grid = read_volume(layout.cropped_ct(case_id))
    write_volume(grid.with_array(fused), url)  # atomic: its existence is the commit
    return url


def run_fusion_shard(config: RunConfig, shard: int = 0, n_shards: int = 1) -> int:
    """Job ``fusion``, one shard of the training cases: each case without a committed
    fused map is fused (one listing tells which). Returns how many were fused."""
    layout = RunLayout.of(config)
    if not exists(layout.cv_dice(1)):
        raise JobError(f"no strategy-1 CV Dice at {layout.cv_dice(1)}; run job cv-dice first")
    cv_dice = json.loads(read_bytes(layout.cv_dice(1)))
    cases = shard_of(load_manifest(config).train, shard, n_shards)
    done = names_in(join_url(layout.root, "fused"))
    todo = [c for c in cases if layout.fused(c).rsplit("/", 1)[-1] not in done]
    log.info(
        "fusion shard %d/%d: %d of %d cases to fuse", shard + 1, n_shards, len(todo), len(cases)
    )
    for i, case_id in enumerate(todo, start=1):
        fuse_case(config, case_id, cv_dice)
        if i % 10 == 0 or i == len(todo):
            log.info("fusion shard %d/%d: %d/%d cases", shard + 1, n_shards, i, len(todo))
    return len(todo)


def build_strategy2_dataset(config: RunConfig) -> str:
    layout = RunLayout.of(config)
    dataset_id, name = strategy2_dataset(config)

    return build_dataset(
        config,
        dataset_id=dataset_id,
        name=name,
        labels=training_ids(config),
        case_ids=list(load_manifest(config).train),
        label_url_of=layout.fused,
        description="orgseg strategy 2: fused manual + pseudo labels",
    )


def train_strategy2_unit(config: RunConfig, fold: int) -> UnitResult:
    _, name = strategy2_dataset(config)
    return train_dataset_unit(config, name, fold, config.strategy2_training)


def export_strategy2_model(config: RunConfig) -> str:
    """Copy the trained folds into ``models/strategy2`` with orgseg's label mapping."""
    layout = RunLayout.of(config)
    _, name = strategy2_dataset(config)
    source = model_folder(layout.nnunet, name, configuration_name(config))
    target_url = layout.model(2)
    if not is_local(target_url):  # export next to the staged folds, then upload
        with tempfile.TemporaryDirectory(prefix="orgseg-export-") as tmp:
            local = _export(config, source, Path(tmp) / "strategy2", name)
            sync_up(str(local), target_url)  # orgseg_model.json last
        log.info("strategy 2 model exported to %s", target_url)
        return target_url
    _export(config, source, Path(target_url), name)
    log.info("strategy 2 model exported to %s", target_url)
    return target_url


def _export(config: RunConfig, source: Path, target: Path, name: str) -> Path:
    layout = RunLayout.of(config)
    units = {
        f: read_unit(layout.nnunet, name, configuration_name(config), f)
        for f in config.strategy2_training.folds
    }
    if any(u is None for u in units.values()):
        raise JobError(
            f"strategy 2: folds {[f for f, u in units.items() if u is None]} not trained"
        )
    export_model(
        source,
        target,
        folds=config.strategy2_training.folds,
        organs=config.strategy2_organs,
        training_ids=training_ids(config),
        output_ids=label_ids(config.strategy2_organs),
        extra={
            "body_crop": {
                "enabled": config.body_crop.enabled,
                "margin_mm": config.body_crop.margin_mm,
            },
            "cv_dice": {str(f): u.val_dice for f, u in units.items() if u is not None},
        },
    )
    return target
