from __future__ import annotations

import pytest

from orgseg.core.splits import hold_out, k_fold, stable_seed


@pytest.mark.parametrize("n", [2, 5, 9, 23, 100])
def test_hold_out_is_seeded_and_sized(n):
    ids = [f"case{i:03d}" for i in range(n)]
    test = hold_out(ids, fraction=0.1, seed=3)
    assert test == hold_out(list(reversed(ids)), fraction=0.1, seed=3)  # order-free
    assert len(test) == max(1, round(0.1 * n))
    assert set(test) <= set(ids)
    assert hold_out(ids, fraction=0.0, seed=3) == []


@pytest.mark.parametrize(("n", "k"), [(5, 5), (11, 5), (7, 3)])
def test_k_fold_validates_every_case_exactly_once(n, k):
    ids = [f"c{i}" for i in range(n)]
    folds = k_fold(ids, n_folds=k, seed=stable_seed("x"))
    vals = [v for f in folds for v in f["val"]]
    assert sorted(vals) == sorted(ids)
    for f in folds:
        assert not set(f["train"]) & set(f["val"])
        assert set(f["train"]) | set(f["val"]) == set(ids)
    assert folds == k_fold(ids, n_folds=k, seed=stable_seed("x"))
    assert folds != k_fold(ids, n_folds=k, seed=stable_seed("y")) or n <= k
