"""Label fusion: many (possibly overlapping) organ masks -> one non-overlapping label map."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

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
