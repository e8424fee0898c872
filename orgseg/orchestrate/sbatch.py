"""Slurm parameters and sbatch scripts of the run's jobs (pure: no scheduler is asked).

:func:`job_resources` is the one place a job's resources are decided (a CPU job never asks
for the profile's GPUs); real submission (:func:`orgseg.orchestrate.slurm.submit_array`) and
the golden site templates (:func:`site_templates`) both take their parameters from
:func:`slurm_parameters` of those resources.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orgseg.config import RunConfig, StageResources
from orgseg.pipeline.jobs import JOBS, Job


def job_resources(config: RunConfig, job: Job) -> StageResources:
    """What one task of ``job`` asks Slurm for: the profile's, without GPUs for CPU jobs."""
    r = config.cluster.resources(job.name)
    return r if job.gpu else dataclasses.replace(r, gpus_per_node=0)


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
    name: str,
    resources: StageResources,
    *,
    n_tasks: int,
    folder: str,
    dependency: str | None = None,
    python: str | None = None,
) -> str:
    """The sbatch script Slurm receives for a job of ``n_tasks`` tasks, rendered by
    submitit's own template with the parameters real submission passes (submitit has no
    public renderer: this is the one private submitit function orgseg calls)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = slurm_parameters(resources, name=name, dependency=dependency)
    python = python or python_command(resources)
    command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(folder)])
    return _make_sbatch_string(
        command=command, folder=folder, map_count=n_tasks if n_tasks > 1 else None, **params
    )


def site_templates(config: RunConfig) -> dict[str, str]:
    """The sbatch script of every job of the run, as submission renders it; ids of the
    jobs each waits for are shown as ``JOBID-<job>`` placeholders."""
    return {
        j.name: render_sbatch(
            j.name,
            job_resources(config, j),
            n_tasks=len(j.units(config)),
            folder=str(Path(config.cluster.jobs_dir) / j.name),
            dependency=dependency_of([f"JOBID-{a}" for a in j.after]),
        )
        for j in JOBS
    }


def dependency_of(job_ids: Sequence[str]) -> str | None:
    """``afterok`` on every given job (whole arrays by their id).

    >>> dependency_of(["12", "15"]), dependency_of([])
    ('afterok:12:15', None)
    """
    ids = sorted(set(job_ids), key=lambda j: (len(j), j))
    return "afterok:" + ":".join(ids) if ids else None
