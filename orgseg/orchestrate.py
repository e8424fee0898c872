"""Running a training run's jobs: in this process, or as Slurm job arrays through submitit.

This is the only module that imports submitit. The jobs and their units come from
:mod:`orgseg.pipeline.units`; what is done is read from storage markers, never assumed.

``submit`` sends every job that still has units to do as one Slurm job array (one task
per unit), chained with ``afterok`` dependencies, so the driver can exit at once. Units
already queued or running from an earlier submission are not submitted again: their job
ids become dependencies instead. Tasks are :class:`UnitTask`, submitit ``Checkpointable``:
on preemption or a time-out Slurm signals them, staged nnU-Net folders are synced back and
the task is requeued; training then resumes from nnU-Net's latest checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orgseg.config import RunConfig, StageResources, StorageConfig
from orgseg.errors import ConfigError, JobError
from orgseg.io import exists, join_url, read_bytes, write_bytes
from orgseg.io.storage import configure_storage
from orgseg.pipeline.units import JobSpec, UnitKey, all_jobs, pending_jobs, run_unit, unit_done

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
    }
)
ACTIVE_STATES = frozenset(
    {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}
)


# --- pure: parameters, sbatch text, plans ---------------------------------------------


def slurm_parameters(
    resources: StageResources, *, name: str, dependency: str | None = None
) -> dict[str, Any]:
    """submitit ``SlurmExecutor.update_parameters`` keywords for one job.

    >>> p = slurm_parameters(StageResources(gpus_per_node=1, mem_gb=30), name="s1")
    >>> p["job_name"], p["gpus_per_node"], p["mem"], p["time"]
    ('orgseg-s1', 1, '30GB', 60)
    """
    params: dict[str, Any] = {
        "job_name": f"orgseg-{name}",
        "time": int(resources.timeout_min),
        "cpus_per_task": int(resources.cpus_per_task),
        "mem": f"{math.ceil(resources.mem_gb)}GB",
        "array_parallelism": int(resources.array_parallelism),
        "signal_delay_s": int(resources.signal_delay_s),
        "ntasks_per_node": 1,
    }
    if resources.gpus_per_node:
        params["gpus_per_node"] = int(resources.gpus_per_node)
    for key in ("partition", "account", "qos"):
        value = getattr(resources, key)
        if value:
            params[key] = value
    if dependency:
        params["dependency"] = dependency
        params["additional_parameters"] = {"kill-on-invalid-dep": "yes"}
    return params


def python_command(resources: StageResources) -> str:
    """How a task starts python: inside its container when one is configured."""
    if resources.container:
        return f"{resources.container} python3"
    return shlex.quote(sys.executable)


def render_sbatch(
    job: JobSpec,
    resources: StageResources,
    *,
    folder: str,
    dependency: str | None = None,
    python: str | None = None,
) -> str:
    """The sbatch script Slurm receives for ``job`` (submitit's own rendering)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = slurm_parameters(resources, name=job.name, dependency=dependency)
    python = python or python_command(resources)
    command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(folder)])
    return _make_sbatch_string(
        command=command,
        folder=folder,
        map_count=len(job.units) if len(job.units) > 1 else None,
        **params,
    )


def site_templates(config: RunConfig) -> dict[str, str]:
    """The sbatch script of every job of ``config``'s run, as :func:`submit` renders it;
    ids of the jobs each waits for are shown as ``JOBID-<job>`` placeholders."""
    out = {}
    for job in all_jobs(config):
        out[job.name] = render_sbatch(
            job,
            config.cluster.resources(job.name),
            folder=str(Path(config.cluster.jobs_dir) / job.name),
            dependency=dependency_of([f"JOBID-{a}" for a in job.after]),
        )
    return out


def dependency_of(job_ids: Sequence[str]) -> str | None:
    """``afterok`` on every given job (whole arrays by their id).

    >>> dependency_of(["12", "15"]), dependency_of([])
    ('afterok:12:15', None)
    """
    ids = sorted(set(job_ids), key=lambda j: (len(j), j))
    return "afterok:" + ":".join(ids) if ids else None


