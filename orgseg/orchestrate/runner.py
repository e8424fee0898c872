"""``train-all``: every pending unit of the job table, through the run's executor (this
process, Slurm or AWS Batch: :mod:`orgseg.orchestrate.executors`); status and wait.

``submit`` sends every job that still has units to do as one Slurm job array (one task
per unit), chained with ``afterok`` dependencies, so the driver can exit at once. Units
already queued or running from an earlier submission are not submitted again: their job
ids become dependencies instead. Tasks are :class:`UnitTask`, submitit ``Checkpointable``:
on preemption or a time-out Slurm signals them, staged nnU-Net folders are synced back and
the task is requeued; training then resumes from nnU-Net's latest checkpoint.

What is done is read from the unit markers with one listing (:func:`committed`), never
from the scheduler; ``status`` adds the Slurm states of the last submission.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orgseg.config import RunConfig
from orgseg.errors import ConfigError, JobError
from orgseg.io.storage import configure_storage
from orgseg.orchestrate.executors import run_executor, slurm_job_of
from orgseg.orchestrate.sbatch import dependency_of, job_resources
from orgseg.orchestrate.slurm import ACTIVE_STATES, scheduler_states, start_task, submit_array
from orgseg.orchestrate.submission import Submission, load_submission, submit_pending
from orgseg.pipeline.jobs import JOBS, Job, UnitKey, check_config
from orgseg.pipeline.shards import with_shard_counts
from orgseg.pipeline.units import committed, done_units, pending, run_unit

log = logging.getLogger(__name__)

FAILED_STATES = frozenset({"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"})


class UnitTask:
    """One unit as a submitit task; checkpointable (see the module docstring)."""

    def __init__(self, config: RunConfig, job: str, unit: UnitKey) -> None:
        self.config = config
        self.job = job
        self.unit = unit

    def __call__(self) -> str:
        start_task()  # run_unit configures the run's storage
        out = run_unit(self.config, self.job, self.unit)
        log.info("%s", out)
        return out

    def checkpoint(self) -> Any:
        """Called by submitit when the task is preempted or times out."""
        from submitit.helpers import DelayedSubmission

        from orgseg.pipeline.staging import checkpoint_staged

        checkpoint_staged()
        return DelayedSubmission(UnitTask(self.config, self.job, self.unit))

    def __repr__(self) -> str:
        return f"UnitTask({self.job}, {list(self.unit)})"


def run_local(config: RunConfig) -> float:
    """Every pending unit in this process, in dependency order; returns seconds."""
    configure_storage(config.storage)
    config = with_shard_counts(config)
    t0 = time.perf_counter()
    todo = pending(config)
    n = sum(len(units) for _, units in todo)
    done = 0
    for job, units in todo:
        for unit in units:
            done += 1
            log.info("train-all: unit %d/%d: %s %s", done, n, job.name, list(unit))
            log.info("%s", run_unit(config, job.name, unit))
    return time.perf_counter() - t0


def train_all(config: RunConfig, *, executor: str | None = None) -> float:
    """Every pending unit of the run (skipping what is committed): in this process
    (``local``), or submitted to Slurm or AWS Batch (returns once submitted). Returns the
    wall time in s."""
    import dataclasses

    if executor is not None:
        config = dataclasses.replace(
            config, cluster=dataclasses.replace(config.cluster, executor=executor)
        )
    check_config(config)
    t0 = time.perf_counter()
    run_executor(config).submit_run(config)
    return time.perf_counter() - t0


def submit(config: RunConfig) -> Submission:
    """Submit every pending unit to Slurm as chained job arrays; returns what was sent
    (also written to ``<run_root>/jobs/submission.json``)."""
    if config.cluster.executor != "slurm":
        raise ConfigError(f"submit needs cluster.executor 'slurm', got {config.cluster.executor!r}")
    configure_storage(config.storage)
    config = with_shard_counts(config)  # every task is given the same shard counts
    folder = Path(config.cluster.jobs_dir)
    folder.mkdir(parents=True, exist_ok=True)

    def send(job: Job, units: Sequence[UnitKey], after: Sequence[str]) -> tuple[str, list[str]]:
        submitted = submit_array(
            [UnitTask(config, job.name, u) for u in units],
            job_resources(config, job),
            name=job.name,
            folder=str(folder / job.name),
            dependency=dependency_of(after),
            max_timeouts=config.cluster.max_timeouts,
        )
        job_id = slurm_job_of(submitted[0].job_id)
        log.info(
            "submitted %s: %d units as job %s%s", job.name, len(units), job_id,
            f" after {dependency_of(after)}" if after else "",
        )  # fmt: skip
        return job_id, [str(sj.job_id) for sj in submitted]

    return submit_pending(config, scheduler_states, ACTIVE_STATES, slurm_job_of, send)


@dataclass(frozen=True, slots=True)
class JobStatus:
    job: str
    units: int
    done: int
    scheduler: dict[str, int]  # Slurm state -> tasks (last submission)


def status(config: RunConfig) -> list[JobStatus]:
    """Each job's units done (one listing of the unit markers) and its tasks' Slurm states."""
    configure_storage(config.storage)
    sub = load_submission(config)
    tasks = {name: [t["task"] for t in ts] for name, ts in sub.jobs.items()}
    states = run_executor(config).states([t for ts in tasks.values() for t in ts])
    done = committed(config)
    out = []
    for job in JOBS:
        counts: dict[str, int] = {}
        for t in tasks.get(job.name, []):
            s = states.get(t, "UNKNOWN")
            counts[s] = counts.get(s, 0) + 1
        n_done = len(done_units(config, job.name, done))
        out.append(JobStatus(job.name, len(job.units(config)), n_done, counts))
    return out


def status_text(rows: Sequence[JobStatus]) -> str:
    lines = [f"{'job':<16} {'done':>9}  scheduler (last submission)"]
    for r in rows:
        sched = ", ".join(f"{k.lower()} {v}" for k, v in sorted(r.scheduler.items())) or "-"
        lines.append(f"{r.job:<16} {r.done:>4}/{r.units:<4}  {sched}")
    return "\n".join(lines)


def wait(
    config: RunConfig, *, timeout_s: float, poll_s: float = 3.0, max_poll_s: float = 60.0
) -> list[JobStatus]:
    """Poll until every unit is committed, or a task failed, or ``timeout_s`` passed; the
    interval grows by half each poll that sees no progress, up to ``max_poll_s``."""
    t0 = time.perf_counter()
    interval = poll_s
    last_done = -1
    backend = run_executor(config)
    while True:
        rows = status(config)
        if all(r.done == r.units for r in rows):
            return rows
        failed = {s for r in rows for s in r.scheduler if s in FAILED_STATES}
        active = any(s in backend.active_states for r in rows for s in r.scheduler)
        if failed and not active:
            raise JobError(f"jobs ended without finishing the run:\n{status_text(rows)}")
        if time.perf_counter() - t0 > timeout_s:
            raise JobError(f"run not finished after {timeout_s:.0f} s:\n{status_text(rows)}")
        done_now = sum(r.done for r in rows)
        interval = poll_s if done_now != last_done else min(interval * 1.5, max_poll_s)
        last_done = done_now
        time.sleep(interval)
