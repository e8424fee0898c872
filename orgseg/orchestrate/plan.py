"""What is left of a run and what it will cost (``orgseg train-all --dry-run``).

A job's unit is priced from the median wall seconds of its committed units (their unit
markers) where there are any, else from the documented rates of the cluster profile
(``cluster.rates``). Before the case table exists the cases are counted from the
sources (one listing per source, no downloads). The critical path is the chain of jobs,
each taking ``ceil(units / array_parallelism)`` unit times.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from orgseg.config import RunConfig
from orgseg.orchestrate.sbatch import job_resources
from orgseg.pipeline.jobs import Job, UnitKey
from orgseg.pipeline.shards import run_size, with_shard_counts
from orgseg.pipeline.units import committed, measured_unit_s, pending

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCost:
    job: Job
    units: tuple[UnitKey, ...]
    unit_s: float
    basis: str
    gpu_h: float
    cpu_h: float
    wall_h: float


def plan(config: RunConfig) -> tuple[list[JobCost], str]:
    """Every job with units left: units, seconds per unit and on what basis, GPU and CPU
    hours, wall hours at the profile's array parallelism. Also where case counts came from."""
    config = with_shard_counts(config, record=False)  # a plan writes nothing
    done = committed(config)
    size, counted_from = run_size(config)
    out = []
    for j, todo in pending(config, done):
        measured, n = measured_unit_s(config, j.name, done)
        if measured is not None:
            unit_s, basis = measured, f"median of {n} committed unit(s)"
        else:
            unit_s, basis = j.estimate(config, size, config.cluster.rates)
        r = job_resources(config, j)
        total_s = unit_s * len(todo)
        waves = math.ceil(len(todo) / max(r.array_parallelism, 1))
        out.append(
            JobCost(
                job=j,
                units=todo,
                unit_s=unit_s,
                basis=basis,
                gpu_h=total_s * r.gpus_per_node / 3600.0 if j.gpu else 0.0,
                cpu_h=total_s * r.cpus_per_task / 3600.0,
                wall_h=waves * unit_s / 3600.0,
            )
        )
    return out, counted_from


def critical_path_h(costs: Sequence[JobCost]) -> float:
    """Wall hours of the longest chain of dependent pending jobs (costs in run order)."""
    finish: dict[str, float] = {}
    for c in costs:
        finish[c.job.name] = c.wall_h + max((finish.get(a, 0.0) for a in c.job.after), default=0.0)
    return max(finish.values(), default=0.0)


def plan_text(config: RunConfig, costs: Sequence[JobCost], counted_from: str) -> str:
    """The plan ``--dry-run`` prints: units, dependencies, resources, hours and their basis."""
    lines = [
        f"run root: {config.run_root}   executor: {config.cluster.executor}   "
        f"jobs folder: {config.cluster.jobs_dir}   cases counted from {counted_from}",
        "",
        f"{'job':<16} {'units':>6}  {'after':<24} {'resources':<40} {'s/unit':>9} "
        f"{'GPU h':>9} {'wall h':>7}  basis",
    ]
    names = {c.job.name for c in costs}
    for c in costs:
        r = job_resources(config, c.job)
        res = (
            f"{r.partition or '(default)'} {r.gpus_per_node} GPU {r.cpus_per_task} CPU "
            f"{r.mem_gb:g} GB {r.timeout_min} min"
        )
        after = ",".join(a for a in c.job.after if a in names) or "-"
        lines.append(
            f"{c.job.name:<16} {len(c.units):>6}  {after:<24} {res:<40} {c.unit_s:>9.0f} "
            f"{c.gpu_h:>9.1f} {c.wall_h:>7.1f}  {c.basis}"
        )
    lines += [
        "",
        f"GPU hours: {sum(c.gpu_h for c in costs):.1f}; CPU core hours: "
        f"{sum(c.cpu_h for c in costs):.1f}; critical path (the longest chain of dependent "
        f"jobs, array_parallelism tasks at once): {critical_path_h(costs):.1f} h",
    ]
    if not costs:
        lines.append("nothing to do: every unit is committed")
    return "\n".join(lines)
