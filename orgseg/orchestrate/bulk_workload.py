"""``orgseg bulk`` as a workload: plan the archive, then run its shards here, as a Slurm
job array (discovery parts as an array and their merge first, when asked) or as an AWS
Batch array job, each followed by a finalize task once every shard has ended.
:func:`run_bulk` is what the CLI calls; the executor is chosen here and nowhere else."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orgseg.config import ClusterConfig, StageResources, StorageConfig
from orgseg.errors import ConfigError
from orgseg.orchestrate.slurm import start_task, submit_array


class BulkShardTask:
    """One shard of ``orgseg bulk`` as a Slurm array task. Preempted or timed out, it is
    requeued as is: the shard resumes at its first uncommitted case."""

    def __init__(
        self, dest: str, shard: int, model_url: str, model_options, options, storage=None
    ) -> None:
        self.storage = storage or StorageConfig()
        self.dest = dest
        self.shard = shard
        self.model_url = model_url
        self.model_options = model_options
        self.options = options

    def __call__(self) -> dict:
        from orgseg.inference.bulk import run_shard

        start_task(self.storage)
        return run_shard(
            self.dest,
            self.shard,
            model_url=self.model_url,
            model_options=self.model_options,
            options=self.options,
        )

    def checkpoint(self) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


class BulkFinalizeTask:
    """Rebuilds manifest.csv, summary.json and organs.csv once the shards have ended."""

    def __init__(self, dest: str, storage=None) -> None:
        self.dest = dest
        self.storage = storage or StorageConfig()

    def __call__(self) -> dict:
        from orgseg.inference.bulk import finalize

        start_task(self.storage)
        return finalize(self.dest)


class BulkDiscoveryTask:
    """One part of the archive's discovery (its share of the top-level prefixes)."""

    def __init__(self, source: str, dest: str, part: int, parts: int, storage=None) -> None:
        self.source, self.dest, self.part, self.parts = source, dest, part, parts
        self.storage = storage or StorageConfig()

    def __call__(self) -> int:
        from orgseg.inference.bulk_state import write_discovery_part

        start_task(self.storage)
        return write_discovery_part(self.dest, self.source, self.part, self.parts)


class BulkMergeTask:
    """The discovery parts merged into the plan the shards read."""

    def __init__(self, dest: str, parts: int, storage=None) -> None:
        self.dest, self.parts = dest, parts
        self.storage = storage or StorageConfig()

    def __call__(self) -> int:
        from orgseg.inference.bulk_state import merge_discovery

        start_task(self.storage)
        return len(merge_discovery(self.dest, self.parts))


def _small(resources: StageResources) -> StageResources:
    return StageResources(
        partition=resources.partition,
        account=resources.account,
        qos=resources.qos,
        cpus_per_task=1,
        mem_gb=2,
        timeout_min=30,
        container=resources.container,
    )


def _array_id(jobs: list) -> str:
    from orgseg.orchestrate.executors import slurm_job_of

    return slurm_job_of(jobs[0].job_id)


