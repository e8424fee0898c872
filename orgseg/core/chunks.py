"""Overlap-chunked processing along the cranio-caudal axis (axis 0 of a canonical volume).

:func:`plan_chunks` splits a scan into chunks of a physical length with a physical
overlap; :func:`chunk_weights` gives each chunk per-slice blending weights that fall off
linearly towards the chunk's edges inside overlaps and sum to one on every slice, so
neighbouring chunks' class probabilities are blended, not cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from orgseg.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Chunk:
    """Slices ``[start, stop)`` of axis 0; ``final_stop``: slices below it are final once
    this chunk is blended (no later chunk touches them)."""

    start: int
    stop: int
    final_stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def plan_chunks(
    n_slices: int, *, spacing_mm: float, chunk_mm: float, overlap_mm: float = 50.0
) -> list[Chunk]:
    """Chunks covering ``n_slices`` slices of thickness ``spacing_mm``.

    Every chunk is ``chunk_mm`` long (rounded to whole slices) except when the scan is
    shorter; consecutive chunks overlap by at least ``overlap_mm``; the last chunk is
    shifted back to full length rather than left short.

    Examples
    --------
    >>> [(c.start, c.stop) for c in plan_chunks(100, spacing_mm=2.0, chunk_mm=80, overlap_mm=20)]
    [(0, 40), (30, 70), (60, 100)]
    >>> [(c.start, c.stop) for c in plan_chunks(30, spacing_mm=2.0, chunk_mm=80)]
    [(0, 30)]
    """
    if n_slices < 1:
        raise ConfigError(f"expected at least one slice, got {n_slices}")
    if spacing_mm <= 0 or chunk_mm <= 0 or overlap_mm < 0:
        raise ConfigError(
            f"expected positive spacing and chunk length and a non-negative overlap, got "
            f"spacing {spacing_mm} mm, chunk {chunk_mm} mm, overlap {overlap_mm} mm"
        )
    length = max(1, int(round(chunk_mm / spacing_mm)))
    overlap = int(math.ceil(overlap_mm / spacing_mm - 1e-9))
    if length >= n_slices:
        return [Chunk(0, n_slices, n_slices)]
    if overlap >= length:
        raise ConfigError(
            f"the overlap ({overlap_mm} mm = {overlap} slices) must be shorter than the chunk "
            f"({chunk_mm} mm = {length} slices); use a longer --chunk-mm or a shorter overlap"
        )
    step = length - overlap
    starts = list(range(0, n_slices - length, step)) + [n_slices - length]
    chunks = []
    for i, s in enumerate(starts):
        nxt = starts[i + 1] if i + 1 < len(starts) else n_slices
        chunks.append(Chunk(s, s + length, nxt))
    return chunks


def chunk_weights(chunks: list[Chunk]) -> list[np.ndarray]:
    """Per-slice blending weights of each chunk (1D arrays of the chunk's length).

    Inside an overlap the weights ramp linearly across it (from the earlier chunk to the
    later one); elsewhere a chunk's weight is 1. On every slice the weights of the chunks
    covering it sum to one.

    >>> ws = chunk_weights(plan_chunks(10, spacing_mm=1, chunk_mm=6, overlap_mm=2))
    >>> [w.round(2).tolist() for w in ws]
    [[1.0, 1.0, 1.0, 1.0, 0.67, 0.33], [0.33, 0.67, 1.0, 1.0, 1.0, 1.0]]
    """
    weights = [np.ones(c.length, dtype=np.float64) for c in chunks]
    for i in range(len(chunks) - 1):
        a, b = chunks[i], chunks[i + 1]
        lo, hi = b.start, a.stop  # the overlap [lo, hi)
        if hi <= lo:
            continue
        n = hi - lo
        ramp = (np.arange(n) + 1.0) / (n + 1.0)  # weight of the later chunk
        weights[i][lo - a.start : hi - a.start] *= 1.0 - ramp
        weights[i + 1][lo - b.start : hi - b.start] *= ramp
    # chunks may overlap more than pairwise when the last one was shifted back: normalise
    total = np.zeros(chunks[-1].stop, dtype=np.float64)
    for c, w in zip(chunks, weights):
        total[c.start : c.stop] += w
    return [w / total[c.start : c.stop] for c, w in zip(chunks, weights)]