def gpu_hours(config: RunConfig, job: JobSpec) -> float:
    """Estimated GPU hours of a job's units: training units from ``cluster.epoch_seconds``
    (per 250-iteration epoch); other GPU jobs 0.1 h per unit."""
    if not job.gpu:
        return 0.0
    if job.name in ("strategy1-train", "strategy2-train"):
        t = (
            config.strategy1_training
            if job.name == "strategy1-train"
            else config.strategy2_training
        )
        per_unit = t.epochs * config.cluster.epoch_seconds * t.iterations_per_epoch / 250.0
        return len(job.units) * per_unit / 3600.0
    return 0.1 * len(job.units)


def plan_text(config: RunConfig, jobs: Sequence[JobSpec]) -> str:
    """The job plan ``--dry-run`` prints: units, arrays, dependencies, resources, cost."""
    lines = [
        f"run root: {config.run_root}   executor: {config.cluster.executor}   "
        f"jobs folder: {config.cluster.jobs_dir}",
        "",
        f"{'job':<16} {'units':>6}  {'after':<18} {'resources':<46} {'GPU h':>9}",
    ]
    total = 0.0
    for job in jobs:
        r = config.cluster.resources(job.name)
        gpus = r.gpus_per_node if job.gpu else 0
        res = (
            f"{r.partition or '(default)'} {gpus} GPU {r.cpus_per_task} CPU "
            f"{r.mem_gb:g} GB {r.timeout_min} min"
        )
        if r.container:
            res += " [container]"
        hours = gpu_hours(config, job)
        total += hours
        kind = f"array x{len(job.units)}" if len(job.units) > 1 else "1 task"
        lines.append(
            f"{job.name:<16} {len(job.units):>6}  {','.join(job.after) or '-':<18} "
            f"{res:<46} {hours:>9.1f}   ({kind})"
        )
    lines += [
        "",
        f"estimated GPU hours: {total:.1f} (cluster.epoch_seconds = "
        f"{config.cluster.epoch_seconds:g} s per 250-iteration epoch)",
    ]
    if not jobs:
        lines.append("nothing to do: every unit is committed")
    return "\n".join(lines)


# --- running ------------------------------------------------------------------------


_FORK_HOOK = False


def _default_signals_in_children() -> None:
    """Forked workers (nnU-Net's preprocessing and data-loader pools) must not inherit
    submitit's handlers: a worker that ignores SIGTERM never ends and hangs its pool."""
    global _FORK_HOOK
    if _FORK_HOOK:
        return

    def reset() -> None:
        for sig in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR2):
            # ValueError: not the main thread, nothing to undo there
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, signal.SIG_DFL)

    os.register_at_fork(after_in_child=reset)
    _FORK_HOOK = True


def _task_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


def _start_task(storage: StorageConfig | None = None) -> None:
    """What every Slurm task does first: logging, signals for forked workers, storage."""
    _task_logging()
    _default_signals_in_children()
    if storage is not None:
        configure_storage(storage)


class UnitTask:
    """One unit as a submitit task; checkpointable (see the module docstring)."""

    def __init__(self, config: RunConfig, job: str, unit: UnitKey) -> None:
        self.config = config
        self.job = job
        self.unit = unit

    def __call__(self) -> str:
        _start_task()  # run_unit configures the run's storage
        out = run_unit(self.config, self.job, self.unit)
        log.info("%s", out)
        return out

    def checkpoint(self) -> Any:
        """Called by submitit when the task is preempted or times out."""
        from submitit.helpers import DelayedSubmission

        from orgseg.pipeline.units import checkpoint_staged

        checkpoint_staged()
        return DelayedSubmission(UnitTask(self.config, self.job, self.unit))

    def __repr__(self) -> str:
        return f"UnitTask({self.job}, {list(self.unit)})"


def run_local(config: RunConfig) -> float:
    """Every pending unit in this process, in dependency order; returns seconds."""
    configure_storage(config.storage)
    t0 = time.perf_counter()
    jobs = pending_jobs(config)
    n = sum(len(j.units) for j in jobs)
    done = 0
    for job in jobs:
        for unit in job.units:
            done += 1
            log.info("train-all: unit %d/%d: %s %s", done, n, job.name, list(unit))
            log.info("%s", run_unit(config, job.name, unit))
    return time.perf_counter() - t0


