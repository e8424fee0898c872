"""``orgseg bulk`` on Slurm: (discovery parts as an array, then their merge,) the shards
as one job array, then a finalize task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orgseg.config import StageResources, StorageConfig
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
    return str(jobs[0].job_id).split("_")[0]


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
