"""Pseudo-label quality figures on hand-built masks."""

from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.qc import (
    FoldAgreement,
    MaskFigures,
    QCThresholds,
    agreement_without,
    collapse_note,
    collapsed_folds,
    flags,
    fold_agreement,
    fragmented_share,
    in_field_of_view,
    mask_figures,
    outside_share,
    robust_z,
    severity,
)


def blob(shape=(20, 20, 20), box=(slice(5, 15),) * 3) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[box] = True
    return m


def test_fragmentation_counts_what_lies_outside_the_main_components():
    m = blob()  # 1000 voxels
    assert fragmented_share(m) == 0.0
    m[0:2, 0:5, 0:5] = True  # a 50-voxel island
    assert fragmented_share(m) == pytest.approx(50 / 1050)
    # a paired organ keeps its two largest components
    assert fragmented_share(m, components=2) == 0.0
    assert fragmented_share(np.zeros((4, 4, 4), bool)) == 0.0
    diagonal = np.zeros((3, 3, 3), bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True  # touching corners: one component
    assert fragmented_share(diagonal) == 0.0


def test_outside_body_share_and_robust_z():
    m = blob()
    body = np.zeros_like(m)
    body[:, :, :13] = True  # the mask's x 13..14 lie outside: 2 of 10 columns
    assert outside_share(m, body) == pytest.approx(0.2)
    from orgseg.core.body import PackedMask

    # packed body bits give the same share; 21 columns pack into 3 bytes (3 pad bits)
    odd = np.zeros((20, 20, 21), bool)
    odd[5:15, 5:15, 5:21] = True
    odd_body = np.zeros_like(odd)
    odd_body[:, :, :13] = True
    assert outside_share(odd, PackedMask.pack(odd_body)) == outside_share(odd, odd_body)
    assert outside_share(odd, odd_body) == pytest.approx(8 / 16)
    ref = [1500.0, 1600.0, 1400.0, 1550.0, 1450.0]  # median 1500, MAD 50
    assert robust_z(1500.0, ref) == 0.0
    assert robust_z(1500.0 + 4 * 1.4826 * 50, ref) == pytest.approx(4.0)
    assert robust_z(10.0, [1.0, 2.0]) is None  # too few to judge
    assert robust_z(10.0, [5.0, 5.0, 5.0]) is None  # no spread


def test_fold_agreement_is_the_mean_pairwise_dice():
    a, b, c = blob(), blob(), blob(box=(slice(5, 15), slice(5, 15), slice(10, 20)))
    counts = [int(m.sum()) for m in (a, b, c)]
    overlaps = {(0, 1): int((a & b).sum()), (0, 2): int((a & c).sum()), (1, 2): int((b & c).sum())}
    assert fold_agreement(counts, overlaps) == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert fold_agreement([0, 0], {(0, 1): 0}) == 1.0


def test_flags_give_the_reasons_a_mask_is_not_trusted():
    good = blob()
    body = np.ones_like(good)
    ref = [1.0, 1.1, 0.9, 1.05, 0.95]  # ml: 1000 voxels of 1 mm^3 = 1 ml
    t = QCThresholds()
    figures = mask_figures(
        good, voxel_ml=1e-3, organ="liver", body=body, reference_ml=ref, agreement=0.95
    )
    assert figures.volume_ml == pytest.approx(1.0) and flags(figures, t) == []
    bad = good.copy()
    bad[0:3, 0:10, 0:10] = True  # a 300-voxel island
    body[0:3] = False
    figures = mask_figures(
        bad, voxel_ml=1e-3, organ="liver", body=body, reference_ml=ref, agreement=0.6
    )
    reasons = " | ".join(flags(figures, t))
    assert "folds disagree" in reasons and "implausible volume" in reasons
    assert "fragmented" in reasons and "outside the body" in reasons
    empty = mask_figures(
        np.zeros_like(good), voxel_ml=1e-3, organ="liver", body=None, reference_ml=[],
        agreement=None,
    )  # fmt: skip
    assert any("empty" in r for r in flags(empty, t))
    assert flags(empty, t, expected=False) == []


def test_an_organ_is_expected_only_where_the_scan_reaches_past_both_its_ends():
    from orgseg.catalog import ORGANS

    def expected(organ, found):
        return in_field_of_view(ORGANS[organ].levels, [ORGANS[o].levels for o in found])

    # chest-abdomen-pelvis: lungs above, bladder below
    assert expected("liver", ["lungs", "urinary_bladder"])
    assert expected("kidneys", ["lungs", "urinary_bladder"])
    # a chest scan reaching the liver dome: the kidneys may lie below it
    assert not expected("kidneys", ["lungs", "heart", "liver"])
    # a head scan says nothing about the abdomen, nor a pelvis scan about the brain
    assert not expected("liver", ["brain", "eyeballs"])
    assert not expected("brain", ["urinary_bladder", "hips"])
    assert not expected("liver", [])


def test_severity_ranks_masks_and_passes_one_exactly_where_a_flag_is_raised():
    t = QCThresholds()

    def figs(**kw):
        base = dict(
            volume_ml=1500.0,
            fold_agreement=0.97,
            volume_z=0.5,
            fragmented_share=0.0,
            outside_body_share=0.0,
        )
        return MaskFigures(**{**base, **kw})

    good, bad = figs(), figs(fold_agreement=0.5)
    worse = figs(fold_agreement=0.5, outside_body_share=0.5)
    assert severity(good, t) < 1.0 and not flags(good, t)
    assert 1.0 < severity(bad, t) < severity(worse, t)
    assert flags(bad, t)
    empty = figs(volume_ml=0.0, volume_z=None)
    assert severity(empty, t, expected=True) > 1.0 > severity(empty, t, expected=False)


def test_a_fold_that_predicts_nothing_where_the_others_find_the_organ_is_collapsed():
    # three folds; fold 2 vanishes in 1 of the 4 cases the others find the organ in
    cases = [(900, 1000, 0), (1200, 1100, 900), (800, 850, 700), (0, 0, 0), (500, 520, 480)]
    assert collapsed_folds(cases) == {}
    cases[1:3] = [(1200, 1100, 30), (800, 850, 10)]  # now in 3 of 4
    assert collapsed_folds(cases) == {2: (3, 4)}
    # a fold that is merely smaller (20% of the others) did not collapse
    assert collapsed_folds([(1000, 200)] * 5) == {}
    # too few comparable cases to call it
    assert collapsed_folds([(900, 0), (1000, 0)]) == {}
    # two folds: the empty one is the collapsed one (the other has nothing to compare to)
    assert collapsed_folds([(900, 0)] * 4) == {1: (4, 4)}
    assert collapsed_folds([]) == {}


def test_fold_agreement_keeps_each_folds_voxel_count():
    acc = FoldAgreement()
    acc.add([np.array([[1, 1], [0, 2]]), np.array([[1, 0], [0, 0]])])
    acc.add([np.array([[1, 0]]), np.array([[1, 1]])])
    assert acc.per_fold_voxels() == {1: (3, 3), 2: (1, 0)}


def test_the_agreement_without_a_collapsed_fold_is_that_of_the_others():
    voxels, overlaps = [100, 0, 80], [0, 60, 0]  # pairs (0, 1), (0, 2), (1, 2)
    assert agreement_without(0.4, voxels, overlaps, excluded=[1]) == pytest.approx(120 / 180)
    assert agreement_without(0.4, voxels, overlaps, excluded=[]) == 0.4  # nothing left out
    assert agreement_without(0.4, voxels, None, excluded=[1]) == 0.4  # an older record
    assert agreement_without(0.4, voxels, overlaps, excluded=[1, 2]) is None


def test_a_collapse_note_joins_the_disagreement_reason_only():
    note = collapse_note({1: (5, 6)})
    assert note == "fold 1 predicts nothing in 5/6 cases"
    t = QCThresholds()
    figures = MaskFigures(
        volume_ml=100.0, fold_agreement=0.0, volume_z=None, fragmented_share=0.09,
        outside_body_share=None,
    )  # fmt: skip
    assert flags(figures, t, collapse_note=note) == [
        "folds disagree (mean pairwise Dice 0.000; fold 1 predicts nothing in 5/6 cases)",
        "fragmented (9.0% outside the main component)",
    ]
    assert flags(figures, t)[0] == "folds disagree (mean pairwise Dice 0.000)"