def submit_bulk(
    dest: str,
    *,
    model_url: str,
    model_options,
    options,
    resources: StageResources,
    jobs_dir: str,
    storage=None,
    discovery: tuple[str, int] | None = None,
) -> list[str]:
    """The shards as one job array, then a finalize task after all of them (afterany);
    with ``discovery`` (source URL, parts), first the discovery parts as an array and
    their merge (the shards start after it). Returns the job ids in order."""
    folder = str(Path(jobs_dir) / "bulk")
    Path(folder).mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    after = None
    if discovery is not None:
        source, parts = discovery
        found = submit_array(
            [BulkDiscoveryTask(source, dest, k, parts, storage) for k in range(parts)],
            _small(resources),
            name="bulk-discovery",
            folder=folder,
        )
        merged = submit_array(
            [BulkMergeTask(dest, parts, storage)],
            _small(resources),
            name="bulk-merge",
            folder=folder,
            dependency=f"afterok:{_array_id(found)}",
        )
        ids += [_array_id(found), _array_id(merged)]
        after = f"afterok:{ids[-1]}"
    shards = submit_array(
        [
            BulkShardTask(dest, s, model_url, model_options, options, storage)
            for s in range(options.shards)
        ],
        resources,
        name="bulk",
        folder=folder,
        dependency=after,
    )
    final = submit_array(
        [BulkFinalizeTask(dest, storage)],
        _small(resources),
        name="bulk-finalize",
        folder=folder,
        dependency=f"afterany:{_array_id(shards)}",
    )
    return [*ids, _array_id(shards), _array_id(final)]


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkJobs:
    """A planned bulk run as a backend submits it: its shards, then its finalize step."""

    dest: str
    model_url: str
    model_options: Any
    options: Any  # BulkOptions (its shards)
    resources: StageResources
    storage: StorageConfig
    #: (source URL, parts): discover the archive as an array of parts first (Slurm)
    discovery: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkRequest:
    """One ``orgseg bulk`` invocation, parsed: where from, where to, with what model and
    options, on which executor (the flags overruling the cluster profile)."""

    source: str | None  # archive folder or prefix (None: ``index`` says what to do)
    dest: str
    model_url: str  # resolved (a set's installed folder); unused by a dry run
    model_options: Any  # ModelOptions
    options: Any  # BulkOptions
    index: str | None = None
    discovery_parts: int = 1
    profile: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    executor: str | None = None  # None: the profile's
    jobs_dir: str | None = None  # None: the profile's
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    dry_run: bool = False
    wait: bool = False
    wait_timeout_s: float = 24 * 3600.0


def run_bulk(
    request: BulkRequest, *, progress: Callable[[int, int], None] | None = None
) -> tuple[list[str], int]:
    """Plan the archive, then run (or submit) its shards; returns the lines to print and
    the exit status (1 when a case failed)."""
    from orgseg.inference import bulk
    from orgseg.inference.archive import cases_from_index
    from orgseg.inference.bulk_state import merge_discovery, write_discovery_part
    from orgseg.orchestrate.executors import executor as executor_named
    from orgseg.orchestrate.executors import wait_jobs

    r = request
    executor = r.executor or r.profile.executor
    resources = r.profile.resources("bulk")
    price = resources.price_per_task_hour
    parts = max(1, r.discovery_parts)
    on_slurm_parts = executor == "slurm" and parts > 1 and not r.index
    if r.source is None and r.index is None:
        raise ConfigError("give the archive (-i) or its series index (--index)")
    cases = None
    if r.index:
        cases = cases_from_index(r.index)
    elif not on_slurm_parts:
        assert r.source is not None
        if parts > 1:  # the parts the array tasks would run, one after another here
            for k in range(parts):
                write_discovery_part(r.dest, r.source, k, parts)
            cases = merge_discovery(r.dest, parts)
        else:
            cases = bulk.discover_archive(r.source, progress=progress)
    if r.dry_run:
        if cases is None:
            raise ConfigError(
                "--dry-run with --discovery-parts on slurm: run the dry run locally "
                "(--executor local) or give --index"
            )
        return [bulk.plan_text(cases, r.dest, r.options.shards, price_per_task_hour=price)], 0
    if cases is not None:
        bulk.write_plan(r.dest, cases)  # the manifest exists before any work starts
    backend = executor_named(
        executor, jobs_dir=r.jobs_dir or r.profile.jobs_dir, batch=r.profile.batch
    )
    jobs = backend.submit_bulk(
        BulkJobs(
            dest=r.dest,
            model_url=r.model_url,
            model_options=r.model_options,
            options=r.options,
            resources=resources,
            storage=r.storage,
            discovery=(r.source, parts) if on_slurm_parts and r.source else None,
        )
    )
    lines: list[str] = []
    if jobs:
        first = f"{parts} discovery part(s), their merge, " if on_slurm_parts else ""
        lines.append(
            f"submitted {first}{r.options.shards} shard task(s) and a finalize job on "
            f"{backend.name}: {' '.join(jobs)}"
        )
        if not r.wait:
            return lines, 0
        states = wait_jobs(backend, jobs, timeout_s=r.wait_timeout_s, poll_s=5.0)
        lines.append(f"jobs ended: {states}")
    summary = bulk.summary_lines(r.dest, price_per_task_hour=price)
    return lines + summary, 1 if any(line.startswith("FAILED") for line in summary) else 0
