"""How many shards each case-level job has: fixed once per run, recorded in the run.

A case-level job (case preparation, pseudo-labels, fusion, test predictions) is an array
over shards of cases; shard ``s`` of ``n`` takes the sorted case ids ``[s::n]``. The count
is the config's ``shards: {job: N}`` where it names one, else one shard per
:data:`SHARDING`'s cases-per-shard of the cases the job works on, at most
:data:`MAX_SHARDS` (Slurm's default ``MaxArraySize`` is 1001). Counts the config leaves
open are worked out once, from the manifest or else the sources' listing, and recorded in
``<run_root>/jobs/shards.json``, so the submitter, every array task and ``orgseg status``
agree however the case count is later counted. A shard's unit key carries its count
(``(s, n)``), so a changed count gives new units that skip what the old ones committed.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from orgseg.errors import ConfigError
from orgseg.io import exists, read_bytes, write_bytes

if TYPE_CHECKING:
    from orgseg.config import RunConfig

log = logging.getLogger(__name__)

#: Slurm's default MaxArraySize is 1001: array indices 0..1000
MAX_SHARDS = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSize:
    """What a run's cost depends on: its case counts (from the manifest, else the sources)."""

    cases: int
    train: int
    test: int
    organs: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Sharding:
    #: cases one shard takes when the config names no count
    cases_per_shard: int
    #: the cases the job works on: every case found, the training or the test cases
    over: Literal["cases", "train", "test"]


#: the case-level jobs and their default shard sizes (the one description of sharding)
SHARDING: dict[str, Sharding] = {
    # ~15 s per case on CPU: a shard of 50 is ~12 min
    "cases": Sharding(cases_per_shard=50, over="cases"),
    # ~26 organs x ~20 s per case on a GPU: a shard of 20 is ~3 h, short enough for spot
    "pseudo-labels": Sharding(cases_per_shard=20, over="train"),
    # ~3 s per case on CPU
    "fusion": Sharding(cases_per_shard=100, over="train"),
    # both strategies, ~9 min per case on a GPU
    "test-predictions": Sharding(cases_per_shard=10, over="test"),
}

#: counts worked out in this process, by run root (the record never changes once written)
_RECORDED: dict[str, dict[str, int]] = {}


def shards_url(config: RunConfig) -> str:
    from orgseg.pipeline.layout import RunLayout

    return RunLayout.of(config).jobs_file("shards.json")


def check_shards(config: RunConfig) -> None:
    """The config's ``shards`` name case-level jobs, with counts 1..MAX_SHARDS."""
    unknown = sorted(set(config.shards) - set(SHARDING))
    bad = {k: v for k, v in config.shards.items() if not 1 <= int(v) <= MAX_SHARDS}
    if unknown or bad:
        raise ConfigError(
            f"shards: expected counts 1..{MAX_SHARDS} for the case-level jobs "
            f"{sorted(SHARDING)}; got unknown jobs {unknown}, bad counts {bad}"
        )


def run_size(config: RunConfig) -> tuple[RunSize, str]:
    """Case counts, and where they came from (the manifest, else a listing of the sources,
    with the test share estimated from the config)."""
    from orgseg.pipeline.layout import RunLayout

    organs = len(config.strategy1_organs)
    manifest_url = RunLayout.of(config).manifest()
    if exists(manifest_url):
        d = json.loads(read_bytes(manifest_url))
        n, test = len(d["cases"]), len(d["test"])
        return RunSize(cases=n, train=n - test, test=test, organs=organs), "the manifest"
    from orgseg.pipeline.cases import discover_cases, resolve_registry

    try:
        _, found = discover_cases(config, resolve_registry(config))
    except Exception as exc:  # noqa: BLE001 - a plan must print even without the data
        log.warning("cannot count the cases from the sources (%s)", exc)
        return RunSize(cases=0, train=0, test=0, organs=organs), "no sources found"
    n = sum(1 for c in found if not c.unlabelled and not c.problem)
    test = round(n * config.split.test_fraction)
    return RunSize(cases=n, train=n - test, test=test, organs=organs), "the sources (listing)"


def default_count(job_name: str, size: RunSize) -> int:
    """One shard per ``cases_per_shard`` of the job's cases, 1..MAX_SHARDS.

    >>> default_count("pseudo-labels", RunSize(cases=4082, train=3674, test=408, organs=26))
    184
    """
    s = SHARDING[job_name]
    n = getattr(size, s.over)
    return max(1, min(MAX_SHARDS, math.ceil(n / s.cases_per_shard)))


def shard_counts(config: RunConfig, *, record: bool = True) -> dict[str, int]:
    """Every case-level job's shard count: the config's, else the run's recorded one
    (worked out, and recorded unless ``record`` is false, on first use)."""
    missing = [j for j in SHARDING if j not in config.shards]
    if not missing:
        return {j: int(config.shards[j]) for j in SHARDING}
    recorded = _RECORDED.get(config.run_root)
    if recorded is None:
        url = shards_url(config)
        if exists(url):
            recorded = {str(k): int(v) for k, v in json.loads(read_bytes(url)).items()}
        else:
            size, counted_from = run_size(config)
            counts = {j: default_count(j, size) for j in SHARDING}
            if not record:  # a plan: nothing is written to the run root
                return {j: int(config.shards.get(j, counts[j])) for j in SHARDING}
            recorded = counts
            write_bytes(url, json.dumps(recorded, indent=2).encode())
            log.info("shard counts (from %s): %s, recorded in %s", counted_from, recorded, url)
        _RECORDED[config.run_root] = recorded
    return {j: int(config.shards.get(j, recorded.get(j, 1))) for j in SHARDING}


def shard_count(config: RunConfig, job_name: str) -> int:
    return shard_counts(config)[job_name]


def with_shard_counts(config: RunConfig, *, record: bool = True) -> RunConfig:
    """The config with every shard count written in (what array tasks are given)."""
    import dataclasses

    return dataclasses.replace(config, shards=shard_counts(config, record=record))
