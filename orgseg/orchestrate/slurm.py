"""Slurm through submitit: job arrays submitted, task states asked (sacct, squeue)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

from orgseg.config import StageResources, StorageConfig
from orgseg.io.storage import configure_storage
from orgseg.orchestrate.sbatch import python_command, slurm_parameters

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


def start_task(storage: StorageConfig | None = None) -> None:
    """What every Slurm task does first: logging, signals for forked workers, storage."""
    _task_logging()
    _default_signals_in_children()
    if storage is not None:
        configure_storage(storage)


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
