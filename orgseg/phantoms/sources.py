"""Multi-source phantom sets: N sources that each label only some organs, their own way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from orgseg.errors import ConfigError
from orgseg.phantoms.anatomy import PHANTOM_ORGANS
from orgseg.sources.registry import Source


@dataclass(frozen=True, slots=True, kw_only=True)
class PhantomCase:
    case_id: str
    source: str
    seed: int
    paediatric: bool
    official_test: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PhantomSourcePlan:
    """What a multi-source phantom set holds: its sources (registry entries) and cases."""

    sources: tuple[Source, ...]
    cases: tuple[PhantomCase, ...]


def plan_sources(
    *,
    n_sources: int = 3,
    n_cases: int = 6,
    organs: Sequence[str] = PHANTOM_ORGANS,
    seed: int = 0,
    paediatric_fraction: float = 0.2,
) -> PhantomSourcePlan:
    """Plan a partially labelled multi-source set.

    Organ ``j`` is labelled by sources ``j mod N`` and ``(j + 1) mod N``, so every organ
    is labelled somewhere and no source labels everything (for N >= 3). Each source
    encodes organs with its own label values. The first source has an official test
    list (like TotalSegmentator's), holding its last case.

    >>> plan = plan_sources(n_sources=3, n_cases=2, organs=["liver", "spleen", "kidneys"])
    >>> [s.organs for s in plan.sources]
    [('kidneys', 'liver'), ('liver', 'spleen'), ('kidneys', 'spleen')]
    >>> len(plan.cases), plan.cases[1].official_test
    (6, True)
    """
    if n_sources < 1 or n_cases < 1:
        raise ConfigError(
            f"expected at least 1 source and 1 case per source, got "
            f"{n_sources} sources, {n_cases} cases"
        )
    organs = tuple(organs)
    unknown = set(organs) - set(PHANTOM_ORGANS)
    if unknown:
        raise ConfigError(
            f"phantoms cannot render {sorted(unknown)}; available organs are {list(PHANTOM_ORGANS)}"
        )
    rng = np.random.default_rng(seed)
    sources = []
    cases = []
    for i in range(n_sources):
        name = f"phantom_src{i + 1}"
        mine = [o for j, o in enumerate(organs) if j % n_sources == i or (j + 1) % n_sources == i]
        # each source picks its own label values (as public sets do)
        values = rng.permutation(np.arange(1, len(mine) + 1)) + 10 * i
        sources.append(
            Source(
                name=name,
                description=f"synthetic phantom source {i + 1} of {n_sources}",
                format="label_map",
                labels={o: (int(v),) for o, v in zip(mine, values)},
                official_test_list="test_cases.txt" if i == 0 else None,
            )
        )
        n_paed = int(round(paediatric_fraction * n_cases))
        paed = set(rng.choice(n_cases, size=n_paed, replace=False).tolist()) if n_paed else set()
        for k in range(n_cases):
            cases.append(
                PhantomCase(
                    case_id=f"{name}_{k:03d}",
                    source=name,
                    seed=int(seed * 100003 + i * 1009 + k),
                    paediatric=k in paed,
                    official_test=(i == 0 and k == n_cases - 1 and n_cases > 1),
                )
            )
    return PhantomSourcePlan(sources=tuple(sources), cases=tuple(cases))
