"""The overlap-chunked, body-cropped, low-RAM segmentation engine.

A scan is cut along the cranio-caudal axis into chunks of ``chunk_mm`` overlapping by
``overlap_mm`` (:func:`orgseg.core.chunks.plan_chunks`). Each chunk is cropped in-plane to
the body contour (plus a margin) and goes through the model's whole path: resampling to the
model's spacing, sliding-window prediction, class probabilities resampled back to the chunk's
own grid. Neighbouring chunks' probabilities are blended with weights that fall off towards
each chunk's edge (:class:`orgseg.core.chunks.SlabBlender`), and slabs no later chunk can
touch are turned into labels at once. Peak memory is bounded by about two chunks of class
probabilities (in-plane: the body's extent), not by the scan's length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from orgseg.core.body import body_mask
from orgseg.core.chunks import Chunk, SlabBlender, plan_chunks
from orgseg.core.crop import bounding_box
from orgseg.core.volume import Volume
from orgseg.errors import ConfigError

log = logging.getLogger(__name__)


class ProbabilityModel(Protocol):
    """What the engine needs of a model: class count and per-block probabilities."""

    n_classes: int
    lut: np.ndarray  # model class index -> output label id

    def predict_probabilities(
        self, ct: np.ndarray, spacing_mm: Sequence[float]
    ) -> np.ndarray: ...  # (n_classes, z, y, x) float32 on the block's grid


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    #: chunk length along the cranio-caudal axis; None segments the scan in one piece
    chunk_mm: float | None = 150.0
    #: overlap between neighbouring chunks (the paper found 50 mm sufficient)
    overlap_mm: float = 50.0
    #: crop every chunk to the body contour (plus margin); outside it: background
    body_crop: bool = True
    body_margin_mm: float = 10.0

    def __post_init__(self) -> None:
        if self.chunk_mm is not None and self.chunk_mm <= self.overlap_mm:
            raise ConfigError(
                f"chunk length ({self.chunk_mm} mm) must exceed the overlap "
                f"({self.overlap_mm} mm); use a longer --chunk-mm or a shorter --overlap-mm"
            )
        if self.overlap_mm < 0 or self.body_margin_mm < 0:
            raise ConfigError(
                f"expected a non-negative overlap and margin, got {self.overlap_mm} mm and "
                f"{self.body_margin_mm} mm"
            )


@dataclass(frozen=True, slots=True)
class Segmentation:
    """Output label map (canonical frame, output ids) and what it took."""

    labels: np.ndarray  # (Z, Y, X) uint8
    body: np.ndarray | None  # (Z, Y, X) bool when body_crop, else None
    chunks: tuple[Chunk, ...]
    seconds: float


Progress = Callable[[int, int], None]  # (chunks done, chunks in all)


def plan_for(ct: Volume, options: EngineOptions) -> list[Chunk]:
    n = ct.shape[0]
    if options.chunk_mm is None:
        return [Chunk(0, n, n)]
    return plan_chunks(
        n, spacing_mm=ct.spacing_mm[0], chunk_mm=options.chunk_mm, overlap_mm=options.overlap_mm
    )


def _plane_box(
    mask: np.ndarray, spacing_mm: Sequence[float], margin_mm: float
) -> tuple[slice, slice]:
    box = bounding_box(mask, spacing_mm=spacing_mm, margin_mm=margin_mm)
    return box.slices[1], box.slices[2]


def segment_volume(
    model: ProbabilityModel,
    ct: Volume,
    options: EngineOptions = EngineOptions(),
    *,
    progress: Progress | None = None,
) -> Segmentation:
    """Segment a canonical CT chunk by chunk; the label map is on the CT's own grid."""
    t0 = time.perf_counter()
    shape = ct.shape
    body = body_mask(ct.array, spacing_mm=ct.spacing_mm) if options.body_crop else None
    if body is not None and not body.any():
        log.warning("no body found in the scan: segmenting the whole field of view")
        body = None
    if body is not None:
        gy, gx = _plane_box(body, ct.spacing_mm, options.body_margin_mm)
    else:
        gy, gx = slice(0, shape[1]), slice(0, shape[2])
    plane = (gy.stop - gy.start, gx.stop - gx.start)
    chunks = plan_for(ct, options)
    blender = SlabBlender(chunks, n_classes=model.n_classes, plane_shape=plane)
    labels = np.zeros(shape, dtype=np.uint8)
    lut = np.asarray(model.lut, dtype=np.uint8)
    for i, chunk in enumerate(chunks):
        rows = slice(chunk.start, chunk.stop)
        if body is not None and body[rows].any():
            cy, cx = _plane_box(body[rows], ct.spacing_mm, options.body_margin_mm)
        else:
            cy, cx = gy, gx
        block = np.asarray(ct.array[rows, cy, cx])
        probabilities = model.predict_probabilities(block, ct.spacing_mm)
        del block
        offset = (cy.start - gy.start, cx.start - gx.start)
        slabs = blender.add(i, probabilities, plane_start=offset)
        del probabilities
        for start, stop, slab in slabs:
            labels[start:stop, gy, gx] = lut[slab]
        if progress is not None:
            progress(i + 1, len(chunks))
        log.debug("chunk %d/%d: slices %d-%d", i + 1, len(chunks), chunk.start, chunk.stop)
    if body is not None:
        labels[~body] = 0
    return Segmentation(
        labels=labels, body=body, chunks=tuple(chunks), seconds=time.perf_counter() - t0
    )
