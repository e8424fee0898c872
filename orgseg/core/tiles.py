"""Sliding-window tiling of a whole scan, walked one tile row at a time.

nnU-Net predicts a volume with patches placed by a fixed rule (:func:`window_steps`),
weights each patch's logits with a Gaussian and divides by the summed weights. If the
tiles are laid out for the *whole* scan and visited in order of their start along axis 0,
every row of the result is final as soon as the last tile row covering it is done. Walking
the tile rows this way gives exactly the whole-scan result while only one patch height of
logits is ever held. Tiles that cannot reach the body are skipped (:func:`tiles_touching`):
every voxel they would have touched lies outside the body.

Pure numpy helpers; the network side lives in :mod:`orgseg.nnunet.stream`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from orgseg.core.resample import linear_taps, nearest_taps
from orgseg.errors import DataContractError


def window_steps(size: int, patch: int, step_fraction: float = 0.5) -> list[int]:
    """Tile starts along one axis (nnU-Net's rule: as few tiles as keep the step at most
    ``step_fraction`` of the patch, spread evenly, first at 0 and last at the end).

    >>> window_steps(110, 64)
    [0, 23, 46]
    >>> window_steps(64, 64)
    [0]
    """
    if patch < 1 or size < patch:
        raise DataContractError(
            f"expected an axis at least one patch long, got size {size} and patch {patch}; "
            "pad the axis to the patch first (pad_split)"
        )
    if not 0 < step_fraction <= 1:
        raise DataContractError(f"expected a step fraction in (0, 1], got {step_fraction}")
    n = int(math.ceil((size - patch) / (patch * step_fraction))) + 1
    if n == 1:
        return [0]
    step = (size - patch) / (n - 1)
    return [int(np.round(step * i)) for i in range(n)]


def pad_split(size: int, patch: int) -> tuple[int, int]:
    """Padding (below, above) that brings an axis shorter than the patch up to it, split
    as nnU-Net splits it (the odd voxel above).

    >>> pad_split(61, 64), pad_split(100, 64)
    ((1, 2), (0, 0))
    """
    diff = max(0, patch - size)
    return diff // 2, diff - diff // 2


def row_boxes(mask: np.ndarray) -> np.ndarray:
    """Per row of axis 0, the in-plane bounding box of ``mask``: (n, 4) int array of
    ``y0, y1, x0, x1`` (half-open); an empty row gets ``0, 0, 0, 0``.

    >>> m = np.zeros((2, 3, 4), bool); m[1, 1:3, 2] = True
    >>> row_boxes(m).tolist()
    [[0, 0, 0, 0], [1, 3, 2, 3]]
    """
    if mask.ndim != 3:
        raise DataContractError(f"expected a (z, y, x) mask, got shape {mask.shape}")
    out = np.zeros((mask.shape[0], 4), dtype=np.int64)
    for z in range(mask.shape[0]):
        ys = np.flatnonzero(mask[z].any(axis=1))
        if ys.size == 0:
            continue
        xs = np.flatnonzero(mask[z].any(axis=0))
        out[z] = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    return out


def union_box(
    boxes: np.ndarray, rows: tuple[int, int], margin_px: Sequence[int], plane: Sequence[int]
) -> tuple[int, int, int, int] | None:
    """Union of the row boxes ``boxes[rows[0]:rows[1]]`` grown by ``margin_px`` (y, x) and
    clipped to ``plane`` (Y, X); None when all those rows are empty."""
    part = boxes[max(0, rows[0]) : max(0, rows[1])]
    part = part[part[:, 1] > part[:, 0]]
    if part.size == 0:
        return None
    my, mx = margin_px
    return (
        max(0, int(part[:, 0].min()) - my),
        min(int(plane[0]), int(part[:, 1].max()) + my),
        max(0, int(part[:, 2].min()) - mx),
        min(int(plane[1]), int(part[:, 3].max()) + mx),
    )


def coarse_span(lo: int, hi: int, n_coarse: int, n_fine: int) -> tuple[int, int]:
    """Coarse indices ``[a, b)`` that fine indices ``[lo, hi)`` interpolate from (linear or
    nearest, on the grids of :mod:`orgseg.core.resample`).

    >>> coarse_span(0, 4, 2, 4), coarse_span(1, 2, 4, 4)
    ((0, 2), (1, 3))
    """
    if not 0 <= lo < hi <= n_fine:
        raise DataContractError(f"expected 0 <= lo < hi <= {n_fine}, got {lo}, {hi}")
    i0, i1, _ = linear_taps(n_coarse, n_fine)
    near = nearest_taps(n_coarse, n_fine)
    a = int(min(i0[lo:hi].min(), near[lo:hi].min()))
    b = int(max(i1[lo:hi].max(), near[lo:hi].max())) + 1
    return a, b


def fine_span(a: int, b: int, n_coarse: int, n_fine: int) -> tuple[int, int] | None:
    """Fine indices whose interpolation reads any of coarse indices ``[a, b)``; None if
    none do. Inverse of :func:`coarse_span`.

    >>> fine_span(1, 2, 2, 4)
    (0, 4)
    """
    i0, i1, _ = linear_taps(n_coarse, n_fine)
    near = nearest_taps(n_coarse, n_fine)
    hit = ((i0 >= a) & (i0 < b)) | ((i1 >= a) & (i1 < b)) | ((near >= a) & (near < b))
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return None
    return int(idx[0]), int(idx[-1]) + 1


def tiles_touching(starts: Sequence[int], patch: int, lo: int, hi: int) -> list[int]:
    """Tile starts whose span ``[s, s + patch)`` meets ``[lo, hi)``.

    >>> tiles_touching([0, 23, 46], 64, 100, 110)
    [46]
    """
    return [s for s in starts if s < hi and s + patch > lo]