@dataclass
class Submission:
    """What the last ``submit`` sent: job name -> Slurm job ids and their units."""

    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"jobs": self.jobs}, indent=1).encode()


def _submission_url(config: RunConfig) -> str:
    return join_url(config.run_root, "jobs", "submission.json")


def load_submission(config: RunConfig) -> Submission:
    url = _submission_url(config)
    if not exists(url):
        return Submission()
    return Submission(jobs=json.loads(read_bytes(url))["jobs"])


def _slurm_output(command: list[str], what: str) -> str | None:
    """Standard output of a Slurm query, or None (logged) when Slurm cannot answer."""
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot ask Slurm for %s (%s)", what, exc)
        return None


def scheduler_states(task_ids: Sequence[str]) -> dict[str, str]:
    """Slurm state of each task id (``123_4`` or ``123``), from sacct; {} without Slurm."""
    if not task_ids:
        return {}
    arrays = sorted({t.split("_")[0] for t in task_ids})
    out = _slurm_output(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(arrays)], "job states"
    )
    if out is None:
        return {}
    states: dict[str, str] = {}
    for line in out.splitlines():
        if "|" not in line:
            continue
        jid, state = (v.strip() for v in line.split("|", 1))
        state = state.split()[0] if state else "UNKNOWN"
        for task in expand_array_id(jid):
            states[task] = state
    # sacct leaves out jobs still waiting on a dependency: squeue has every queued task
    queued = _slurm_output(["squeue", "-h", "-r", "-o", "%i|%T"], "queued jobs") or ""
    wanted = set(arrays)
    for line in queued.splitlines():
        if "|" in line:
            jid, state = (v.strip() for v in line.split("|", 1))
            if jid.split("_")[0] not in wanted:
                continue
            if state == "COMPLETING" and states.get(jid) in TERMINAL_STATES:
                continue  # already ended (a killed task is still being cleaned up)
            states[jid] = state
    return states


def expand_array_id(job_id: str) -> list[str]:
    """Slurm's compact id of pending array tasks, expanded.

    >>> expand_array_id("4_[0-3%4]"), expand_array_id("7_[1,3-4]"), expand_array_id("9_2")
    (['4_0', '4_1', '4_2', '4_3'], ['7_1', '7_3', '7_4'], ['9_2'])
    """
    if "_[" not in job_id:
        return [job_id]
    base, spec = job_id.split("_[", 1)
    spec = spec.rstrip("]").split("%", 1)[0]
    tasks = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            tasks.extend(f"{base}_{i}" for i in range(int(a), int(b) + 1))
        elif part:
            tasks.append(f"{base}_{part}")
    return tasks


def submit_array(
    tasks: Sequence[Any],
    resources: StageResources,
    *,
    name: str,
    folder: str,
    dependency: str | None = None,
    max_timeouts: int = 3,
) -> list[Any]:
    """Submit callables as one Slurm job array (one task each); returns submitit jobs."""
    import submitit

    executor = submitit.SlurmExecutor(
        folder=folder, max_num_timeout=max_timeouts, python=python_command(resources)
    )
    executor.update_parameters(**slurm_parameters(resources, name=name, dependency=dependency))
    with executor.batch():
        jobs = [executor.submit(t) for t in tasks]
    return jobs


