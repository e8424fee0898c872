"""The overlap-chunked, body-cropped, low-RAM segmentation engine.

Two ways to cut a scan along the cranio-caudal axis:

* ``stream`` (default, for nnU-Net CT models): nnU-Net's own sliding window is laid out
  over the whole scan and walked one tile row at a time (:mod:`orgseg.nnunet.stream`).
  A chunk is one patch height; neighbouring tile rows overlap by half a patch and are
  blended with nnU-Net's Gaussian tile weights, so the label map equals stock nnU-Net on
  the whole scan inside the body. Tiles that cannot reach the body are skipped.
* ``blend`` (any model, and the fallback for models whose preprocessing uses image-wide
  statistics): the scan is cut as below.

In ``blend`` mode a scan is cut along the cranio-caudal axis into chunks of ``chunk_mm``
overlapping by ``overlap_mm`` (:func:`orgseg.core.chunks.plan_chunks`). Each chunk is
cropped in-plane to the body contour (plus a margin) and goes through the model's whole
path: resampling to the model's spacing, sliding-window prediction, class probabilities
resampled back to the chunk's own grid. Neighbouring chunks' probabilities are blended with
weights that fall off towards each chunk's edge (:class:`orgseg.core.chunks.SlabBlender`),
and slabs no later chunk can touch are turned into labels at once. Peak memory is bounded by
about two chunks of class probabilities (in-plane: the body's extent), not by the scan's
length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from orgseg.core.body import PackedMask, body_mask
from orgseg.core.chunks import Chunk, SlabBlender, grid_edges, plan_chunks, snap_chunks
from orgseg.core.crop import bounding_box
from orgseg.core.qc import FoldAgreement
from orgseg.core.tiles import row_boxes
from orgseg.core.volume import Volume
from orgseg.errors import DataContractError, NotStreamableError
from orgseg.inference.options import DEFAULTS, EngineOptions

log = logging.getLogger(__name__)


@runtime_checkable
class ProbabilityModel(Protocol):
    """What the engine needs of any model (blend mode): class count, patch extent,
    per-block probabilities delivered a slab of rows at a time."""

    n_classes: int
    lut: np.ndarray  # model class index -> output label id
    patch_extent_mm: tuple[float, float, float]  # smaller blocks would be padded

    def predict_slabs(
        self, ct: np.ndarray, spacing_mm: Sequence[float], *, slab_rows: int
    ) -> Iterator[tuple[int, np.ndarray]]: ...  # (first row, (n_classes, rows, y, x))


@runtime_checkable
class GriddedModel(Protocol):
    """A model that predicts on its own grid: blend mode pads a chunk's in-plane box to
    whole model voxels."""

    spacing_mm: tuple[float, float, float]


@runtime_checkable
class StreamingModel(Protocol):
    """A model that can walk nnU-Net's whole-scan sliding window a tile row at a time
    (stream mode); it raises :class:`orgseg.errors.NotStreamableError` before its first
    slab when its preprocessing cannot be reproduced row by row."""

    lut: np.ndarray

    def stream_labels(
        self, ct: np.ndarray, spacing_mm: Sequence[float], **kwargs: object
    ) -> Iterator[tuple[int, int, tuple[slice, slice], np.ndarray]]: ...


@dataclass(frozen=True, slots=True)
class Segmentation:
    """Output label map (canonical frame, output ids) and what it took."""

    labels: np.ndarray  # (Z, Y, X) uint8
    body_bits: PackedMask | None  # the body contour when body_crop, else None
    chunks: tuple[Chunk, ...]  # blend mode's chunks (empty when streamed)
    seconds: float
    mode: str = "blend"  # "stream", "blend" or "whole"
    #: output label id -> mean pairwise Dice of the ensemble's folds (streamed
    #: predictions with 2+ folds, on the model's grid; None otherwise)
    fold_agreement: dict[int, float] | None = None
    #: output label id -> each fold's voxel count on the model's grid (same cases)
    fold_voxels: dict[int, tuple[int, ...]] | None = None
    #: output label id -> each pair of folds' overlap ((0, 1), (0, 2), ..., (1, 2) order)
    fold_overlaps: dict[int, tuple[int, ...]] | None = None
    #: per organ its own (unfused, possibly overlapping) mask, when a model set of binary
    #: parts made the label map; the per-organ outputs are written from these
    organ_masks: dict[str, PackedMask] | None = None

    @property
    def body(self) -> np.ndarray | None:
        """The body contour as a (Z, Y, X) bool array (unpacked on each access)."""
        return None if self.body_bits is None else self.body_bits.unpack()

    def describe(self) -> str:
        if self.mode == "stream":
            return "streamed tile rows"
        if self.mode == "whole":
            return "whole scan"
        return f"{len(self.chunks)} chunks"


Progress = Callable[[int, int], None]  # (chunks done, chunks in all)


def plan_for(ct: Volume, options: EngineOptions, *, min_chunk_mm: float = 0.0) -> list[Chunk]:
    """The chunk plan; no chunk is shorter than ``min_chunk_mm`` (the network's patch: a
    shorter chunk would be padded and predicted without its real neighbourhood)."""
    n = ct.shape[0]
    if options.chunk_mm is None:
        return [Chunk(0, n, n)]
    return plan_chunks(
        n,
        spacing_mm=ct.spacing_mm[0],
        chunk_mm=options.chunk_mm,
        overlap_mm=options.overlap_mm,
        min_chunk_mm=min_chunk_mm,
    )


def _plane_box(
    mask: np.ndarray,
    spacing_mm: Sequence[float],
    margin_mm: float,
    model_spacing_mm: Sequence[float] | None,
    min_extent_mm: Sequence[float],
) -> tuple[slice, slice]:
    """In-plane body box (+ margin), at least the network's patch wide (a smaller block
    would be padded with a constant the network never saw around a body), widened to cell
    edges of the model's grid."""
    box = bounding_box(mask, spacing_mm=spacing_mm, margin_mm=margin_mm)
    out = []
    for axis in (1, 2):
        n = mask.shape[axis]
        a, b = box.start[axis], box.stop[axis]
        need = min(n, int(np.ceil(min_extent_mm[axis] / spacing_mm[axis] - 1e-9)))
        if b - a < need:
            a = max(0, min(a - (need - (b - a)) // 2, n - need))
            b = a + need
        if model_spacing_mm is not None:
            a, b = grid_edges(
                a,
                b,
                mask.shape[axis],
                target_spacing_mm=model_spacing_mm[axis],
                spacing_mm=spacing_mm[axis],
            )
        out.append(slice(a, b))
    return out[0], out[1]


def segment_volume(
    model: ProbabilityModel,
    ct: Volume,
    options: EngineOptions = DEFAULTS,
    *,
    progress: Progress | None = None,
    body: PackedMask | None = None,
) -> Segmentation:
    """Segment a canonical CT chunk by chunk; the label map is on the CT's own grid.

    ``body``: the CT's body contour when the caller already has it (several models on
    one scan); otherwise it is computed here when ``options.body_crop``."""
    t0 = time.perf_counter()
    shape = ct.shape
    bits = None
    if options.body_crop:
        if body is not None and tuple(body.shape) != tuple(shape):
            raise DataContractError(
                f"expected a body contour of the scan's shape {shape}, got {body.shape}"
            )
        bits = (
            body if body is not None else body_mask(ct.array, spacing_mm=ct.spacing_mm, packed=True)
        )
        assert isinstance(bits, PackedMask)
        if not bits.any():
            raise DataContractError(
                "no patient found: the body contour of the scan is empty, so there is "
                "nothing to segment (an empty field of view, or not a CT of a patient); "
                "use --no-body-crop to segment the whole field of view anyway"
            )
    if (
        options.mode == "stream"
        and options.chunk_mm is not None
        and isinstance(model, StreamingModel)
    ):
        agreement = FoldAgreement()
        labels = _streamed(model, ct, bits, options, progress, agreement)
        if labels is not None:
            lut = np.asarray(model.lut)
            return Segmentation(
                labels=labels,
                body_bits=bits,
                chunks=(),
                seconds=time.perf_counter() - t0,
                mode="stream",
                fold_agreement={int(lut[c]): round(d, 5) for c, d in agreement.per_class().items()}
                if agreement.folds > 1
                else None,
                fold_voxels={int(lut[c]): v for c, v in agreement.per_fold_voxels().items()}
                if agreement.folds > 1
                else None,
                fold_overlaps={int(lut[c]): v for c, v in agreement.per_pair_overlaps().items()}
                if agreement.folds > 1
                else None,
            )
    model_spacing = model.spacing_mm if isinstance(model, GriddedModel) else None
    patch_mm = tuple(getattr(model, "patch_extent_mm", (0.0, 0.0, 0.0)))
    body = None if bits is None else bits.unpack()
    if body is not None:
        gy, gx = _plane_box(body, ct.spacing_mm, options.body_margin_mm, model_spacing, patch_mm)
    else:
        gy, gx = slice(0, shape[1]), slice(0, shape[2])
    plane = (gy.stop - gy.start, gx.stop - gx.start)
    chunks = plan_for(ct, options, min_chunk_mm=patch_mm[0])
    if model_spacing is not None and len(chunks) > 1:
        # cut where the model's grid has cell edges: a chunk then sees the scan's own samples
        chunks = snap_chunks(
            chunks, shape[0], target_spacing_mm=model_spacing[0], spacing_mm=ct.spacing_mm[0]
        )
    blender = SlabBlender(
        chunks,
        n_classes=model.n_classes,
        plane_shape=plane,
        dtype=np.float16 if options.half_precision_blend else np.float32,
    )
    labels = np.zeros(shape, dtype=np.uint8)
    lut = np.asarray(model.lut, dtype=np.uint8)
    for i, chunk in enumerate(chunks):
        rows = slice(chunk.start, chunk.stop)
        if body is not None and body[rows].any():
            cy, cx = _plane_box(
                body[rows], ct.spacing_mm, options.body_margin_mm, model_spacing, patch_mm
            )
        else:
            cy, cx = gy, gx
        block = np.asarray(ct.array[rows, cy, cx])
        offset = (cy.start - gy.start, cx.start - gx.start)
        for row, probabilities in model.predict_slabs(
            block, ct.spacing_mm, slab_rows=options.slab_rows
        ):
            for start, stop, slab in blender.add(
                i, probabilities, plane_start=offset, row_start=row
            ):
                labels[start:stop, gy, gx] = lut[slab]
        del block
        if progress is not None:
            progress(i + 1, len(chunks))
        log.debug("chunk %d/%d: slices %d-%d", i + 1, len(chunks), chunk.start, chunk.stop)
    del body
    if bits is not None:
        _clear_outside(labels, bits)
    return Segmentation(
        labels=labels,
        body_bits=bits,
        chunks=tuple(chunks),
        seconds=time.perf_counter() - t0,
        mode="whole" if options.chunk_mm is None else "blend",
    )


def _clear_outside(labels: np.ndarray, body: PackedMask, rows: int = 32) -> None:
    """Background outside the body, a slab at a time (no full-size temporary)."""
    for a in range(0, labels.shape[0], rows):
        labels[a : a + rows][~body.rows(a, a + rows)] = 0


def body_row_boxes(body: PackedMask, rows: int = 32) -> np.ndarray:
    """Per scan row, the body's in-plane box (see :func:`orgseg.core.tiles.row_boxes`)."""
    return np.concatenate(
        [row_boxes(body.rows(a, a + rows)) for a in range(0, body.shape[0], rows)]
    )


def _streamed(
    model,
    ct: Volume,
    body: PackedMask | None,
    options: EngineOptions,
    progress: Progress | None,
    agreement: FoldAgreement | None = None,
) -> np.ndarray | None:
    """The label map by streaming, or None when the model cannot be streamed."""
    labels = np.zeros(ct.shape, dtype=np.uint8)
    lut = np.asarray(model.lut, dtype=np.uint8)
    rows = model.stream_labels(
        ct.array,  # read a slab at a time (it may be a ScanRows: voxels on disk)
        ct.spacing_mm,
        body_boxes=None if body is None else body_row_boxes(body),
        margin_mm=options.body_margin_mm,
        slab_rows=options.slab_rows,
        progress=progress,
        agreement=None if agreement is None else agreement.add,  # QC as a callback
        tile_batch=options.tile_batch,
    )
    try:
        for z0, z1, (ys, xs), slab in rows:
            labels[z0:z1, ys, xs] = lut[slab]
    except NotStreamableError as exc:  # raised before the first slab
        log.info("model cannot be streamed (%s): chunk-and-blend instead", exc)
        return None
    if body is not None:
        _clear_outside(labels, body)
    return labels
