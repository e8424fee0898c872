"""Pseudo-labels: each organ's fold ensemble fills in the organs a case lacks.

Job ``pseudo-labels`` is an array over shards of the training cases. A shard reads and
body-contours each of its cropped CTs once, loads each organ's ensemble once and predicts
every case of the shard that lacks that organ through the streamed engine
(:mod:`orgseg.pipeline.organ_masks`). Each mask is committed with a provenance record
written last (model, folds, engine); a rerun skips committed masks, so a shard killed
mid-way resumes at its first uncommitted mask. Manual masks are never touched.
"""

from __future__ import annotations

import logging

import numpy as np

from orgseg.config import RunConfig
from orgseg.core.splits import shard_of
from orgseg.core.volume import Volume
from orgseg.errors import JobError
from orgseg.io import exists, read_volume
from orgseg.pipeline.cases import Manifest, load_manifest
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.organ_masks import (
    MaskTargets,
    case_cache,
    missing_masks,
    predict_organ_masks,
    run_engine_options,
)

log = logging.getLogger(__name__)


def pending(config: RunConfig, manifest: Manifest, case_ids: list[str]) -> dict[str, list[str]]:
    """organ -> cases of ``case_ids`` that lack it manually and have no committed
    pseudo-label (one listing per case folder)."""
    return missing_masks(
        config.strategy1_organs,
        case_ids,
        RunLayout.of(config).pseudo_dir,
        skip=lambda case_id, organ: organ in manifest.case(case_id).manual_organs,
    )


def run_pseudo_shard(config: RunConfig, shard: int = 0, n_shards: int = 1) -> int:
    """Predict every missing (case, organ) of one shard; returns how many were written."""
    layout = RunLayout.of(config)
    manifest = load_manifest(config)
    cases = shard_of(manifest.train, shard, n_shards)
    todo = pending(config, manifest, cases)
    n = sum(len(v) for v in todo.values())
    log.info("pseudo-labels shard %d/%d: %d masks to predict", shard + 1, n_shards, n)
    if not n:
        return 0
    targets = MaskTargets(mask=layout.pseudo_mask, record=layout.pseudo_record)

    def read(case_id: str):  # noqa: ANN202
        return read_volume(layout.cropped_ct(case_id)), None

    with case_cache(read, body_crop=run_engine_options(config).body_crop) as cache:
        written = predict_organ_masks(config, todo, cache, targets, what="pseudo-labels")
    log.info(
        "pseudo-labels shard %d/%d: %d masks, %d CT reads", shard + 1, n_shards, written,
        cache.reads,
    )  # fmt: skip
    return written


def load_pseudo_volume(config: RunConfig, case_id: str, organ: str) -> Volume:
    """A committed pseudo-label (its record must exist: a mask without one is not)."""
    layout = RunLayout.of(config)
    if not exists(layout.pseudo_record(case_id, organ)):
        raise JobError(
            f"case {case_id}: no committed pseudo-label for {organ} "
            f"({layout.pseudo_record(case_id, organ)}); run job pseudo-labels first"
        )
    return read_volume(layout.pseudo_mask(case_id, organ))


def load_pseudo(config: RunConfig, case_id: str, organ: str) -> np.ndarray:
    return np.asarray(load_pseudo_volume(config, case_id, organ).array) > 0
