"""Organ masks of many cases by many organ models, through the streamed engine.

Pseudo-labels (training cases, on their cropped CTs) and strategy-1 test predictions
(held-out cases, on their whole CTs) are the same work: for every organ, its fold
ensemble over the cases that need it. Here each case's CT is read and body-contoured
once (then held in node-local scratch as a raw array, so every later organ loads it in
milliseconds and RAM holds one CT at a time), each organ's ensemble is loaded once, and
every prediction goes through :func:`orgseg.inference.engine.segment_volume` (the
streamed engine: RAM bounded by tile rows, equal to stock nnU-Net inside the body). Each
mask is committed with its provenance record last; a rerun skips committed masks.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from orgseg.config import RunConfig
from orgseg.core.body import PackedMask, body_mask
from orgseg.core.qc import mask_figures
from orgseg.core.volume import Volume
from orgseg.inference.engine import Segmentation, segment_volume
from orgseg.inference.model import ModelOptions, SegmentationModel
from orgseg.inference.options import EngineOptions
from orgseg.io import write_bytes, write_volume
from orgseg.io.storage import names_in
from orgseg.nnunet.train import model_folder
from orgseg.pipeline.datasets import strategy1_dataset
from orgseg.pipeline.layout import RunLayout

log = logging.getLogger(__name__)


def run_engine_options(config: RunConfig) -> EngineOptions:
    """The run's engine (``inference:``; its body crop is ``body_crop:``'s, see RunConfig)."""
    return config.inference


def model_options(config: RunConfig, folds: Sequence[int] | None) -> ModelOptions:
    return ModelOptions(
        folds=tuple(folds) if folds is not None else None,
        device=config.nnunet.device,
        use_mirroring=config.nnunet.use_mirroring,
        tile_step_size=config.nnunet.tile_step_size,
    )


def organ_model(config: RunConfig, organ: str) -> SegmentationModel:
    """The organ's strategy-1 fold ensemble (the config's folds), loaded once."""
    from orgseg.pipeline.strategy1 import configuration_name

    layout = RunLayout.of(config)
    _, name = strategy1_dataset(config, organ)
    folder = model_folder(layout.nnunet, name, configuration_name(config))
    return SegmentationModel(folder, model_options(config, config.strategy1_training.folds))


@dataclass(frozen=True, slots=True)
class CachedCase:
    """A case's CT held in scratch: geometry and body here, voxels in a raw file."""

    path: str
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: np.ndarray
    body: PackedMask | None
    #: what the reader returned beside the volume (e.g. the way back to the file's frame)
    extra: object

    def volume(self) -> Volume:
        return Volume(
            np.load(self.path), spacing_mm=self.spacing_mm, origin_mm=self.origin_mm,
            direction=self.direction,
        )  # fmt: skip


class CaseCache:
    """Each case read and body-contoured once per process; later reads come from
    scratch (``$ORGSEG_SCRATCH`` or the temp dir)."""

    def __init__(
        self,
        read: Callable[[str], tuple[Volume, object]],
        scratch: str,
        *,
        body_crop: bool,
    ) -> None:
        self._read = read
        self._scratch = scratch
        self._body_crop = body_crop
        self._cases: dict[str, CachedCase] = {}
        self.reads = 0

    def cached(self, case_id: str) -> CachedCase | None:
        """The case if this process already read it, without reading it."""
        return self._cases.get(case_id)

    def get(self, case_id: str) -> tuple[Volume, CachedCase]:
        hit = self._cases.get(case_id)
        if hit is not None:
            return hit.volume(), hit
        ct, extra = self._read(case_id)
        self.reads += 1
        body = None
        if self._body_crop:
            bits = body_mask(ct.array, spacing_mm=ct.spacing_mm, packed=True)
            assert isinstance(bits, PackedMask)
            body = bits
        path = os.path.join(self._scratch, f"{len(self._cases)}.npy")
        np.save(path, np.ascontiguousarray(ct.array))
        hit = CachedCase(path, ct.spacing_mm, ct.origin_mm, ct.direction, body, extra)
        self._cases[case_id] = hit
        return ct, hit


