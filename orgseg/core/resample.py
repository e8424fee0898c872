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


# --- scipy.ndimage.zoom's grid (corner-aligned), as TotalSegmentator resamples ---------


def corner_coords(n_in: int, n_out: int) -> np.ndarray:
    """Input coordinate of each output index on ``scipy.ndimage.zoom``'s grid
    (``grid_mode=False``): the first and last samples of both grids coincide.

    >>> corner_coords(3, 5).tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
    """
    if n_in < 1 or n_out < 1:
        raise DataContractError(f"expected positive sizes, got n_in={n_in}, n_out={n_out}")
    if n_out == 1:
        return np.zeros(1)
    return np.arange(n_out) * ((n_in - 1) / (n_out - 1))


def _corner_matrix(n_in: int, n_out: int) -> np.ndarray:
    c = corner_coords(n_in, n_out)
    i0 = np.minimum(np.floor(c).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = c - i0
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - w)
    np.add.at(m, (rows, i1), w)
    return m


def zoom_linear(
    volume,  # noqa: ANN001 - an array or a read-only array of rows (ScanRows)
    out_shape: tuple[int, int, int],
    *,
    dtype: type = np.int16,
    slab_rows: int = 16,
) -> np.ndarray:
    """``volume`` resized to ``out_shape`` by linear interpolation on scipy's zoom grid,
    truncated to ``dtype`` (``scipy.ndimage.zoom(order=1, mode="nearest")`` followed by
    ``astype``), reading the input a few rows at a time.

    >>> v = np.array([[[0, 10]], [[20, 30]]], dtype=np.int16)
    >>> zoom_linear(v, (3, 1, 3), dtype=np.float32)[:, 0].tolist()
    [[0.0, 5.0, 10.0], [10.0, 15.0, 20.0], [20.0, 25.0, 30.0]]
    """
    n_z, n_y, n_x = (int(s) for s in volume.shape)
    cz = corner_coords(n_z, out_shape[0])
    z0 = np.minimum(np.floor(cz).astype(np.int64), n_z - 1)
    z1 = np.minimum(z0 + 1, n_z - 1)
    wz = cz - z0
    ry = _corner_matrix(n_y, out_shape[1])
    rx_t = _corner_matrix(n_x, out_shape[2]).T
    out: np.ndarray = np.empty(out_shape, dtype=dtype)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    for a in range(0, out_shape[0], slab_rows):
        b = min(a + slab_rows, out_shape[0])
        lo, hi = int(z0[a]), int(z1[b - 1]) + 1
        rows = np.asarray(volume[lo:hi], dtype=np.float64)
        w = wz[a:b, None, None]
        planes = rows[z0[a:b] - lo] * (1.0 - w) + rows[z1[a:b] - lo] * w
        res = np.matmul(np.matmul(ry, planes), rx_t)
        if info is not None:
            res = np.clip(np.trunc(res), info.min, info.max)
        out[a:b] = res
    return out


def zoom_nearest(labels: np.ndarray, out_shape: tuple[int, int, int], *, slab_rows: int = 32):
    """``labels`` resized to ``out_shape`` by nearest neighbour on scipy's zoom grid
    (``scipy.ndimage.zoom(order=0, mode="nearest")``), a slab of output rows at a time.

    >>> zoom_nearest(np.array([[[1, 2]], [[3, 4]]], np.uint8), (3, 1, 3))[:, 0].tolist()
    [[1, 2, 2], [3, 4, 4], [3, 4, 4]]
    """
    taps = [
        np.clip(np.floor(corner_coords(n, m) + 0.5), 0, n - 1).astype(np.int64)
        for n, m in zip(labels.shape, out_shape, strict=True)
    ]
    out: np.ndarray = np.empty(out_shape, dtype=labels.dtype)
    for a in range(0, out_shape[0], slab_rows):
        b = min(a + slab_rows, out_shape[0])
        out[a:b] = labels[taps[0][a:b]][:, taps[1]][:, :, taps[2]]
    return out


def nearest_preimage(mask, grid_shape: tuple[int, int, int], *, slab_rows: int = 8) -> np.ndarray:  # noqa: ANN001
    """The voxels of ``grid_shape`` that :func:`zoom_nearest` maps some voxel of ``mask``
    from: a mask on the coarse grid whose nearest zoom back covers ``mask`` exactly where
    it is set. (``mask``: a bool array, or anything with ``rows(a, b)``.)

    >>> m = np.zeros((4, 1, 4), bool); m[1, 0, 1] = True
    >>> nearest_preimage(m, (2, 1, 2))[:, 0].tolist()
    [[True, False], [False, False]]
    """
    shape = tuple(int(s) for s in mask.shape)
    taps = [
        np.clip(np.floor(corner_coords(g, n) + 0.5), 0, g - 1).astype(np.int64)
        for g, n in zip(grid_shape, shape, strict=True)
    ]
    out = np.zeros(grid_shape, dtype=bool)
    rows = getattr(mask, "rows", None)
    for a in range(0, shape[0], slab_rows):
        b = min(a + slab_rows, shape[0])
        slab = rows(a, b) if rows is not None else np.asarray(mask[a:b], dtype=bool)
        iz, iy, ix = np.nonzero(slab)
        out[taps[0][a + iz], taps[1][iy], taps[2][ix]] = True
    return out