def submit(config: RunConfig) -> Submission:
    """Submit every pending unit to Slurm as chained job arrays; returns what was sent
    (also written to ``<run_root>/jobs/submission.json``)."""
    if config.cluster.executor != "slurm":
        raise ConfigError(f"submit needs cluster.executor 'slurm', got {config.cluster.executor!r}")
    configure_storage(config.storage)
    previous = load_submission(config)
    known = [t["task"] for tasks in previous.jobs.values() for t in tasks]
    states = scheduler_states(known)
    folder = Path(config.cluster.jobs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    sent = Submission()
    job_ids: dict[str, list[str]] = {}
    for job in pending_jobs(config):
        active = {}
        for t in previous.jobs.get(job.name, []):
            if states.get(t["task"]) in ACTIVE_STATES:
                active[tuple(t["unit"])] = t
        todo = [u for u in job.units if tuple(u) not in active]
        deps = [jid for name in job.after for jid in job_ids.get(name, [])]
        ids = sorted({t["task"].split("_")[0] for t in active.values()})
        sent.jobs[job.name] = list(active.values())
        if todo:
            r = config.cluster.resources(job.name)
            if not job.gpu:
                r = _without_gpus(r)
            submitted = submit_array(
                [UnitTask(config, job.name, u) for u in todo],
                r,
                name=job.name,
                folder=str(folder / job.name),
                dependency=dependency_of(deps),
                max_timeouts=config.cluster.max_timeouts,
            )
            for unit, sj in zip(todo, submitted, strict=True):
                sent.jobs[job.name].append({"unit": list(unit), "task": str(sj.job_id)})
            ids.append(str(submitted[0].job_id).split("_")[0])
            log.info(
                "submitted %s: %d units as job %s%s",
                job.name,
                len(todo),
                ids[-1],
                f" after {dependency_of(deps)}" if deps else "",
            )
        job_ids[job.name] = ids
    write_bytes(_submission_url(config), sent.to_json())
    return sent


def _without_gpus(r: StageResources) -> StageResources:
    import dataclasses

    return dataclasses.replace(r, gpus_per_node=0)


@dataclass(frozen=True, slots=True)
class JobStatus:
    job: str
    units: int
    done: int
    scheduler: dict[str, int]  # Slurm state -> tasks (last submission)


def status(config: RunConfig) -> list[JobStatus]:
    """Each job's units done (storage markers) and its tasks' Slurm states."""
    configure_storage(config.storage)
    sub = load_submission(config)
    tasks = {name: [t["task"] for t in ts] for name, ts in sub.jobs.items()}
    states = scheduler_states([t for ts in tasks.values() for t in ts])
    out = []
    for job in all_jobs(config):
        counts: dict[str, int] = {}
        for t in tasks.get(job.name, []):
            s = states.get(t, "UNKNOWN")
            counts[s] = counts.get(s, 0) + 1
        done = sum(unit_done(config, job.name, u) for u in job.units)
        out.append(JobStatus(job.name, len(job.units), done, counts))
    return out


def status_text(rows: Sequence[JobStatus]) -> str:
    lines = [f"{'job':<16} {'done':>9}  scheduler (last submission)"]
    for r in rows:
        sched = ", ".join(f"{k.lower()} {v}" for k, v in sorted(r.scheduler.items())) or "-"
        lines.append(f"{r.job:<16} {r.done:>4}/{r.units:<4}  {sched}")
    return "\n".join(lines)


def wait(config: RunConfig, *, timeout_s: float, poll_s: float = 3.0) -> list[JobStatus]:
    """Poll until every unit is committed, or a task failed, or ``timeout_s`` passed."""
    t0 = time.perf_counter()
    while True:
        rows = status(config)
        if all(r.done == r.units for r in rows):
            return rows
        failed = {
            s
            for r in rows
            for s in r.scheduler
            if s in ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")
        }
        active = any(s in ACTIVE_STATES for r in rows for s in r.scheduler)
        if failed and not active:
            raise JobError(f"jobs ended without finishing the run:\n{status_text(rows)}")
        if time.perf_counter() - t0 > timeout_s:
            raise JobError(f"run not finished after {timeout_s:.0f} s:\n{status_text(rows)}")
        time.sleep(poll_s)


# --- bulk segmentation -----------------------------------------------------------------


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

        _start_task(self.storage)
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

        _start_task(self.storage)
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


def wait_for_jobs(job_ids: Sequence[str], *, timeout_s: float, poll_s: float = 2.0) -> None:
    """Until no task of these jobs is queued or running."""
    t0 = time.perf_counter()
    while True:
        states = scheduler_states(list(job_ids))
        if not any(s in ACTIVE_STATES for s in states.values()) and states:
            return
        if time.perf_counter() - t0 > timeout_s:
            raise JobError(f"jobs {list(job_ids)} still running after {timeout_s:.0f} s")
        time.sleep(poll_s)
