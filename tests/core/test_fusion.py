from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.fusion import fuse_by_priority, fusion_order
from orgseg.errors import DataContractError


def masks_3way():
    a = np.zeros((1, 4, 4), bool)
    b = np.zeros_like(a)
    c = np.zeros_like(a)
    a[0, :2, :3] = True  # overlaps b in [0, 1, 1:3]
    b[0, 1:3, 1:3] = True  # overlaps c in [0, 2, 2]
    c[0, 2:, 2:] = True
    return {"a": a, "b": b, "c": c}


IDS = {"a": 1, "b": 2, "c": 3}


def test_higher_cv_dice_wins_between_pseudo_labels():
    out = fuse_by_priority(masks_3way(), IDS, manual=(), cv_dice={"a": 0.9, "b": 0.8, "c": 0.95})
    assert out[0, 1, 1] == 1  # a (0.90) beats b (0.80)
    assert out[0, 2, 2] == 3  # c (0.95) beats b
    assert out[0, 2, 1] == 2  # b alone
    assert out[0, 3, 0] == 0
    # every claimed voxel gets exactly one label, unclaimed stay background
    union = np.any(np.stack(list(masks_3way().values())), axis=0)
    assert np.array_equal(out > 0, union)


def test_manual_beats_pseudo_whatever_the_dice():
    out = fuse_by_priority(masks_3way(), IDS, manual={"b"}, cv_dice={"a": 0.99, "c": 0.99})
    assert out[0, 1, 1] == 2 and out[0, 2, 2] == 2


def test_between_manual_masks_dice_still_decides():
    out = fuse_by_priority(
        masks_3way(), IDS, manual={"a", "b"}, cv_dice={"a": 0.5, "b": 0.7, "c": 0.9}
    )
    assert out[0, 1, 1] == 2


def test_ties_do_not_depend_on_dict_order():
    m = masks_3way()
    cv = {"a": 0.8, "b": 0.8, "c": 0.8}
    one = fuse_by_priority(m, IDS, manual=(), cv_dice=cv)
    other = fuse_by_priority(dict(reversed(list(m.items()))), IDS, manual=(), cv_dice=cv)
    np.testing.assert_array_equal(one, other)
    assert fusion_order(["b", "a"], manual=(), cv_dice=cv) == ["a", "b"]


def test_inputs_are_not_modified_and_errors_are_explained():
    m = masks_3way()
    before = {k: v.copy() for k, v in m.items()}
    fuse_by_priority(m, IDS, manual=(), cv_dice={"a": 0.1, "b": 0.2, "c": 0.3})
    for k in m:
        np.testing.assert_array_equal(m[k], before[k])
    with pytest.raises(DataContractError, match="cross-validation Dice"):
        fuse_by_priority(m, IDS, manual=(), cv_dice={"a": 0.1})
    with pytest.raises(DataContractError, match="share one shape"):
        fuse_by_priority(
            {"a": m["a"], "b": np.zeros((2, 2, 2), bool)}, IDS, manual=("a", "b"), cv_dice={}
        )
