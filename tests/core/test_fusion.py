from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.fusion import fuse_by_priority, fuse_with_ignore, fusion_order, grown
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


def test_growing_a_mask_follows_millimetres_not_voxels():
    m = np.zeros((9, 9, 9), bool)
    m[4, 4, 4] = True
    g = grown(m, 4.0, (2.0, 1.0, 1.0))  # 2 voxels along z, 4 in-plane
    assert g[4, 4, 0] and g[4, 4, 8] and g[2, 4, 4] and g[6, 4, 4]
    assert not g[1, 4, 4] and not g[7, 4, 4]
    assert grown(m, 0.0, (1, 1, 1)).sum() == 1


def test_an_untrusted_mask_becomes_ignore_only_where_no_trusted_label_claims_it():
    masks = masks_3way()
    out = fuse_with_ignore(
        masks, IDS, untrusted=["b"], manual=["c"], cv_dice={"a": 0.9, "b": 0.99},
        ignore_id=4, margin_mm=0.0, spacing_mm=(1, 1, 1),
    )  # fmt: skip
    assert np.all(out[masks["a"]] == 1)  # b's higher Dice no longer wins
    assert np.all(out[masks["c"]] == 3)  # manual always wins
    only_b = masks["b"] & ~masks["a"] & ~masks["c"]
    assert only_b.any() and np.all(out[only_b] == 4)
    assert not np.any(out == 2)  # b is never a label
    # with a margin the ignore region grows into the background, never over labels
    wide = fuse_with_ignore(
        masks, IDS, untrusted=["b"], manual=["c"], cv_dice={"a": 0.9, "b": 0.99},
        ignore_id=4, margin_mm=1.0, spacing_mm=(1, 1, 1),
    )  # fmt: skip
    assert (wide == 4).sum() > (out == 4).sum()
    labelled = (out > 0) & (out < 4)
    assert np.array_equal(wide[labelled], out[labelled])


def test_the_ignore_fusion_refuses_untrusted_manual_masks_and_a_low_ignore_id():
    masks = masks_3way()
    with pytest.raises(DataContractError, match="always trusted"):
        fuse_with_ignore(masks, IDS, untrusted=["c"], manual=["c"], cv_dice={"a": 1, "b": 1},
                         ignore_id=4, margin_mm=0, spacing_mm=(1, 1, 1))  # fmt: skip
    with pytest.raises(DataContractError, match="above every organ id"):
        fuse_with_ignore(masks, IDS, untrusted=["b"], manual=[], cv_dice={"a": 1, "b": 1, "c": 1},
                         ignore_id=3, margin_mm=0, spacing_mm=(1, 1, 1))  # fmt: skip