@contextmanager
def case_cache(
    read: Callable[[str], tuple[Volume, object]], *, body_crop: bool
) -> Iterator[CaseCache]:
    base = os.environ.get("ORGSEG_SCRATCH") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orgseg-cases-", dir=base) as scratch:
        yield CaseCache(read, scratch, body_crop=body_crop)


def missing_masks(
    organs: Sequence[str],
    case_ids: Sequence[str],
    folder_of: Callable[[str], str],
    *,
    skip: Callable[[str, str], bool] = lambda case_id, organ: False,
) -> dict[str, list[str]]:
    """organ -> the cases whose folder (``folder_of(case)``) holds no committed record
    ``<organ>.json`` (one listing per case), leaving out what ``skip(case, organ)`` says."""
    have = {c: names_in(folder_of(c)) for c in case_ids}
    out: dict[str, list[str]] = {}
    for organ in organs:
        todo = [c for c in case_ids if f"{organ}.json" not in have[c] and not skip(c, organ)]
        if todo:
            out[organ] = todo
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskTargets:
    """Where each (case, organ) mask and its record go."""

    mask: Callable[[str, str], str]
    record: Callable[[str, str], str]


def mask_qc(
    mask: np.ndarray, organ: str, cached: CachedCase, seg: Segmentation, label: int
) -> dict[str, object]:
    """The mask's own quality figures (volume, the folds' agreement and voxel counts,
    fragmentation, share outside the body); the figures that compare cases (volume
    plausibility, an organ missing from the field of view, a collapsed fold) come from
    job ``qc``."""
    agreement = seg.fold_agreement
    figures = mask_figures(
        mask.view(bool),
        voxel_ml=float(np.prod(cached.spacing_mm)) / 1000.0,
        organ=organ,
        body=cached.body,  # packed: never unpacked per mask
        reference_ml=(),
        agreement=None if agreement is None else agreement.get(label, 1.0),
    )
    out: dict[str, object] = dict(figures.as_dict())
    if seg.fold_voxels is not None and agreement is not None:
        # for job qc's collapsed-fold check (a class no fold predicted: all zero)
        n_folds = len(next(iter(seg.fold_voxels.values()), ()))
        out["fold_voxels"] = list(seg.fold_voxels.get(label, (0,) * n_folds))
        n_pairs = n_folds * (n_folds - 1) // 2
        out["fold_overlaps"] = list((seg.fold_overlaps or {}).get(label, (0,) * n_pairs))
    return out


def predict_organ_masks(
    config: RunConfig,
    todo: Mapping[str, Sequence[str]],
    cache: CaseCache,
    targets: MaskTargets,
    *,
    load_model: Callable[[str], SegmentationModel] | None = None,
    what: str = "organ masks",
) -> int:
    """Every (organ, case) of ``todo`` (organ -> case ids): one model load per organ, one
    CT read per case; each mask (uint8 0/1 on the case's grid as read) committed with its
    record last. Returns how many masks were written."""
    engine = run_engine_options(config)
    load = load_model or (lambda organ: organ_model(config, organ))
    total = sum(len(c) for c in todo.values())
    written = 0
    for organ, case_ids in todo.items():
        if not case_ids:
            continue
        model = load(organ)
        label = model.labels.get(organ, 1)
        for case_id in case_ids:
            ct, cached = cache.get(case_id)
            seg = segment_volume(model, ct, engine, body=cached.body)
            mask = (seg.labels == label).view(np.uint8)
            del ct
            write_volume(
                Volume(
                    mask,
                    spacing_mm=cached.spacing_mm,
                    origin_mm=cached.origin_mm,
                    direction=cached.direction,
                ),  # fmt: skip
                targets.mask(case_id, organ),
                compress=True,
            )
            record = {
                "organ": organ,
                "model": str(model.model_dir),
                "folds": list(model.folds),
                "voxels": int(np.count_nonzero(mask)),
                "engine": seg.mode,
                "seconds": round(seg.seconds, 3),
                # quality figures that need no ground truth (orgseg.core.qc)
                "qc": mask_qc(mask, organ, cached, seg, label),
            }
            write_bytes(targets.record(case_id, organ), json.dumps(record).encode())  # last
            written += 1
            log.info(
                "%s %d/%d: %s/%s (%s, %.1f s)", what, written, total, case_id, organ, seg.mode,
                seg.seconds,
            )  # fmt: skip
        del model
    return written
