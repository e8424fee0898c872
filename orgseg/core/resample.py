"""Linear resampling of class scores back to a finer grid, a slab of rows at a time.

The grid convention is scikit-image's ``resize`` (and so nnU-Net's): output index ``i`` of
``n_out`` samples input coordinate ``(i + 0.5) * n_in / n_out - 0.5``, clamped to the
input's edge. Linear interpolation on such grids is separable, so any slab of output rows
can be computed from the two input rows around each of them, without the whole output.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from orgseg.errors import DataContractError


def linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two input indices and the weight of the second.

    >>> i0, i1, w = linear_taps(2, 4)
    >>> i0.tolist(), i1.tolist(), w.tolist()
    ([0, 0, 0, 1], [1, 1, 1, 1], [0.0, 0.25, 0.75, 0.0])
    """
    if n_in < 1 or n_out < 1:
        raise DataContractError(f"expected positive sizes, got n_in={n_in}, n_out={n_out}")
    coords = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    coords = np.clip(coords, 0.0, n_in - 1)
    i0 = np.floor(coords).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, coords - i0


def nearest_taps(n_in: int, n_out: int) -> np.ndarray:
    """Input index nearest to each output index's coordinate (same grid convention)."""
    coords = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    return np.clip(np.floor(coords + 0.5), 0, n_in - 1).astype(np.int64)


def interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Dense (n_out, n_in) float32 matrix of linear interpolation weights."""
    i0, i1, w = linear_taps(n_in, n_out)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), (1.0 - w).astype(np.float32))
    np.add.at(m, (rows, i1), w.astype(np.float32))
    return m


def resize_rows(
    scores: np.ndarray,
    out_shape: tuple[int, int, int],
    rows: tuple[int, int],
    *,
    axis0: Literal["linear", "nearest"] = "linear",
) -> np.ndarray:
    """Rows ``[rows[0], rows[1])`` of ``scores`` resized to ``out_shape``.

    Parameters
    ----------
    scores : ndarray, shape (C, z, y, x)
        Per-class scores (logits or probabilities) on the coarse grid.
    out_shape : (Z, Y, X) of the whole output grid.
    rows : the output rows (along axis 0) to compute.
    axis0 : interpolation along axis 0 (``"nearest"`` is nnU-Net's choice for strongly
        anisotropic data); axes 1 and 2 are always linear.

    Returns
    -------
    ndarray, shape (C, rows[1] - rows[0], Y, X), float32

    Examples
    --------
    >>> s = np.arange(4, dtype=np.float32).reshape(1, 2, 1, 2)
    >>> resize_rows(s, (4, 1, 2), (1, 3))[0, :, 0].tolist()
    [[0.5, 1.5], [1.5, 2.5]]
    """
    if scores.ndim != 4:
        raise DataContractError(f"expected scores of shape (C, z, y, x), got {scores.shape}")
    a, b = rows
    if not 0 <= a < b <= out_shape[0]:
        raise DataContractError(f"rows {rows} are not inside 0..{out_shape[0]}")
    n_z = scores.shape[1]
    if axis0 == "linear":
        i0, i1, w = linear_taps(n_z, out_shape[0])
        w = w[a:b].astype(np.float32)[None, :, None, None]
        planes = scores[:, i0[a:b]] * (1.0 - w) + scores[:, i1[a:b]] * w
    else:
        planes = scores[:, nearest_taps(n_z, out_shape[0])[a:b]]
    planes = np.asarray(planes, dtype=np.float32)
    ry = interpolation_matrix(scores.shape[2], out_shape[1])
    rx_t = interpolation_matrix(scores.shape[3], out_shape[2]).T
    return np.matmul(np.matmul(ry, planes), rx_t)


#: rows of edge values scipy.ndimage pads before its spline prefilter in mode 'nearest'
_SPLINE_PAD = 12


def cubic_rows(block: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Cubic B-spline interpolation of ``block`` along axis 0 at the fractional row
    ``positions`` (float64 out, one plane per position).

    The same as ``scipy.ndimage.affine_transform(block, diag(scale, 1, ...), order=3,
    mode='nearest', prefilter=True)`` for positions on a line (up to rounding): the
    spline prefilter is separable and the other axes are sampled at their own grid
    points, where a prefiltered cubic spline returns the samples themselves, so only
    axis 0 is filtered and interpolated (4 planes per output plane, not 64 voxels per
    output voxel). Edges as scipy's: 12 edge rows padded before the prefilter.

    >>> rows = np.arange(6, dtype=float)[:, None] * np.ones((1, 2))
    >>> cubic_rows(rows, np.array([0.0, 2.5, 5.0]))[:, 0].round(6).tolist()
    [0.0, 2.5, 5.0]
    """
    from scipy import ndimage as ndi

    block = np.asarray(block, dtype=np.float64)
    pad = [(_SPLINE_PAD, _SPLINE_PAD)] + [(0, 0)] * (block.ndim - 1)
    coef = ndi.spline_filter1d(
        np.pad(block, pad, mode="edge"), order=3, axis=0, mode="nearest", output=np.float64
    )
    pos = np.asarray(positions, dtype=np.float64) + _SPLINE_PAD
    i = np.floor(pos).astype(np.int64)
    t = pos - i
    weights = (
        (1.0 - t) ** 3 / 6.0,
        (4.0 - 6.0 * t**2 + 3.0 * t**3) / 6.0,
        (1.0 + 3.0 * t + 3.0 * t**2 - 3.0 * t**3) / 6.0,
        t**3 / 6.0,
    )
    last = coef.shape[0] - 1
    shape = (-1,) + (1,) * (block.ndim - 1)
    out = np.zeros((len(pos), *block.shape[1:]), dtype=np.float64)
    for k, w in enumerate(weights):
        out += w.reshape(shape) * coef[np.clip(i - 1 + k, 0, last)]
    return out
