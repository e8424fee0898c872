"""Turning source label maps into per-organ masks and organ masks into label maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from orgseg.errors import DataContractError

#: float label maps are rounded when every value is this close to an integer
LABEL_ROUNDING_TOL = 1e-3


def integral_labels(label_map: np.ndarray, *, name: str = "label map") -> np.ndarray:
    """The label map as integers; float maps only when every value is within
    ``LABEL_ROUNDING_TOL`` of an integer (CT-ORG stores float32, VerSe float64).

    >>> integral_labels(np.array([[[0.0, 1.0002, 2.0]]])).tolist()
    [[[0, 1, 2]]]
    """
    if np.issubdtype(label_map.dtype, np.integer) or label_map.dtype == np.bool_:
        return label_map
    if not np.all(np.isfinite(label_map)):
        raise DataContractError(
            f"{name}: expected integer label values, found NaN or inf; the file is corrupt"
        )
    rounded = np.rint(label_map)
    err = float(np.max(np.abs(rounded - label_map), initial=0.0))
    if err > LABEL_ROUNDING_TOL:
        bad = label_map[np.abs(rounded - label_map) > LABEL_ROUNDING_TOL]
        raise DataContractError(
            f"{name}: expected integer label values, got non-integer values of dtype "
            f"{label_map.dtype} (e.g. {float(bad.flat[0]):.4f}, off an integer by up to "
            f"{err:.4f}; at most {LABEL_ROUNDING_TOL} is rounded); this looks like an "
            "interpolated or probability map: use the original integer label file"
        )
    return rounded.astype(np.int32)


def label_values(label_map: np.ndarray) -> tuple[int, ...]:
    """The non-zero values of an integer label map, sorted.

    >>> label_values(np.array([[[0, 3, 1, 3]]]))
    (1, 3)
    """
    return tuple(int(v) for v in np.unique(label_map) if v != 0)


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
    label_map = integral_labels(label_map)
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
