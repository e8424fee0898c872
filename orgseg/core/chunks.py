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


class SlabBlender:
    """Blend chunk probabilities into a label map, finalising slabs as soon as possible.

    Add each chunk's class probabilities in plan order; :meth:`add` returns the slabs
    ``(start, stop, labels)`` that no later chunk can touch, as argmax label arrays.
    Only the pending overlap and the current chunk are held: memory is bounded by about
    two chunks of probabilities, never by the scan.

    >>> import numpy as np
    >>> chunks = plan_chunks(6, spacing_mm=1, chunk_mm=4, overlap_mm=2)
    >>> blender = SlabBlender(chunks, n_classes=2, plane_shape=(1, 1))
    >>> p0 = np.zeros((2, 4, 1, 1)); p0[1] = 0.9; p0[0] = 0.1   # chunk 0 says class 1
    >>> p1 = np.zeros((2, 4, 1, 1)); p1[0] = 0.9; p1[1] = 0.1   # chunk 1 says class 0
    >>> out = blender.add(0, p0) + blender.add(1, p1)
    >>> [(a, b, lab.ravel().tolist()) for a, b, lab in out]
    [(0, 2, [1, 1]), (2, 6, [1, 0, 0, 0])]
    """

    def __init__(
        self, chunks: list[Chunk], *, n_classes: int, plane_shape: tuple[int, int]
    ) -> None:
        self.chunks = chunks
        self.weights = chunk_weights(chunks)
        self.n_classes = n_classes
        self.plane_shape = tuple(plane_shape)
        self._start = 0  # first slice not yet finalised
        self._buffer = np.zeros((n_classes, 0, *plane_shape), dtype=np.float32)
        self._next = 0

    def add(
        self,
        index: int,
        probabilities: np.ndarray,
        *,
        plane_start: tuple[int, int] = (0, 0),
    ) -> list[tuple[int, int, np.ndarray]]:
        """Blend chunk ``index``; return the slabs it finalises.

        ``probabilities`` has shape (n_classes, chunk length, h, w) and covers the in-plane
        rectangle starting at ``plane_start`` (a chunk cropped to the body); outside it the
        chunk counts as certain background (class 0).
        """
        if index != self._next:
            raise ConfigError(f"chunks must be added in order: expected {self._next}, got {index}")
        chunk = self.chunks[index]
        y0, x0 = plane_start
        h, w_ = probabilities.shape[2:] if probabilities.ndim == 4 else (-1, -1)
        fits = (
            probabilities.ndim == 4
            and probabilities.shape[:2] == (self.n_classes, chunk.length)
            and y0 >= 0
            and x0 >= 0
            and y0 + h <= self.plane_shape[0]
            and x0 + w_ <= self.plane_shape[1]
        )
        if not fits:
            raise ConfigError(
                f"chunk {index}: expected probabilities of shape ({self.n_classes}, "
                f"{chunk.length}, h, w) fitting a {self.plane_shape} plane at {plane_start}, "
                f"got {probabilities.shape}"
            )
        self._next += 1
        # grow the buffer to cover [self._start, chunk.stop)
        have = self._start + self._buffer.shape[1]
        if chunk.stop > have:
            grow = np.zeros((self.n_classes, chunk.stop - have, *self.plane_shape), np.float32)
            self._buffer = np.concatenate([self._buffer, grow], axis=1)
        weight = self.weights[index].astype(np.float32)
        lo = chunk.start - self._start
        rows = slice(lo, lo + chunk.length)
        inside = (slice(y0, y0 + h), slice(x0, x0 + w_))
        # background everywhere, then replace it by the prediction inside the rectangle
        self._buffer[0, rows] += weight[:, None, None]
        self._buffer[0, rows, inside[0], inside[1]] -= weight[:, None, None]
        self._buffer[:, rows, inside[0], inside[1]] += weight[None, :, None, None] * probabilities
        n_final = chunk.final_stop - self._start
        out = []
        if n_final > 0:
            labels = np.argmax(self._buffer[:, :n_final], axis=0).astype(np.uint8)
            out.append((self._start, chunk.final_stop, labels))
            self._buffer = np.ascontiguousarray(self._buffer[:, n_final:])
            self._start = chunk.final_stop
        return out
