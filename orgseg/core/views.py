"""Three orthogonal views of a canonical volume, as a radiologist reads them.

The canonical frame is (z, y, x) = (inferior->superior, anterior->posterior,
right->left). Each view comes back display-ready: row 0 is the top of the picture and
column 0 its left, in radiological convention:

* axial (a z slice): anterior at the top, the patient's right on the picture's left;
* coronal (a y slice, front to back): superior at the top, the patient's right on the
  left, so both hips and both kidneys show;
* sagittal (an x slice, right to left): superior at the top, anterior on the left, so
  the spine shows in profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VIEW_NAMES = ("axial", "coronal", "sagittal")


@dataclass(frozen=True, slots=True)
class View:
    name: str
    image: np.ndarray  # (rows, cols), display-ready
    #: height / width of one pixel on screen, so millimetres are square
    aspect: float


def view_centre(mask: np.ndarray) -> tuple[int, int, int]:
    """A point the three views go through: per axis, the median slice holding ``mask``
    (the volume's centre when ``mask`` is empty)."""
    if not mask.any():
        return tuple(s // 2 for s in mask.shape)  # type: ignore[return-value]
    out = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        out.append(int(np.median(np.flatnonzero(mask.any(axis=others)))))
    return tuple(out)  # type: ignore[return-value]


def orthogonal_views(
    volume: np.ndarray, centre: Sequence[int], spacing_mm: Sequence[float]
) -> list[View]:
    """The axial, coronal and sagittal slices of ``volume`` through ``centre``."""
    z, y, x = (int(c) for c in centre)
    sz, sy, sx = (float(s) for s in spacing_mm)
    return [
        View("axial", volume[z], sy / sx),  # rows anterior->posterior, cols right->left
        View("coronal", volume[::-1, y, :], sz / sx),  # rows superior->inferior
        View("sagittal", volume[::-1, :, x], sz / sy),  # cols anterior->posterior
    ]
