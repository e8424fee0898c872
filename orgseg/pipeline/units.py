"""Running the job table's units, and what of it is done.

Every unit is idempotent and trusts only committed outputs. When a unit's outputs are
committed (synced back, markers last), :func:`run_unit` writes its *unit marker*
``<run_root>/units/<job>/<unit>.json`` with the unit's wall (and GPU) seconds. What is
done is read from those markers with one listing of ``<run_root>/units/``, however many
cases the run has; the markers' seconds price the rest of the run (``--dry-run``).
"""

from __future__ import annotations

import json
import logging
import socket
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from orgseg.errors import ConfigError
from orgseg.io import write_bytes
from orgseg.io.storage import configure_storage, filesystem
from orgseg.pipeline.jobs import JOBS, Job, job
from orgseg.pipeline.markers import UnitKey, committed, marker_url, read_markers, unit_name
from orgseg.pipeline.staging import staged

if TYPE_CHECKING:
    from orgseg.config import RunConfig

__all__ = [
    "committed",
    "done_units",
    "marker_url",
    "measured_unit_s",
    "pending",
    "run_job",
    "run_unit",
    "units_by_name",
]

log = logging.getLogger(__name__)


# --- what is done: unit markers (orgseg/pipeline/markers.py), one listing --------------


def done_units(config: RunConfig, job_name: str, done: Mapping[str, Mapping[str, str]]) -> set[str]:
    """The names of ``job_name``'s units that ``done`` (from :func:`committed`) holds."""
    names = {unit_name(u) for u in job(job_name).units(config)}
    return names & set(done.get(job_name, {}))


def measured_unit_s(config: RunConfig, job_name: str, done: Mapping[str, Mapping[str, str]]):
    """(median wall seconds of the job's committed units, how many) or (None, 0)."""
    markers = read_markers(list(done.get(job_name, {}).values()))
    seconds = [float(m["wall_s"]) for m in markers if "wall_s" in m]
    return (statistics.median(seconds), len(seconds)) if seconds else (None, 0)


def pending(
    config: RunConfig, done: Mapping[str, Mapping[str, str]] | None = None
) -> list[tuple[Job, tuple[UnitKey, ...]]]:
    """Each job with units left, and those units, in run order (one listing, or the one
    :func:`committed` already gave)."""
    done = committed(config) if done is None else done
    out = []
    for j in JOBS:
        names = set(done.get(j.name, {}))
        todo = tuple(u for u in j.units(config) if unit_name(u) not in names)
        if todo:
            out.append((j, todo))
    return out


# --- running one unit -------------------------------------------------------------------


def run_unit(config: RunConfig, job_name: str, unit: UnitKey, *, force: bool = False) -> str:
    """Run one unit (skipped when its marker exists), staging nnU-Net's folders when the
    run root is an object store; commits the unit marker last. Returns a one-line account."""
    j = job(job_name)
    if unit not in j.units(config):
        raise ConfigError(
            f"job {job_name!r} has no unit {unit_name(unit)!r}; its units are "
            f"{[unit_name(u) for u in j.units(config)][:20]}"
        )
    configure_storage(config.storage)
    url = marker_url(config, job_name, unit)
    fs, path = filesystem(url)
    if not force and fs.exists(path):
        return f"{job_name} {unit_name(unit)}: already done"
    t0 = time.perf_counter()
    if j.staged:
        with staged(config, j.needs(config, unit)) as cfg:
            j.run(cfg, unit)
    else:
        j.run(config, unit)
    wall = time.perf_counter() - t0
    marker = {
        "job": job_name,
        "unit": list(unit),
        "wall_s": round(wall, 3),
        "gpu_s": round(wall, 3) if j.gpu and config.nnunet.device == "cuda" else 0.0,
        "host": socket.gethostname(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_bytes(url, json.dumps(marker).encode())  # committed last
    return f"{job_name} {unit_name(unit)}: done in {wall:.1f} s"


def units_by_name(config: RunConfig, job_name: str, names: Sequence[str]) -> list[UnitKey]:
    """The units of a job picked by name (``orgseg run JOB --unit NAME``); all when none."""
    units = job(job_name).units(config)
    if not names:
        return list(units)
    by_name = {unit_name(u): u for u in units}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(
            f"job {job_name!r} has no unit(s) {unknown}; its units are {sorted(by_name)[:30]}"
        )
    return [by_name[n] for n in names]


def run_job(
    config: RunConfig, job_name: str, unit_names: Sequence[str] = (), *, force: bool = False
) -> list[str]:
    """``orgseg run JOB``: the job's units (or the named ones) in this process, through the
    same path as train-all (staging, done checks, markers); ``force``: units already
    marked done run again."""
    out = []
    units = units_by_name(config, job_name, unit_names)
    for i, unit in enumerate(units, start=1):
        log.info("%s: unit %d/%d: %s", job_name, i, len(units), unit_name(unit))
        out.append(run_unit(config, job_name, unit, force=force))
        log.info("%s", out[-1])
    return out
