"""Planar contours (DICOM RTSTRUCT ROIs) to voxel masks on an image grid.

Contour points are world positions (LPS mm). Each closed planar contour lies on one slice
of the grid; the contours of a slice are filled with the even-odd rule, so a contour
nested in another cuts a hole (and one nested in the hole fills again). Contours are
drawn through the centres of their boundary voxels by every planning system and by
orgseg's own RTSTRUCT writer, so the boundary voxels belong to the mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from orgseg.core.volume import Grid
from orgseg.errors import DataContractError

#: how far (in slices) a contour may sit off a slice centre and still belong to it
SLICE_TOL = 0.3


@dataclass(frozen=True, slots=True, kw_only=True)
class RasterReport:
    """What rasterising one ROI met: contours used, and contours off the grid."""

    contours: int
    off_grid: int


def world_to_index(points_mm: np.ndarray, grid: Grid) -> np.ndarray:
    """Continuous (z, y, x) voxel indices of world points, shape (N, 3).

    >>> from orgseg.core.volume import CANONICAL_DIRECTION
    >>> g = Grid(shape=(3, 4, 5), spacing_mm=(2.0, 1.0, 1.0), origin_mm=(10.0, 0.0, 0.0),
    ...          direction=CANONICAL_DIRECTION)
    >>> world_to_index(np.array([[12.0, 1.0, 4.0]]), g).tolist()
    [[2.0, 1.0, 2.0]]
    """
    axes = np.asarray(grid.direction, float) * np.asarray(grid.spacing_mm, float)[:, None]
    # world = origin + idx @ axes  ->  idx = (world - origin) @ inv(axes)
    return (np.asarray(points_mm, float) - np.asarray(grid.origin_mm, float)) @ np.linalg.inv(axes)


def _fill_polygon(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre is inside the polygon (even-odd crossings), shape ``shape``."""
    out = np.zeros(shape, bool)
    r0, r1 = rows, np.roll(rows, -1)
    c0, c1 = cols, np.roll(cols, -1)
    lo = max(int(np.ceil(rows.min())), 0)
    hi = min(int(np.floor(rows.max())), shape[0] - 1)
    if hi < lo:
        return out
    y = np.arange(lo, hi + 1, dtype=float)[:, None]  # (R, 1)
    crosses = ((r0 <= y) & (y < r1)) | ((r1 <= y) & (y < r0))  # half-open: vertices once
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(crosses, c0 + (y - r0) * (c1 - c0) / (r1 - r0), np.inf)
    x.sort(axis=1)
    n_cross = crosses.sum(axis=1)
    cols_idx = np.arange(shape[1], dtype=float)
    for i, n in enumerate(n_cross):
        if n < 2:
            continue
        xs = x[i, :n]
        # a centre c is inside when an odd number of crossings lie left of it
        inside = (np.searchsorted(xs, cols_idx, side="right") % 2) == 1
        out[lo + i] |= inside
    return out


def _draw_outline(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels a digital line along each edge visits (one step per pixel along the edge's
    major axis: a diagonal between two boundary voxel centres adds no corner voxel)."""
    out = np.zeros(shape, bool)
    r0, r1 = rows, np.roll(rows, -1)
    c0, c1 = cols, np.roll(cols, -1)
    for a, b, c, d in zip(r0, r1, c0, c1):
        n = int(np.ceil(max(abs(b - a), abs(d - c)))) + 1
        t = np.linspace(0.0, 1.0, n)
        rr = np.rint(a + t * (b - a)).astype(int)
        cc = np.rint(c + t * (d - c)).astype(int)
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        out[rr[ok], cc[ok]] = True
    return out


def rasterize_contours(
    contours_mm: Sequence[np.ndarray], grid: Grid, *, name: str = "ROI"
) -> tuple[np.ndarray, RasterReport]:
    """A boolean mask on ``grid`` from closed planar contours in world coordinates.

    Parameters
    ----------
    contours_mm : sequence of ndarray, each of shape (N, 3)
        Closed polygons, LPS mm (DICOM ContourData reshaped), each on one slice plane.
    grid : Grid
        The image the ROI belongs to (its own geometry, any axis order).
    name : str
        Used in error messages.

    Returns
    -------
    mask : bool ndarray of ``grid.shape``
    report : RasterReport

    Examples
    --------
    A square, then a square with a square hole, on slice 1 of a 1 mm grid (contours
    through boundary voxel centres, so the hole is the 3 x 3 voxels inside the inner one):

    >>> from orgseg.core.volume import CANONICAL_DIRECTION
    >>> g = Grid(shape=(3, 7, 7), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0),
    ...          direction=CANONICAL_DIRECTION)
    >>> sq = lambda a, b: np.array([[a, a, 1], [b, a, 1], [b, b, 1], [a, b, 1]], float)
    >>> m, r = rasterize_contours([sq(1, 5)], g)
    >>> int(m.sum()), int(m[1].sum()), r.contours
    (25, 25, 1)
    >>> m, _ = rasterize_contours([sq(0, 6), sq(1, 5)], g)
    >>> int(m[1].sum()), bool(m[1, 3, 3]), bool(m[1, 1, 1])
    (40, False, True)
    """
    shape = tuple(int(s) for s in grid.shape)
    mask = np.zeros(shape, bool)
    per_slice: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    off_grid = 0
    for k, pts in enumerate(contours_mm):
        pts = np.asarray(pts, float).reshape(-1, 3)
        if len(pts) < 3:
            continue
        idx = world_to_index(pts, grid)
        spread = idx.max(axis=0) - idx.min(axis=0)
        axis = int(np.argmin(spread))
        if spread[axis] > 2 * SLICE_TOL:
            raise DataContractError(
                f"{name}: contour {k} is not on one slice of the image (it spans "
                f"{spread[axis]:.2f} slices); expected closed planar contours on the CT's "
                "slices: re-export the structure set against this series"
            )
        pos = float(idx[:, axis].mean())
        sl = int(np.rint(pos))
        if abs(pos - sl) > SLICE_TOL or not 0 <= sl < shape[axis]:
            off_grid += 1
            continue
        u, v = (a for a in range(3) if a != axis)
        per_slice.setdefault((axis, sl), []).append((idx[:, u], idx[:, v]))
    for (axis, sl), polygons in per_slice.items():
        u, v = (a for a in range(3) if a != axis)
        plane = (shape[u], shape[v])
        inside = np.zeros(plane, bool)
        outline = np.zeros(plane, bool)
        for rows, cols in polygons:
            inside ^= _fill_polygon(rows, cols, plane)
            outline |= _draw_outline(rows, cols, plane)
        np.moveaxis(mask, axis, 0)[sl] |= inside | outline  # a view: writes into mask
    used = sum(len(p) for p in per_slice.values())
    return mask, RasterReport(contours=used, off_grid=off_grid)
