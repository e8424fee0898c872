"""Pseudo-labels: each organ's fold ensemble fills in the organs a case lacks.

Work is split into shards of cases. A shard loads each organ's ensemble once and
predicts every case of the shard that lacks that organ. Each mask is committed with a
provenance record written last (model, folds); a rerun skips committed masks, so a shard
killed mid-way resumes at its first uncommitted case. Manual masks are never touched.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from orgseg.config import RunConfig
from orgseg.io import exists, read_bytes, read_volume, write_bytes, write_volume
from orgseg.pipeline.cases import load_manifest
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.strategy1 import organ_predictor

log = logging.getLogger(__name__)


def shard_cases(config: RunConfig, shard: int, n_shards: int) -> list[str]:
    """The training cases of one shard (round-robin over the sorted case ids)."""
    return sorted(load_manifest(config).train)[shard::n_shards]


def pending(config: RunConfig, case_ids: list[str]) -> dict[str, list[str]]:
    """organ -> cases of ``case_ids`` that lack it manually and have no committed pseudo-label."""
    layout = RunLayout.of(config)
    manifest = load_manifest(config)
    out: dict[str, list[str]] = {}
    for organ in config.strategy1_organs:
        todo = [
            c
            for c in case_ids
            if organ not in manifest.case(c).manual_organs
            and not exists(layout.pseudo_record(c, organ))
        ]
        if todo:
            out[organ] = todo
    return out


def run_pseudo_shard(config: RunConfig, shard: int = 0, n_shards: int = 1) -> int:
    """Predict every missing (case, organ) of one shard; returns how many were written."""
    layout = RunLayout.of(config)
    todo = pending(config, shard_cases(config, shard, n_shards))
    written = 0
    for organ, cases in todo.items():
        predictor = organ_predictor(config, organ)
        for case_id in cases:
            ct = read_volume(layout.cropped_ct(case_id))
            seg = predictor.predict(np.asarray(ct.array), ct.spacing_mm)
            write_volume(
                ct.with_array((seg == 1).astype(np.uint8)), layout.pseudo_mask(case_id, organ)
            )
            record = {
                "organ": organ,
                "model": str(predictor.model_dir),
                "folds": list(predictor.folds),
                "voxels": int((seg == 1).sum()),
            }
            write_bytes(layout.pseudo_record(case_id, organ), json.dumps(record).encode())
            written += 1
            log.info("pseudo-label %s/%s (shard %d/%d)", case_id, organ, shard + 1, n_shards)
    return written


def load_pseudo(config: RunConfig, case_id: str, organ: str) -> np.ndarray:
    layout = RunLayout.of(config)
    json.loads(read_bytes(layout.pseudo_record(case_id, organ)))  # committed?
    return np.asarray(read_volume(layout.pseudo_mask(case_id, organ)).array) > 0
