"""Seeded, deterministic test/CV splits (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np


def stable_seed(*parts: object) -> int:
    """A seed derived from values, stable across Python runs (unlike ``hash``).

    >>> stable_seed("liver", 0) == stable_seed("liver", 0)
    True
    """
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def hold_out(case_ids: Sequence[str], *, fraction: float, seed: int) -> list[str]:
    """Seeded ``fraction`` of cases (at least one when there are two or more, and
    ``fraction`` > 0) as a held-out test set.

    >>> hold_out([f"c{i}" for i in range(20)], fraction=0.1, seed=1)
    ['c1', 'c18']
    """
    ids = sorted(case_ids)
    if fraction <= 0 or len(ids) < 2:
        return []
    n = max(1, int(round(fraction * len(ids))))
    rng = np.random.default_rng(seed)
    return sorted(ids[i] for i in rng.permutation(len(ids))[:n])


def k_fold(case_ids: Sequence[str], *, n_folds: int, seed: int) -> list[dict[str, list[str]]]:
    """Seeded k-fold split: every case is validated exactly once.

    >>> folds = k_fold(["a", "b", "c", "d", "e"], n_folds=5, seed=0)
    >>> sorted(v for f in folds for v in f["val"])
    ['a', 'b', 'c', 'd', 'e']
    """
    ids = sorted(case_ids)
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    folds = []
    for k in range(n_folds):
        val = sorted(order[k::n_folds])
        folds.append({"train": sorted(set(ids) - set(val)), "val": val})
    return folds


def shard_of(case_ids: Iterable[str], shard: int, n_shards: int) -> list[str]:
    """Shard ``shard`` of ``n_shards``: the sorted ids, round-robin.

    >>> shard_of(["c", "a", "d", "b"], 1, 2)
    ['b', 'd']
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"expected a shard in 0..{n_shards - 1}, got {shard}")
    return sorted(case_ids)[shard::n_shards]
