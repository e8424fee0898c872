from __future__ import annotations

import math

import numpy as np
import pytest

from orgseg.core.metrics import dice, jaccard, label_metrics, overlap_metrics
from orgseg.errors import DataContractError


def block(shape=(8, 8, 8), z=(2, 4), y=(2, 4), x=(2, 4)):
    m = np.zeros(shape, bool)
    m[z[0] : z[1], y[0] : y[1], x[0] : x[1]] = True
    return m


def test_shift_along_z_uses_z_spacing():
    ref = block()
    pred = block(z=(3, 5))
    m = overlap_metrics(pred, ref, spacing_mm=(3.0, 1.0, 1.0))
    assert m.dice == pytest.approx(0.5)
    assert m.jaccard == pytest.approx(1 / 3)
    # half of each surface coincides, the other half is one z-step (3 mm) away
    assert m.msd_mm == pytest.approx(1.5)
    assert m.hd_mm == pytest.approx(3.0)
    assert m.hd95_mm == pytest.approx(3.0)
    assert m.vd_ml == pytest.approx(0.0)
    # the same masks with the spacing given in the wrong (x, y, z) order differ
    wrong = overlap_metrics(pred, ref, spacing_mm=(1.0, 1.0, 3.0))
    assert wrong.hd_mm == pytest.approx(1.0)


def test_growth_along_x_hand_computed():
    ref = block()
    pred = block(x=(2, 5))
    m = overlap_metrics(pred, ref, spacing_mm=(1.0, 1.0, 2.5))
    # pred: 12 surface voxels, 4 of them 2.5 mm from ref; ref: 8 voxels all on pred
    assert m.msd_mm == pytest.approx(4 * 2.5 / 20)
    assert m.hd_mm == pytest.approx(2.5)
    assert m.hd95_mm == pytest.approx(2.5)
    assert m.vd_ml == pytest.approx(4 * 2.5 / 1000)
    assert m.dice == pytest.approx(2 * 8 / 20)


def test_diagonal_distance_is_euclidean_in_mm():
    ref = np.zeros((5, 5, 5), bool)
    ref[1, 1, 1] = True
    pred = np.zeros_like(ref)
    pred[2, 1, 3] = True
    m = overlap_metrics(pred, ref, spacing_mm=(2.0, 1.0, 0.5))
    assert m.hd_mm == pytest.approx(math.hypot(2.0, 1.0))
    assert m.msd_mm == pytest.approx(math.hypot(2.0, 1.0))
    assert m.dice == 0.0


def test_empty_masks_are_defined():
    empty = np.zeros((4, 4, 4), bool)
    both = overlap_metrics(empty, empty, spacing_mm=(1, 1, 1))
    assert (both.dice, both.jaccard, both.hd_mm, both.vd_ml) == (1.0, 1.0, 0.0, 0.0)
    one = overlap_metrics(block((4, 4, 4), (0, 2), (0, 2), (0, 2)), empty, spacing_mm=(2, 1, 1))
    assert one.dice == 0.0 and math.isnan(one.hd_mm) and math.isnan(one.msd_mm)
    assert one.vd_ml == pytest.approx(8 * 2 / 1000)
    assert one.to_dict()["hd_mm"] is None


def test_dice_and_jaccard_relation():
    rng = np.random.default_rng(1)
    a = rng.random((10, 10, 10)) > 0.5
    b = rng.random((10, 10, 10)) > 0.5
    d, j = dice(a, b), jaccard(a, b)
    assert d == pytest.approx(2 * j / (1 + j))


def test_label_metrics_per_label_and_shape_check():
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[1:3, 1:3, 1:3] = 1
    ref[3:5, 3:5, 3:5] = 2
    pred = ref.copy()
    pred[3:5, 3:5, 3:5] = 0
    out = label_metrics(pred, ref, {"a": 1, "b": 2}, spacing_mm=(1, 1, 1))
    assert out["a"].dice == 1.0 and out["b"].dice == 0.0
    with pytest.raises(DataContractError, match="same|shape"):
        overlap_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)), spacing_mm=(1, 1, 1))
