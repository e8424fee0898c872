"""The `Volume` type: a 3D image with its physical geometry.

Conventions, stated once for the whole project:

* ``array`` is indexed ``(z, y, x)``: axis 0 is the slowest-varying file axis (ITK's k),
  axis 2 the fastest (ITK's i).
* ``spacing_mm`` is in the same ``(z, y, x)`` order as the array axes.
* ``origin_mm`` is the world position of voxel ``[0, 0, 0]`` in DICOM/ITK LPS coordinates,
  given as world ``(x, y, z)`` = (towards patient Left, Posterior, Superior).
* ``direction`` is a 3x3 matrix whose row ``a`` is the LPS unit vector along which array
  axis ``a`` increases. The world position of index ``idx`` is
  ``origin_mm + sum_a idx[a] * spacing_mm[a] * direction[a]``.

After :func:`orgseg.core.orientation.to_canonical`, axis 0 runs inferior->superior
(cranio-caudal), axis 1 anterior->posterior, axis 2 right->left.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from orgseg.errors import DataContractError

CANONICAL_DIRECTION = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True, slots=True)
class Volume:
    """A 3D image: array in (z, y, x), spacing in (z, y, x) mm, LPS origin and direction.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((2, 3, 4), np.int16), spacing_mm=(2.0, 1.0, 1.0))
    >>> v.shape, v.spacing_mm
    ((2, 3, 4), (2.0, 1.0, 1.0))
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: CANONICAL_DIRECTION.copy())

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise DataContractError(
                f"expected a 3D image (z, y, x), got an array of shape {self.array.shape}; "
                "pass one 3D volume (split 4D series into 3D volumes first)"
            )
        spacing = tuple(float(s) for s in self.spacing_mm)
        if len(spacing) != 3:
            raise DataContractError(f"expected 3 spacing values (z, y, x), got {self.spacing_mm}")
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_mm", tuple(float(o) for o in self.origin_mm))
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        object.__setattr__(self, "direction", direction)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm^3)."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    def with_array(self, array: np.ndarray) -> Volume:
        """The same geometry around another array of the same shape."""
        if array.shape != self.array.shape:
            raise DataContractError(
                f"expected an array of shape {self.array.shape} for this geometry, "
                f"got {array.shape}"
            )
        return replace(self, array=array)

    @property
    def grid(self) -> Grid:
        """This volume's sampling grid (shape and geometry, no voxels)."""
        return Grid(
            shape=self.shape,
            spacing_mm=self.spacing_mm,
            origin_mm=self.origin_mm,
            direction=self.direction,
        )

    def same_grid(self, other: Volume, *, tol_mm: float = 1e-3) -> bool:
        """True when both volumes sample the same voxels in world space."""
        return self.grid.differences(other.grid, tol_mm=tol_mm) == []


@dataclass(frozen=True, slots=True, kw_only=True)
class Grid:
    """Where a volume's voxels are, without the voxels: what an image header says.

    Same conventions as :class:`Volume` (shape and spacing in (z, y, x), LPS origin, one
    direction row per array axis).
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: np.ndarray

    def differences(self, other: Grid, *, tol_mm: float = 1e-3) -> list[str]:
        """What differs between two grids, in words (empty: the same voxels).

        Shapes must be equal exactly; spacing and origin within ``tol_mm`` plus a
        relative 1e-5 (float32 headers), direction cosines within 1e-4.

        >>> g = Grid(shape=(2, 3, 4), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0),
        ...          direction=CANONICAL_DIRECTION)
        >>> g.differences(replace(g, origin_mm=(0.0, 0.0, 5.0)))
        ['origin (0.0, 0.0, 0.0) vs (0.0, 0.0, 5.0) mm']
        """
        out = []
        if tuple(self.shape) != tuple(other.shape):
            out.append(f"shape {tuple(self.shape)} vs {tuple(other.shape)}")
        for name, a, b in (
            ("spacing", self.spacing_mm, other.spacing_mm),
            ("origin", self.origin_mm, other.origin_mm),
        ):
            if not np.allclose(a, b, atol=tol_mm, rtol=1e-5):
                fmt = lambda v: tuple(round(float(x), 4) for x in v)  # noqa: E731
                out.append(f"{name} {fmt(a)} vs {fmt(b)} mm")
        if not np.allclose(self.direction, other.direction, atol=1e-4):
            out.append(
                f"direction {np.round(self.direction, 4).tolist()} vs "
                f"{np.round(other.direction, 4).tolist()}"
            )
        return out
