"""Fusion of manual and pseudo masks, and strategy 2: one multi-label nnU-Net.

The strategy-2 nnU-Net dataset uses consecutive training ids 1..K (nnU-Net requires
them); the exported model maps them back to orgseg's fixed catalog ids
(``orgseg_model.json``), so every label map orgseg writes uses the catalog ids.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from orgseg.catalog import label_ids
from orgseg.config import RunConfig
from orgseg.core.fusion import fuse_by_priority, fuse_with_ignore
from orgseg.core.splits import shard_of
from orgseg.core.volume import Volume
from orgseg.errors import ConfigError, JobError
from orgseg.inference.model import export_model
from orgseg.io import exists, read_bytes, read_volume, write_bytes, write_volume
from orgseg.io.storage import is_local, read_many, sync_up
from orgseg.nnunet.datasets import ignore_value
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


def ignore_id(config: RunConfig) -> int:
    """The training id of nnU-Net's ignore label in the strategy-2 dataset."""
    return ignore_value(training_ids(config))


def doubted_masks(
    config: RunConfig, manual_organs: Collection[str], untrusted: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """The untrusted masks fusion acts on (organ -> reasons): strategy-2 organs only,
    never a manual mask (manual masks are always trusted)."""
    return {
        o: list(r)
        for o, r in untrusted.items()
        if o in config.strategy2_organs and o not in manual_organs
    }


def fusion_key(config: RunConfig, untrusted: Mapping[str, object]) -> dict[str, object]:
    """What a case's fused map depends on beyond its masks: a committed map whose record
    holds another key is fused again (an edited review, another policy)."""
    policy = config.fusion.untrusted
    doubted = [] if policy == "keep" else sorted(untrusted)
    return {
        "policy": policy,
        "untrusted": doubted,
        **({"margin_mm": config.fusion.ignore_margin_mm} if policy == "ignore" else {}),
    }


def fuse_case(
    config: RunConfig,
    case_id: str,
    cv_dice: dict[str, float],
    untrusted: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, object]:
    """One case's non-overlapping map with training ids (manual masks win, then the
    organ with the higher strategy-1 CV Dice), on the case's cropped grid; the
    ``untrusted`` pseudo-labels (organ -> reasons) handled by ``fusion.untrusted``.
    The map is written, then its record (committed last); returns the record."""
    layout = RunLayout.of(config)
    manual = load_manual_masks(layout, case_id)
    doubted = doubted_masks(config, set(manual), untrusted or {})
    key = fusion_key(config, doubted)
    record: dict[str, object] = {
        "case_id": case_id,
        **key,
        "reasons": {o: doubted[o] for o in key["untrusted"]},  # type: ignore[attr-defined]
        "dropped": None,
        "ignored_voxels": 0,
    }
    if key["policy"] == "drop-case" and doubted:
        record["dropped"] = f"untrusted pseudo-labels: {sorted(doubted)}"
        write_bytes(layout.fused_record(case_id), json.dumps(record).encode())
        return record
    masks = {}
    grid: Volume | None = None
    for organ in config.strategy2_organs:
        if organ in manual:
            masks[organ] = manual[organ]
            continue
        pseudo = load_pseudo_volume(config, case_id, organ)
        masks[organ] = np.asarray(pseudo.array) > 0
        grid = grid or pseudo
    if grid is None:  # every organ manual: the geometry is the cropped CT's
        grid = read_volume(layout.cropped_ct(case_id))
    ids = training_ids(config)
    if key["policy"] == "ignore" and doubted:
        empty = sorted(o for o in doubted if not masks[o].any())
        if empty:  # the organ is somewhere in the background: nothing to mark
            record["dropped"] = f"untrusted and empty, so not locatable: {empty}"
            write_bytes(layout.fused_record(case_id), json.dumps(record).encode())
            return record
        fused = fuse_with_ignore(
            masks, ids, untrusted=sorted(doubted), manual=set(manual), cv_dice=cv_dice,
            ignore_id=ignore_id(config), margin_mm=config.fusion.ignore_margin_mm,
            spacing_mm=grid.spacing_mm,
        )  # fmt: skip
        record["ignored_voxels"] = int(np.count_nonzero(fused == ignore_id(config)))
    else:
        fused = fuse_by_priority(masks, ids, manual=set(manual), cv_dice=cv_dice)
    write_volume(grid.with_array(fused), layout.fused(case_id))
    write_bytes(layout.fused_record(case_id), json.dumps(record).encode())  # committed last
    return record


def _untrusted(config: RunConfig) -> dict[str, dict[str, list[str]]]:
    if config.fusion.untrusted == "keep":
        return {}
    from orgseg.pipeline.pseudo_qc import untrusted_masks

    return untrusted_masks(config)


def fused_records(config: RunConfig, case_ids: Sequence[str]) -> dict[str, dict]:
    """case -> committed fusion record (read concurrently; uncommitted cases absent)."""
    layout = RunLayout.of(config)
    blobs = read_many([layout.fused_record(c) for c in case_ids])
    return {c: json.loads(blobs[u]) for c in case_ids if (u := layout.fused_record(c)) in blobs}


def run_fusion_shard(config: RunConfig, shard: int = 0, n_shards: int = 1) -> int:
    """Job ``fusion``, one shard of the training cases: each case without a committed
    fused map, or whose map was fused under another key (policy, untrusted masks after
    the review), is fused. Returns how many were fused."""
    layout = RunLayout.of(config)
    if not exists(layout.cv_dice(1)):
        raise JobError(f"no strategy-1 CV Dice at {layout.cv_dice(1)}; run job cv-dice first")
    cv_dice = json.loads(read_bytes(layout.cv_dice(1)))
    untrusted = _untrusted(config)
    manifest = load_manifest(config)
    cases = shard_of(manifest.train, shard, n_shards)
    done = fused_records(config, cases)
    todo = []
    for c in cases:
        doubted = doubted_masks(config, manifest.case(c).manual_organs, untrusted.get(c, {}))
        key = fusion_key(config, doubted)
        if c not in done or {k: done[c].get(k) for k in key} != key:
            todo.append(c)
    log.info(
        "fusion shard %d/%d: %d of %d cases to fuse", shard + 1, n_shards, len(todo), len(cases)
    )
    for i, case_id in enumerate(todo, start=1):
        record = fuse_case(config, case_id, cv_dice, untrusted.get(case_id, {}))
        if record["dropped"]:
            log.warning("fusion: %s left out of strategy 2: %s", case_id, record["dropped"])
        if i % 10 == 0 or i == len(todo):
            log.info("fusion shard %d/%d: %d/%d cases", shard + 1, n_shards, i, len(todo))
    return len(todo)


def build_strategy2_dataset(config: RunConfig) -> str:
    layout = RunLayout.of(config)
    dataset_id, name = strategy2_dataset(config)
    train = list(load_manifest(config).train)
    records = fused_records(config, train)
    missing = [c for c in train if c not in records]
    if missing:
        raise JobError(f"{len(missing)} cases not fused (e.g. {missing[:3]}); run job fusion first")
    dropped = {c: r["dropped"] for c, r in records.items() if r.get("dropped")}
    if dropped:
        log.warning(
            "strategy 2: %d of %d cases left out (fusion.untrusted: %s)",
            len(dropped), len(train), config.fusion.untrusted,
        )  # fmt: skip
    cases = [c for c in train if c not in dropped]
    if len(cases) < config.split.n_folds:
        raise ConfigError(
            f"strategy 2: fusion.untrusted = {config.fusion.untrusted} left {len(cases)} of "
            f"{len(train)} training cases, fewer than the {config.split.n_folds} CV folds; "
            "look at qc/qc.csv and qc/sheets/, accept masks in pseudo_labels.review, or "
            "set fusion.untrusted: ignore (or keep)"
        )
    keys = {c: [records[c]["policy"], records[c]["untrusted"]] for c in cases}
    digest = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]
    return build_dataset(
        config,
        dataset_id=dataset_id,
        name=name,
        labels=training_ids(config),
        case_ids=cases,
        label_url_of=layout.fused,
        description="orgseg strategy 2: fused manual + pseudo labels",
        ignore=config.fusion.untrusted == "ignore",
        fingerprint=digest,
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
