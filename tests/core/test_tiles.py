"""Whole-scan tiling helpers: nnU-Net's tile rule, padding, spans between grids."""

from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.resample import linear_taps, nearest_taps
from orgseg.core.tiles import (
    coarse_span,
    fine_span,
    pad_split,
    row_boxes,
    tiles_touching,
    union_box,
    window_steps,
)
from orgseg.errors import DataContractError


@pytest.mark.parametrize("patch", [24, 64, 128])
@pytest.mark.parametrize("step", [0.5, 0.33, 1.0])
def test_window_steps_follow_nnunets_rule(patch, step):
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    for size in range(patch, patch * 5, 7):
        ours = window_steps(size, patch, step)
        assert ours == compute_steps_for_sliding_window((size,), (patch,), step)[0]
        assert ours[0] == 0 and ours[-1] == size - patch  # the whole axis is covered
        assert all(b - a <= patch * step + 1 for a, b in zip(ours, ours[1:], strict=False))


def test_window_steps_reject_an_axis_shorter_than_the_patch():
    with pytest.raises(DataContractError, match="pad"):
        window_steps(20, 24)


@pytest.mark.parametrize(("size", "patch"), [(10, 24), (23, 24), (24, 24), (61, 64)])
def test_pad_split_matches_nnunet(size, patch):
    import torch
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    below, above = pad_split(size, patch)
    padded, slicer = pad_nd_image(torch.ones((1, size)), (patch,), "constant", {"value": 0}, True)
    assert padded.shape[1] == size + below + above
    assert slicer[1] == slice(below, below + size)


def test_row_boxes_and_their_union():
    mask = np.zeros((4, 10, 12), bool)
    mask[1, 2:5, 3:4] = True
    mask[2, 6:7, 8:11] = True
    boxes = row_boxes(mask)
    assert boxes[0].tolist() == [0, 0, 0, 0] and boxes[3].tolist() == [0, 0, 0, 0]
    assert boxes[1].tolist() == [2, 5, 3, 4]
    assert union_box(boxes, (0, 4), (0, 0), (10, 12)) == (2, 7, 3, 11)
    assert union_box(boxes, (0, 4), (3, 2), (10, 12)) == (0, 10, 1, 12)  # clipped
    assert union_box(boxes, (3, 4), (1, 1), (10, 12)) is None


@pytest.mark.parametrize(("n_coarse", "n_fine"), [(5, 17), (17, 5), (9, 9), (1, 4), (64, 300)])
def test_spans_cover_every_tap_and_invert_each_other(n_coarse, n_fine):
    i0, i1, _ = linear_taps(n_coarse, n_fine)
    near = nearest_taps(n_coarse, n_fine)
    for lo in range(0, n_fine, 3):
        hi = min(n_fine, lo + 4)
        a, b = coarse_span(lo, hi, n_coarse, n_fine)
        taps = np.concatenate([i0[lo:hi], i1[lo:hi], near[lo:hi]])
        assert a == taps.min() and b == taps.max() + 1
    for a in range(n_coarse):
        span = fine_span(a, a + 1, n_coarse, n_fine)
        readers = [f for f in range(n_fine) if a in (i0[f], i1[f], near[f])]
        if not readers:  # a coarser output skips some inputs
            assert span is None
        else:
            assert span == (min(readers), max(readers) + 1)


def test_tiles_touching_selects_by_overlap():
    assert tiles_touching([0, 23, 46], 64, 0, 1) == [0]
    assert tiles_touching([0, 23, 46], 64, 60, 70) == [0, 23, 46]
    assert tiles_touching([0, 32, 64], 64, 96, 128) == [64]
