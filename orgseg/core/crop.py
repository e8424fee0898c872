"""Bounding boxes with a physical margin, crop and uncrop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from orgseg.core.volume import Volume
from orgseg.errors import DataContractError

if TYPE_CHECKING:
    from orgseg.core.body import PackedMask


@dataclass(frozen=True, slots=True)
class CropBox:
    """Half-open voxel box ``[start, stop)`` per axis (z, y, x) inside a volume of ``shape``."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    shape: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def cropped_shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, list[int]]:
        return {"start": list(self.start), "stop": list(self.stop), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Sequence[int]]) -> CropBox:
        return cls(tuple(d["start"]), tuple(d["stop"]), tuple(d["shape"]))  # type: ignore[arg-type]


def bounding_box(
    mask: np.ndarray | PackedMask,
    *,
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
    margin_mm: float = 0.0,
) -> CropBox:
    """The smallest box holding every True voxel, grown by ``margin_mm`` and clipped.

    An empty mask gives the whole volume (nothing is cropped away).

    >>> import numpy as np
    >>> m = np.zeros((10, 10, 10), bool); m[4:6, 4:6, 4:6] = True
    >>> bounding_box(m, spacing_mm=(2.0, 1.0, 1.0), margin_mm=2.0).slices
    (slice(3, 7, None), slice(2, 8, None), slice(2, 8, None))
    """
    if mask.ndim != 3:
        raise DataContractError(f"expected a 3D mask, got shape {mask.shape}")
    shape = tuple(int(s) for s in mask.shape)
    if hasattr(mask, "axis_flags"):  # a PackedMask: from its bits
        flags = mask.axis_flags()
    else:
        flags = tuple(mask.any(axis=tuple(a for a in range(3) if a != axis)) for axis in range(3))
    if not flags[0].any():
        return CropBox((0, 0, 0), shape, shape)  # type: ignore[arg-type]
    start, stop = [], []
    for axis in range(3):
        present = np.flatnonzero(flags[axis])
        pad = int(np.ceil(margin_mm / spacing_mm[axis] - 1e-9)) if margin_mm > 0 else 0
        start.append(max(0, int(present[0]) - pad))
        stop.append(min(shape[axis], int(present[-1]) + 1 + pad))
    return CropBox(tuple(start), tuple(stop), shape)  # type: ignore[arg-type]


def crop(array: np.ndarray, box: CropBox) -> np.ndarray:
    """The part of ``array`` inside ``box`` (a view)."""
    if array.shape != box.shape:
        raise DataContractError(f"box is for shape {box.shape}, array has shape {array.shape}")
    return array[box.slices]


def uncrop(cropped: np.ndarray, box: CropBox, *, fill: float | int = 0) -> np.ndarray:
    """Put a cropped array back into a full-size array filled with ``fill``.

    >>> import numpy as np
    >>> box = CropBox((1, 0, 0), (2, 1, 1), (3, 1, 1))
    >>> uncrop(np.array([[[7]]]), box).ravel().tolist()
    [0, 7, 0]
    """
    if cropped.shape != box.cropped_shape:
        raise DataContractError(
            f"expected a cropped array of shape {box.cropped_shape}, got {cropped.shape}"
        )
    out = np.full(box.shape, fill, dtype=cropped.dtype)
    out[box.slices] = cropped
    return out


def crop_volume(volume: Volume, box: CropBox) -> Volume:
    """Crop a volume and shift its origin so every voxel keeps its world position."""
    start = np.asarray(box.start, float)
    shift = sum(start[a] * volume.spacing_mm[a] * volume.direction[a] for a in range(3))
    return Volume(
        np.ascontiguousarray(crop(volume.array, box)),
        spacing_mm=volume.spacing_mm,
        origin_mm=tuple(np.asarray(volume.origin_mm) + shift),  # type: ignore[arg-type]
        direction=volume.direction,
    )
