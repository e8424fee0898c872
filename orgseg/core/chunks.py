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

from orgseg.errors import ConfigError, InvariantError


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
    n_slices: int,
    *,
    spacing_mm: float,
    chunk_mm: float,
    overlap_mm: float = 50.0,
    min_chunk_mm: float = 0.0,
) -> list[Chunk]:
    """Chunks covering ``n_slices`` slices of thickness ``spacing_mm``.

    The scan is split into as few chunks of at most ``chunk_mm`` as cover it with
    neighbours overlapping by at least ``overlap_mm``; the chunks then share the scan
    evenly (equal lengths, overlaps close to ``overlap_mm``: no short last chunk, no
    chunk shifted back over its neighbour). No chunk is shorter than ``min_chunk_mm``
    (a network's patch: a shorter chunk would be padded); when that conflicts with
    ``chunk_mm``, fewer, longer chunks are used.

    Examples
    --------
    >>> [(c.start, c.stop) for c in plan_chunks(100, spacing_mm=2.0, chunk_mm=80, overlap_mm=20)]
    [(0, 40), (30, 70), (60, 100)]
    >>> [(c.start, c.stop) for c in plan_chunks(105, spacing_mm=2.0, chunk_mm=80, overlap_mm=20)]
    [(0, 34), (24, 58), (47, 81), (71, 105)]
    >>> [(c.start, c.stop) for c in plan_chunks(30, spacing_mm=2.0, chunk_mm=80)]
    [(0, 30)]
    >>> [(c.start, c.stop) for c in plan_chunks(300, spacing_mm=1.5, chunk_mm=150,
    ...                                          overlap_mm=50, min_chunk_mm=384)]
    [(0, 300)]
    """
    if n_slices < 1:
        raise ConfigError(f"expected at least one slice, got {n_slices}")
    if spacing_mm <= 0 or chunk_mm <= 0 or overlap_mm < 0 or min_chunk_mm < 0:
        raise ConfigError(
            f"expected positive spacing and chunk length and a non-negative overlap, got "
            f"spacing {spacing_mm} mm, chunk {chunk_mm} mm, overlap {overlap_mm} mm"
        )
    length = max(1, int(round(chunk_mm / spacing_mm)))
    overlap = int(math.ceil(overlap_mm / spacing_mm - 1e-9))
    min_length = int(math.ceil(min_chunk_mm / spacing_mm - 1e-9))
    length = max(length, min_length)
    if length >= n_slices:
        return [Chunk(0, n_slices, n_slices)]
    if overlap >= length:
        raise ConfigError(
            f"the overlap ({overlap_mm} mm = {overlap} slices) must be shorter than the chunk "
            f"({chunk_mm} mm = {length} slices); use a longer --chunk-mm or a shorter overlap"
        )
    k = math.ceil((n_slices - overlap) / (length - overlap))
    even = math.ceil((n_slices + (k - 1) * overlap) / k)
    if even < min_length:  # even sharing would undercut the patch: fewer, longer chunks
        k = max(1, (n_slices - overlap) // (min_length - overlap))
        even = math.ceil((n_slices + (k - 1) * overlap) / k)
    if k == 1 or even >= n_slices:
        return [Chunk(0, n_slices, n_slices)]
    starts = [int(round(i * (n_slices - even) / (k - 1))) for i in range(k)]
    return [
        Chunk(s, s + even, starts[i + 1] if i + 1 < k else n_slices) for i, s in enumerate(starts)
    ]


def grid_edges(start: int, stop: int, n: int, *, target_spacing_mm: float, spacing_mm: float):
    """Widen ``[start, stop)`` of an axis of ``n`` voxels to the nearest cell edges of the
    coarser grid the whole axis is resampled to (nnU-Net's: ``round(n * spacing / target)``
    cells, each ``n / cells`` voxels).

    A block cut at these edges is resampled onto (nearly) the same coarse grid as the whole
    scan, so a network sees the same samples in a chunk as in the unchunked scan.

    >>> grid_edges(5, 13, 300, target_spacing_mm=6.0, spacing_mm=1.5)  # cells of 4 voxels
    (4, 16)
    >>> grid_edges(0, 300, 300, target_spacing_mm=6.0, spacing_mm=1.5)
    (0, 300)
    """
    cells = max(1, int(round(n * spacing_mm / target_spacing_mm)))
    if cells >= n:  # the model's grid is not coarser: every voxel edge is a cell edge
        return start, stop
    size = n / cells
    lo = int(round(math.floor(start / size + 1e-9) * size))
    hi = int(round(math.ceil(stop / size - 1e-9) * size))
    return max(0, min(lo, start)), min(n, max(hi, stop))


def snap_chunks(
    chunks: list[Chunk], n_slices: int, *, target_spacing_mm: float, spacing_mm: float
) -> list[Chunk]:
    """Chunks widened to cell edges of the coarse grid (see :func:`grid_edges`).

    >>> c = plan_chunks(300, spacing_mm=1.5, chunk_mm=150, overlap_mm=50)
    >>> [(k.start, k.stop) for k in c][:2]
    [(0, 88), (53, 141)]
    >>> [(k.start, k.stop) for k in snap_chunks(c, 300, target_spacing_mm=6, spacing_mm=1.5)][:2]
    [(0, 88), (52, 144)]
    """
    spans = [
        grid_edges(
            c.start, c.stop, n_slices, target_spacing_mm=target_spacing_mm, spacing_mm=spacing_mm
        )
        for c in chunks
    ]
    return [
        Chunk(a, b, spans[i + 1][0] if i + 1 < len(spans) else n_slices)
        for i, (a, b) in enumerate(spans)
    ]


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

    Add each chunk's class probabilities in plan order, whole or as consecutive slabs of
    its rows; :meth:`add` returns the slabs ``(start, stop, labels)`` that no later chunk
    can touch, as argmax label arrays. Only rows shared with the next chunk are held back:
    memory is bounded by one overlap of probabilities (plus the slab being added), never
    by the scan.

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
        self,
        chunks: list[Chunk],
        *,
        n_classes: int,
        plane_shape: tuple[int, int],
        dtype: type = np.float32,
    ) -> None:
        """``dtype`` of the held-back overlap: float16 halves it (probabilities in [0, 1]
        keep 3 significant digits; only near-exact ties can flip)."""
        self.chunks = chunks
        self.weights = chunk_weights(chunks)
        self.n_classes = n_classes
        self.plane_shape = tuple(plane_shape)
        self.dtype = dtype
        self._start = 0  # first slice not yet finalised; pending rows start here
        self._pending: np.ndarray = np.zeros((n_classes, 0, *plane_shape), dtype=dtype)
        self._chunk = 0  # chunk being added
        self._row = 0  # next row of that chunk

    @property
    def pending_rows(self) -> int:
        return int(self._pending.shape[1])

    def add(
        self,
        index: int,
        probabilities: np.ndarray,
        *,
        plane_start: tuple[int, int] = (0, 0),
        row_start: int = 0,
    ) -> list[tuple[int, int, np.ndarray]]:
        """Blend rows ``[row_start, row_start + n)`` of chunk ``index``; return the slabs
        this finalises.

        ``probabilities`` has shape (n_classes, n, h, w) and covers the in-plane rectangle
        starting at ``plane_start`` (a chunk cropped to the body); outside it the chunk
        counts as certain background (class 0).
        """
        if (index, row_start) == (self._chunk + 1, 0) and self._row == self.chunks[
            self._chunk
        ].length:
            self._chunk, self._row = index, 0
        if (index, row_start) != (self._chunk, self._row):
            raise InvariantError(
                f"chunks must be added in order, rows consecutive: expected chunk "
                f"{self._chunk} row {self._row}, got chunk {index} row {row_start}"
            )
        chunk = self.chunks[index]
        y0, x0 = plane_start
        n = probabilities.shape[1] if probabilities.ndim == 4 else -1
        h, w_ = probabilities.shape[2:] if probabilities.ndim == 4 else (-1, -1)
        fits = (
            probabilities.ndim == 4
            and probabilities.shape[0] == self.n_classes
            and 0 < n <= chunk.length - row_start
            and y0 >= 0
            and x0 >= 0
            and y0 + h <= self.plane_shape[0]
            and x0 + w_ <= self.plane_shape[1]
        )
        if not fits:
            raise InvariantError(
                f"chunk {index}: expected probabilities of shape ({self.n_classes}, rows, h, "
                f"w) with at most {chunk.length - row_start} rows, fitting a "
                f"{self.plane_shape} plane at {plane_start}; got {probabilities.shape}"
            )
        self._row += n
        a = chunk.start + row_start  # absolute rows [a, a + n)
        weight = self.weights[index][row_start : row_start + n].astype(np.float32)
        if not self._start <= a <= self._start + self.pending_rows:
            raise InvariantError(
                f"chunk {index} starts at row {a}, outside the pending rows "
                f"[{self._start}, {self._start + self.pending_rows}]: the plan is not ordered"
            )
        ys, xs = slice(y0, y0 + h), slice(x0, x0 + w_)
        # rows [a, pending end) already hold earlier chunks' shares; the rest are new.
        # The slab is blended in float32; only rows a later chunk still touches are stored
        # back (in ``dtype``), the others become labels at once.
        lo = a - self._start
        shared = min(self.pending_rows - lo, n)
        block = np.zeros((self.n_classes, n, *self.plane_shape), dtype=np.float32)
        block[:, :shared] = self._pending[:, lo : lo + shared]
        height, width = self.plane_shape
        # certain background around the rectangle (four strips), the prediction inside it
        for strip in (
            (slice(0, y0), slice(0, width)),
            (slice(y0 + h, height), slice(0, width)),
            (ys, slice(0, x0)),
            (ys, slice(x0 + w_, width)),
        ):
            block[0, :, strip[0], strip[1]] += weight[:, None, None]
        block[:, :, ys, xs] += weight[None, :, None, None] * probabilities
        n_final = max(0, min(a + n, chunk.final_stop) - a)  # rows of this slab now final
        out = []
        if n_final:
            labels = np.argmax(block[:, :n_final], axis=0).astype(np.uint8)
            out.append((a, a + n_final, labels))
        keep: np.ndarray = block[:, n_final:].astype(self.dtype)
        head = self._pending[:, :lo]  # pending rows before this slab (not final yet)
        self._pending = np.concatenate([head, keep, self._pending[:, lo + shared :]], axis=1)
        if n_final:
            if lo:
                raise InvariantError(f"chunk {index}: rows before {a} are still pending")
            self._start = a + n_final
        return out
