"""Reorientation between a file's axis order and orgseg's canonical frame.

The canonical frame (see :mod:`orgseg.core.volume`) puts the cranio-caudal axis first, so
"axial slice" always means ``array[z]`` whatever the file's axis order. Only axis
permutations and flips are applied: voxel values are never resampled, so the round trip
is exact, and an oblique residual rotation stays in ``direction``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from orgseg.core.volume import Volume
from orgseg.errors import DataContractError

# canonical array axis n runs along world axis _WORLD_AXIS_OF[n] (LPS x=0, y=1, z=2)
_WORLD_AXIS_OF = (2, 1, 0)


@dataclass(frozen=True, slots=True)
class Reorientation:
    """How a volume was brought to the canonical frame, and its original geometry.

    ``perm[n]`` is the original array axis that became canonical axis ``n``; ``flips[n]``
    says whether canonical axis ``n`` was reversed.
    """

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: np.ndarray

    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flips)


def _best_permutation(direction: np.ndarray) -> tuple[int, int, int]:
    best: tuple[int, int, int] = (0, 1, 2)
    best_score = -1.0
    for perm in itertools.permutations(range(3)):
        score = sum(abs(direction[perm[n], _WORLD_AXIS_OF[n]]) for n in range(3))
        if score > best_score + 1e-9:
            best, best_score = perm, score  # type: ignore[assignment]
    return best


def to_canonical(volume: Volume) -> tuple[Volume, Reorientation]:
    """Permute and flip axes so the volume is in the canonical (S, P, L) frame.

    Parameters
    ----------
    volume : Volume
        Any 3D volume with a valid direction matrix.

    Returns
    -------
    canonical : Volume
        A view (no copy) of the data with axis 0 inferior->superior, axis 1
        anterior->posterior, axis 2 right->left; the same world positions per voxel.
    reorientation : Reorientation
        What :func:`from_canonical` needs to go back exactly.

    Examples
    --------
    >>> import numpy as np
    >>> d = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])  # axis0=L, axis1=A, axis2=S
    >>> v = Volume(np.arange(24).reshape(2, 3, 4), direction=d)
    >>> c, r = to_canonical(v)
    >>> c.shape, r.perm, r.flips
    ((4, 3, 2), (2, 1, 0), (False, True, False))
    """
    direction = volume.direction
    if abs(np.linalg.det(direction)) < 1e-3:
        raise DataContractError(
            f"expected a non-degenerate direction matrix, got {direction.tolist()}; "
            "the image header is corrupt: rewrite it with a valid orientation"
        )
    perm = _best_permutation(direction)
    shape = [volume.shape[p] for p in perm]
    spacing = [volume.spacing_mm[p] for p in perm]
    new_dir = np.array([direction[p] for p in perm])
    origin = np.array(volume.origin_mm, dtype=float)
    flips = []
    for n in range(3):
        flip = bool(new_dir[n, _WORLD_AXIS_OF[n]] < 0)
        flips.append(flip)
        if flip:
            origin = origin + (shape[n] - 1) * spacing[n] * new_dir[n]
            new_dir[n] = -new_dir[n]
    canonical = Volume(
        to_canonical_axes(volume.array, perm, flips),
        spacing_mm=tuple(spacing),  # type: ignore[arg-type]
        origin_mm=tuple(origin),  # type: ignore[arg-type]
        direction=new_dir,
    )
    record = Reorientation(
        perm=perm,
        flips=tuple(flips),  # type: ignore[arg-type]
        shape=volume.shape,
        spacing_mm=volume.spacing_mm,
        origin_mm=volume.origin_mm,
        direction=volume.direction.copy(),
    )
    return canonical, record


def from_canonical(array: np.ndarray, reorientation: Reorientation) -> Volume:
    """Bring a canonical-frame array back to the original file's axis order and geometry.

    Parameters
    ----------
    array : ndarray, shape (Z, Y, X)
        An array on the canonical grid that :func:`to_canonical` produced.
    reorientation : Reorientation
        The record :func:`to_canonical` returned.
    """
    check_canonical_shape(array.shape, reorientation)
    return Volume(
        np.ascontiguousarray(from_canonical_axes(array, reorientation.perm, reorientation.flips)),
        spacing_mm=reorientation.spacing_mm,
        origin_mm=reorientation.origin_mm,
        direction=reorientation.direction,
    )


def check_canonical_shape(shape: tuple[int, ...], reorientation: Reorientation) -> None:
    """Refuse an array that is not on the canonical grid ``reorientation`` describes."""
    expected = tuple(reorientation.shape[p] for p in reorientation.perm)
    if tuple(shape) != expected:
        raise DataContractError(
            f"expected a canonical array of shape {expected}, got {tuple(shape)}; "
            "pass an array on the grid returned by to_canonical"
        )


def to_canonical_axes(array: np.ndarray, perm: Sequence[int], flips: Sequence[bool]) -> np.ndarray:
    """The axis permutation and flips of :func:`to_canonical`, on any block of the file's
    array (a view). A block of whole file slices, when ``perm[0] == 0``, becomes the
    canonical rows :func:`file_rows` names.

    >>> a = np.arange(8).reshape(2, 2, 2)
    >>> from_canonical_axes(to_canonical_axes(a, (0, 2, 1), (True, False, True)),
    ...                     (0, 2, 1), (True, False, True)).tolist() == a.tolist()
    True
    """
    out = np.transpose(array, tuple(perm))
    for n, flip in enumerate(flips):
        if flip:
            out = np.flip(out, axis=n)
    return out


def from_canonical_axes(
    array: np.ndarray, perm: Sequence[int], flips: Sequence[bool]
) -> np.ndarray:
    """The inverse of :func:`to_canonical_axes` (a view): canonical axes to the file's."""
    for n, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis=n)
    return np.transpose(array, tuple(int(i) for i in np.argsort(perm)))


def slices_are_axial(reorientation: Reorientation) -> bool:
    """Whether the file's slowest axis is the canonical z axis: each file slice is then
    one canonical row, and a scan can be read or written a slab of slices at a time."""
    return reorientation.perm[0] == 0


def check_slices_are_axial(reorientation: Reorientation, *, name: str = "image") -> None:
    """Refuse a file whose slices are not axial (see :func:`slices_are_axial`)."""
    if not slices_are_axial(reorientation):
        raise DataContractError(
            f"{name}: expected a file whose slowest axis is the cranio-caudal one, got axes "
            f"{reorientation.perm}; read it whole and use to_canonical"
        )


def file_rows(reorientation: Reorientation, start: int, stop: int) -> tuple[int, int]:
    """For a file whose slowest axis is the canonical z axis (``perm[0] == 0``): the file
    slices ``[a, b)`` that hold canonical rows ``[start, stop)``, and, the map being its
    own inverse, the canonical rows that file slices ``[start, stop)`` hold.

    >>> r = Reorientation((0, 1, 2), (True, False, False), (10, 4, 4), (1, 1, 1), (0, 0, 0),
    ...                   np.eye(3))
    >>> file_rows(r, 0, 3), file_rows(r, 7, 10)
    ((7, 10), (0, 3))
    """
    check_slices_are_axial(reorientation)
    n = reorientation.shape[0]
    return (n - stop, n - start) if reorientation.flips[0] else (start, stop)
