"""Turning source label maps into per-organ masks and organ masks into label maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from orgseg.errors import DataContractError


def masks_from_label_map(
    label_map: np.ndarray, mapping: Mapping[str, Sequence[int]]
) -> dict[str, np.ndarray]:
    """One boolean mask per organ from an integer label map.

    Parameters
    ----------
    label_map : ndarray of int, shape (Z, Y, X)
    mapping : organ name -> the label values that make up that organ.

    Returns
    -------
    dict of organ -> bool ndarray of the label map's shape.

    Examples
    --------
    >>> import numpy as np
    >>> lm = np.array([[[0, 2, 3, 5]]])
    >>> {k: v.astype(int).tolist() for k, v in masks_from_label_map(
    ...     lm, {"kidneys": [2, 3], "liver": [5]}).items()}
    {'kidneys': [[[0, 1, 1, 0]]], 'liver': [[[0, 0, 0, 1]]]}
    """
    if not np.issubdtype(label_map.dtype, np.integer):
        rounded = np.rint(label_map)
        if not np.array_equal(rounded, label_map):
            raise DataContractError(
                f"expected an integer label map, got non-integer values of dtype "
                f"{label_map.dtype}; save label maps as integers"
            )
        label_map = rounded.astype(np.int64)
    top = int(label_map.max(initial=0))
    clipped = np.clip(label_map, 0, top)  # negative values are background
    out = {}
    for organ, values in mapping.items():
        lut = np.zeros(max(top, *values) + 1, dtype=bool)
        lut[list(values)] = True
        out[organ] = lut[clipped]
    return out


def compose_label_map(
    masks: Mapping[str, np.ndarray], ids: Mapping[str, int], *, dtype: type = np.uint8
) -> np.ndarray:
    """Write binary organ masks into one label map; later organs overwrite earlier ones.

    Use :func:`orgseg.core.fusion.fuse_by_priority` when overlaps must be resolved by rule.
    """
    if not masks:
        raise DataContractError("expected at least one organ mask, got none")
    shape = next(iter(masks.values())).shape
    out: np.ndarray = np.zeros(shape, dtype=dtype)
    for organ, mask in masks.items():
        if mask.shape != shape:
            raise DataContractError(
                f"mask {organ!r} has shape {mask.shape}, expected {shape} like the others"
            )
        out[mask.astype(bool)] = ids[organ]
    return out
