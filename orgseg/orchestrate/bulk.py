"""``orgseg bulk`` on Slurm: the shards as one job array, then a finalize task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orgseg.config import StageResources, StorageConfig
from orgseg.io import read_bytes
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


def bulk_resources(profile: str | None) -> StageResources:
    """A profile's ``cluster.stages.bulk`` resources (else its default); defaults without."""
    if not profile:
        return StageResources(cpus_per_task=2, mem_gb=8, timeout_min=240)
    import yaml

    from orgseg.config import ClusterConfig
    from orgseg.configtools import load_dataclass

    data = yaml.safe_load(read_bytes(profile).decode()) or {}
    cluster = load_dataclass(ClusterConfig, data.get("cluster", {}), where=f"{profile}:cluster")
    return cluster.stages.get("bulk", cluster.default)


def submit_bulk(
    dest: str,
    *,
    model_url: str,
    model_options,
    options,
    resources: StageResources,
    jobs_dir: str,
    storage=None,
) -> list[str]:
    """The shards as one job array, then a finalize task after all of them (afterany);
    returns the two job ids."""
    folder = Path(jobs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    shards = submit_array(
        [
            BulkShardTask(dest, s, model_url, model_options, options, storage)
            for s in range(options.shards)
        ],
        resources,
        name="bulk",
        folder=str(folder / "bulk"),
    )
    array_id = str(shards[0].job_id).split("_")[0]
    small = StageResources(
        partition=resources.partition,
        account=resources.account,
        qos=resources.qos,
        cpus_per_task=1,
        mem_gb=2,
        timeout_min=30,
        container=resources.container,
    )
    final = submit_array(
        [BulkFinalizeTask(dest, storage)],
        small,
        name="bulk-finalize",
        folder=str(folder / "bulk"),
        dependency=f"afterany:{array_id}",
    )
    return [array_id, str(final[0].job_id).split("_")[0]]
