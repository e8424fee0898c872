"""Label fusion: many (possibly overlapping) organ masks -> one non-overlapping label map."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
from scipy import ndimage

from orgseg.core.crop import bounding_box
from orgseg.errors import DataContractError


def fusion_order(
    organs: Collection[str], *, manual: Collection[str], cv_dice: Mapping[str, float]
) -> list[str]:
    """Organs from weakest to strongest claim: pseudo before manual, then by CV Dice.

    >>> fusion_order(["a", "b", "c"], manual=["c"], cv_dice={"a": 0.9, "b": 0.7, "c": 0.1})
    ['b', 'a', 'c']
    """
    missing = [o for o in organs if o not in cv_dice and o not in manual]
    if missing:
        raise DataContractError(
            f"no strategy-1 cross-validation Dice for pseudo-labelled organ(s) {missing}; "
            "train strategy 1 for them first"
        )
    return sorted(organs, key=lambda o: (o in manual, cv_dice.get(o, 0.0), o))


def fuse_by_priority(
    masks: Mapping[str, np.ndarray],
    ids: Mapping[str, int],
    *,
    manual: Collection[str],
    cv_dice: Mapping[str, float],
    dtype: type = np.uint8,
) -> np.ndarray:
    """Merge organ masks into one label map; contested voxels go to the strongest claim.

    Where organs compete for a voxel, a manual mask beats a pseudo-label; otherwise the
    organ with the higher strategy-1 cross-validation Dice wins (the paper's rule). Ties
    in Dice are broken by organ name, so the result never depends on dict order.

    Parameters
    ----------
    masks : organ -> bool array, all of one shape.
    ids : organ -> label value in the output.
    manual : organs whose mask is a manual annotation for this case.
    cv_dice : organ -> strategy-1 cross-validation Dice.

    Examples
    --------
    >>> import numpy as np
    >>> liver = np.array([1, 1, 0], bool); kidney = np.array([0, 1, 1], bool)
    >>> fuse_by_priority({"liver": liver, "kidneys": kidney}, {"liver": 1, "kidneys": 2},
    ...                  manual=[], cv_dice={"liver": 0.95, "kidneys": 0.90}).tolist()
    [1, 1, 2]
    >>> fuse_by_priority({"liver": liver, "kidneys": kidney}, {"liver": 1, "kidneys": 2},
    ...                  manual=["kidneys"], cv_dice={"liver": 0.95}).tolist()
    [1, 2, 2]
    """
    if not masks:
        raise DataContractError("expected at least one organ mask to fuse, got none")
    shapes = {m.shape for m in masks.values()}
    if len(shapes) != 1:
        raise DataContractError(f"organ masks must share one shape, got {sorted(shapes)}")
    unknown = [o for o in masks if o not in ids]
    if unknown:
        raise DataContractError(f"no label id for organ(s) {unknown}; ids given for {sorted(ids)}")
    out: np.ndarray = np.zeros(shapes.pop(), dtype=dtype)
    for organ in fusion_order(list(masks), manual=manual, cv_dice=cv_dice):
        out[np.asarray(masks[organ], dtype=bool)] = ids[organ]
    return out


def grown(mask: np.ndarray, margin_mm: float, spacing_mm: Sequence[float]) -> np.ndarray:
    """``mask`` grown by ``margin_mm`` (Euclidean, in millimetres), worked out inside the
    mask's bounding box plus the margin only.

    >>> m = np.zeros((1, 1, 7), bool); m[0, 0, 3] = True
    >>> grown(m, 2.0, (1.0, 1.0, 1.0)).astype(int).tolist()
    [[[0, 1, 1, 1, 1, 1, 0]]]
    """
    mask = np.asarray(mask, dtype=bool)
    if margin_mm <= 0 or not mask.any():
        return mask.copy()
    box = bounding_box(mask, spacing_mm=spacing_mm, margin_mm=margin_mm)
    inside = ndimage.distance_transform_edt(~mask[box.slices], sampling=spacing_mm)
    out = np.zeros_like(mask)
    out[box.slices] = inside <= margin_mm
    return out


def fuse_with_ignore(
    masks: Mapping[str, np.ndarray],
    ids: Mapping[str, int],
    *,
    untrusted: Collection[str],
    manual: Collection[str],
    cv_dice: Mapping[str, float],
    ignore_id: int,
    margin_mm: float,
    spacing_mm: Sequence[float],
) -> np.ndarray:
    """The trusted masks fused by priority; then the untrusted ones (grown by
    ``margin_mm``) mark every voxel no trusted label claimed as ``ignore_id``, so a
    network trained on the map learns nothing there (nnU-Net's ignore label).

    >>> a = np.array([[[1, 1, 0, 0, 0]]], bool); b = np.array([[[0, 1, 1, 0, 0]]], bool)
    >>> fuse_with_ignore({"a": a, "b": b}, {"a": 1, "b": 2}, untrusted=["b"], manual=[],
    ...                  cv_dice={"a": 0.9, "b": 0.9}, ignore_id=3, margin_mm=1.0,
    ...                  spacing_mm=(1, 1, 1)).tolist()
    [[[1, 1, 3, 3, 0]]]
    """
    bad = [o for o in untrusted if o in manual]
    if bad:
        raise DataContractError(f"manual masks are always trusted, got {bad} as untrusted")
    if ignore_id <= max(ids.values(), default=0):
        raise DataContractError(
            f"the ignore label must be above every organ id (max {max(ids.values())}), "
            f"got {ignore_id}"
        )
    trusted = {o: m for o, m in masks.items() if o not in untrusted}
    if trusted:
        out = fuse_by_priority(trusted, ids, manual=manual, cv_dice=cv_dice)
    else:
        out = np.zeros(next(iter(masks.values())).shape, np.uint8)
    for organ in untrusted:
        region = grown(masks[organ], margin_mm, spacing_mm) & (out == 0)
        out[region] = ignore_id
    return out
