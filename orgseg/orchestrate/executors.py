"""The executor seam: where a run's units and a bulk run's shards go (``local``, ``slurm``,
``awsbatch``). :func:`executor` is the one place that turns an executor's name into its
backend; the workloads (``train-all`` in :mod:`~orgseg.orchestrate.runner`, ``orgseg bulk``
in :mod:`~orgseg.orchestrate.bulk_workload`) are written once against :class:`Executor`.

A backend submits (or runs) a workload, reads its tasks' scheduler states and says whether
given jobs have ended; :func:`wait_jobs` is the one wait loop over them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from orgseg.config import EXECUTORS, BatchConfig, RunConfig
from orgseg.errors import ConfigError, JobError

if TYPE_CHECKING:
    from orgseg.orchestrate.bulk_workload import BulkJobs


class Executor(Protocol):
    name: str
    #: whether work is handed to a scheduler (False: it runs in this process)
    submits: bool
    #: scheduler states of a task still queued or running
    active_states: frozenset[str]

    def job_of(self, task_id: str) -> str:
        """The job (array) a task id belongs to."""

    def submit_run(self, config: RunConfig) -> None:
        """Every pending unit of the run (returns once submitted; local: once run)."""

    def submit_bulk(self, jobs: BulkJobs) -> list[str]:
        """A planned bulk run's shards and its finalize step; the job ids (none: done)."""

    def states(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Scheduler state of each task."""

    def ended(self, job_ids: Sequence[str]) -> tuple[bool, dict[str, str]]:
        """Whether every one of these jobs has ended (an array: all its tasks), and their
        states."""


class LocalExecutor:
    """Everything in this process, in order; nothing to wait for."""

    name = "local"
    submits = False
    active_states: frozenset[str] = frozenset()

    def job_of(self, task_id: str) -> str:
        return task_id

    def submit_run(self, config: RunConfig) -> None:
        from orgseg.orchestrate.runner import run_local

        run_local(config)

    def submit_bulk(self, jobs: BulkJobs) -> list[str]:
        from orgseg.inference import bulk

        for shard in range(jobs.options.shards):
            bulk.run_shard(jobs.dest, shard, model_url=jobs.model_url,
                           model_options=jobs.model_options, options=jobs.options)  # fmt: skip
        bulk.finalize(jobs.dest)
        return []

    def states(self, task_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def ended(self, job_ids: Sequence[str]) -> tuple[bool, dict[str, str]]:
        return True, {}


class SlurmExecutor:
    """Job arrays through submitit, chained with ``afterok`` (a run) or ``afterany`` (a
    bulk run's finalize)."""

    name = "slurm"
    submits = True

    def job_of(self, task_id: str) -> str:
        return slurm_job_of(task_id)

    def __init__(self, jobs_dir: str) -> None:
        from orgseg.orchestrate.slurm import ACTIVE_STATES

        self.jobs_dir = jobs_dir
        self.active_states = ACTIVE_STATES

    def submit_run(self, config: RunConfig) -> None:
        from orgseg.orchestrate.runner import submit

        submit(config)

    def submit_bulk(self, jobs: BulkJobs) -> list[str]:
        from orgseg.orchestrate.bulk_workload import submit_bulk

        return submit_bulk(
            jobs.dest,
            model_url=jobs.model_url,
            model_options=jobs.model_options,
            options=jobs.options,
            resources=jobs.resources,
            jobs_dir=self.jobs_dir,
            storage=jobs.storage,
            discovery=jobs.discovery,
        )

    def states(self, task_ids: Sequence[str]) -> dict[str, str]:
        from orgseg.orchestrate.slurm import scheduler_states

        return scheduler_states(list(task_ids))

    def ended(self, job_ids: Sequence[str]) -> tuple[bool, dict[str, str]]:
        states = self.states(job_ids)
        return bool(states) and not any(s in self.active_states for s in states.values()), states


class BatchExecutor:
    """AWS Batch array jobs (boto3); a bulk run's finalize waits for its shards itself."""

    name = "awsbatch"
    submits = True

    def job_of(self, task_id: str) -> str:
        return batch_job_of(task_id)

    def __init__(self, batch: BatchConfig, client: Any = None) -> None:
        from orgseg.orchestrate.awsbatch import ACTIVE_STATES

        self.batch = batch
        self._client = client
        self.active_states = ACTIVE_STATES

    @property
    def client(self) -> Any:
        if self._client is None:
            from orgseg.orchestrate.awsbatch import batch_client

            self._client = batch_client(self.batch)
        return self._client

    def submit_run(self, config: RunConfig) -> None:
        from orgseg.orchestrate.awsbatch import submit_batch

        submit_batch(config, self.client)

    def submit_bulk(self, jobs: BulkJobs) -> list[str]:
        from orgseg.orchestrate.awsbatch import submit_bulk_batch

        return submit_bulk_batch(
            jobs.dest,
            model_url=jobs.model_url,
            model_options=jobs.model_options,
            options=jobs.options,
            resources=jobs.resources,
            batch=self.batch,
            storage_endpoint=jobs.storage.endpoint_url,
            client=self.client,
        )

    def states(self, task_ids: Sequence[str]) -> dict[str, str]:
        from orgseg.orchestrate.awsbatch import batch_states

        return batch_states(self.client, task_ids) if task_ids else {}

    def ended(self, job_ids: Sequence[str]) -> tuple[bool, dict[str, str]]:
        from orgseg.orchestrate.awsbatch import jobs_ended

        return jobs_ended(self.client, job_ids)


def slurm_job_of(task_id: str) -> str:
    """``<array job id>_<index>`` -> the array job's id.

    >>> slurm_job_of("4711_3"), slurm_job_of("4712")
    ('4711', '4712')
    """
    return str(task_id).split("_")[0]


def batch_job_of(task_id: str) -> str:
    """``<array job id>:<index>`` -> the array job's id."""
    return str(task_id).split(":")[0]


def executor(
    name: str, *, jobs_dir: str = "orgseg-jobs", batch: BatchConfig | None = None,
    client: Any = None,
) -> Executor:  # fmt: skip
    """The backend called ``name`` (one of :data:`orgseg.config.EXECUTORS`)."""
    if name == "local":
        return LocalExecutor()
    if name == "slurm":
        return SlurmExecutor(jobs_dir)
    if name == "awsbatch":
        return BatchExecutor(batch or BatchConfig(), client)
    raise ConfigError(f"executor {name!r} is not available; use one of {list(EXECUTORS)}")


def run_executor(config: RunConfig) -> Executor:
    """The backend a run config names (``cluster.executor``)."""
    c = config.cluster
    return executor(c.executor, jobs_dir=c.jobs_dir, batch=c.batch)


def wait_jobs(
    backend: Executor, job_ids: Sequence[str], *, timeout_s: float, poll_s: float = 2.0
) -> dict[str, str]:
    """Until every one of these jobs has ended; their final states (JobError on a
    time-out)."""
    t0 = time.perf_counter()
    while True:
        ended, states = backend.ended(job_ids)
        if ended:
            return states
        if time.perf_counter() - t0 > timeout_s:
            raise JobError(f"jobs {list(job_ids)} not finished after {timeout_s:.0f} s: {states}")
        time.sleep(poll_s)
