"""The run's job table: the one description of a training run's work.

Each :class:`Job` says what its units are, how one unit runs, what of nnU-Net's folders it
stages, and how long a unit takes when none has been measured. Everything that talks
about the run's work derives from :data:`JOBS`: ``orgseg run``, ``train-all``, ``orgseg
status``, ``--dry-run``, the sbatch files and the config's check of ``cluster.stages``.
The orchestrator (:mod:`orgseg.orchestrate`) runs them; this module knows nothing of
schedulers.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orgseg.errors import ConfigError
from orgseg.io import write_bytes
from orgseg.io.storage import configure_storage, filesystem
from orgseg.pipeline.markers import (
    UnitKey,
    committed,
    marker_url,
    read_markers,
    unit_name,
)
from orgseg.pipeline.staging import Need, staged

if TYPE_CHECKING:  # the config imports this table (cluster.stages are job names)
    from orgseg.config import CostRates, RunConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSize:
    """What a run's cost depends on: its case counts (from the manifest, else the sources)."""

    cases: int
    train: int
    test: int
    organs: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One job of the run: an array of units after other jobs (see the module docstring)."""

    name: str
    #: what one unit does, in a few words (plans, README)
    work: str
    after: tuple[str, ...]
    #: trains or predicts with a network
    gpu: bool
    units: Callable[[RunConfig], tuple[UnitKey, ...]]
    run: Callable[[RunConfig, UnitKey], None]
    #: seconds one unit takes at the cluster profile's documented rates, and the rate used
    estimate: Callable[[RunConfig, RunSize, CostRates], tuple[float, str]]
    needs: Callable[[RunConfig, UnitKey], list[Need]] = lambda config, unit: []


# --- the units and runners of each job -------------------------------------------------


def _one(config: RunConfig) -> tuple[UnitKey, ...]:
    return ((),)


def _organs(config: RunConfig) -> tuple[UnitKey, ...]:
    return tuple((o,) for o in config.strategy1_organs)


def _s1_units(config: RunConfig) -> tuple[UnitKey, ...]:
    return tuple((o, f) for o in config.strategy1_organs for f in config.strategy1_training.folds)


def _shards(config: RunConfig) -> tuple[UnitKey, ...]:
    return tuple((s,) for s in range(config.pseudo_labels.shards))


def _s2_folds(config: RunConfig) -> tuple[UnitKey, ...]:
    return tuple((f,) for f in config.strategy2_training.folds)


def _run_cases(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.cases import build_manifest

    build_manifest(config)


def _run_s1_data(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy1 import build_strategy1_dataset

    build_strategy1_dataset(config, str(unit[0]))


def _run_s1_train(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy1 import train_strategy1_unit

    train_strategy1_unit(config, str(unit[0]), int(unit[1]))  # type: ignore[call-overload]


def _run_pseudo(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.pseudo import run_pseudo_shard

    run_pseudo_shard(config, int(unit[0]), config.pseudo_labels.shards)  # type: ignore[call-overload]


def _run_fusion(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy1 import collect_cv_dice
    from orgseg.pipeline.strategy2 import build_strategy2_dataset, run_fusion

    collect_cv_dice(config)
    run_fusion(config)
    build_strategy2_dataset(config)


def _run_s2_train(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy2 import train_strategy2_unit

    train_strategy2_unit(config, int(unit[0]))  # type: ignore[call-overload]


def _run_evaluate(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.evaluate import predict_test_cases, write_run_report
    from orgseg.pipeline.strategy2 import export_strategy2_model

    export_strategy2_model(config)
    predict_test_cases(config)
    write_run_report(config)


# --- what each unit stages of nnU-Net's folders ----------------------------------------


def _s1_names(config: RunConfig) -> list[str]:
    from orgseg.pipeline.datasets import strategy1_dataset

    return [strategy1_dataset(config, o)[1] for o in config.strategy1_organs]


def _s2_name(config: RunConfig) -> str:
    from orgseg.pipeline.datasets import strategy2_dataset

    return strategy2_dataset(config)[1]


def _needs_s1_train(config: RunConfig, unit: UnitKey) -> list[Need]:
    from orgseg.pipeline.datasets import strategy1_dataset

    name = strategy1_dataset(config, str(unit[0]))[1]
    return [("preprocessed", name, False), ("results", name, False)]


def _needs_s2_train(config: RunConfig, unit: UnitKey) -> list[Need]:
    name = _s2_name(config)
    return [("preprocessed", name, False), ("results", name, False)]


# --- documented rates (cluster.rates) for units nobody has measured yet -----------------


def _training_s(t, rates: CostRates) -> float:  # noqa: ANN001
    return t.epochs * rates.epoch_s * t.iterations_per_epoch / 250.0


JOBS: tuple[Job, ...] = (
    Job(
        name="cases",
        work="case table, body crops, patient size, splits",
        after=(),
        gpu=False,
        units=_one,
        run=_run_cases,
        estimate=lambda c, n, r: (n.cases * r.case_prep_s, "cluster.rates.case_prep_s x cases"),
    ),
    Job(
        name="strategy1-data",
        work="the organ's binary nnU-Net dataset: verified, planned, preprocessed, CV splits",
        after=("cases",),
        gpu=False,
        units=_organs,
        run=_run_s1_data,
        estimate=lambda c, n, r: (
            n.train * r.preprocess_s_per_case,
            "cluster.rates.preprocess_s_per_case x training cases",
        ),
    ),
    Job(
        name="strategy1-train",
        work="one binary nnU-Net fold; resumes from checkpoint_latest.pth",
        after=("strategy1-data",),
        gpu=True,
        units=_s1_units,
        run=_run_s1_train,
        needs=_needs_s1_train,
        estimate=lambda c, n, r: (
            _training_s(c.strategy1_training, r),
            "cluster.rates.epoch_s x epochs",
        ),
    ),
    Job(
        name="pseudo-labels",
        work="each organ's fold ensemble fills in every organ a training case lacks",
        after=("strategy1-train",),
        gpu=True,
        units=_shards,
        run=_run_pseudo,
        needs=lambda c, u: [("results", name, False) for name in _s1_names(c)],
        estimate=lambda c, n, r: (
            n.train * n.organs * r.pseudo_label_s_per_case_organ / c.pseudo_labels.shards,
            "cluster.rates.pseudo_label_s_per_case_organ x training cases x organs",
        ),
    ),
    Job(
        name="fusion",
        work="strategy-1 CV Dice, fused label maps, the strategy-2 dataset",
        after=("pseudo-labels",),
        gpu=False,
        units=_one,
        run=_run_fusion,
        needs=lambda c, u: [("results", name, True) for name in _s1_names(c)],
        estimate=lambda c, n, r: (
            n.train * r.fusion_s_per_case + n.train * r.preprocess_s_per_case,
            "cluster.rates.fusion_s_per_case + preprocess_s_per_case, x training cases",
        ),
    ),
    Job(
        name="strategy2-train",
        work="one multi-label nnU-Net fold; resumes from checkpoint_latest.pth",
        after=("fusion",),
        gpu=True,
        units=_s2_folds,
        run=_run_s2_train,
        needs=_needs_s2_train,
        estimate=lambda c, n, r: (
            _training_s(c.strategy2_training, r),
            "cluster.rates.epoch_s x epochs",
        ),
    ),
    Job(
        name="evaluate",
        work="export the strategy-2 model, predict the held-out cases with both strategies, "
        "the report",
        after=("strategy2-train",),
        gpu=True,
        units=_one,
        run=_run_evaluate,
        needs=lambda c, u: (
            [("results", _s2_name(c), False)] + [("results", name, False) for name in _s1_names(c)]
        ),
        estimate=lambda c, n, r: (
            n.test * (r.prediction_s_per_case + n.organs * r.pseudo_label_s_per_case_organ),
            "cluster.rates.prediction_s_per_case + organs x pseudo_label_s_per_case_organ, "
            "x test cases",
        ),
    ),
)

#: the jobs' names in run order (derived from the table)
JOB_NAMES: tuple[str, ...] = tuple(j.name for j in JOBS)


def check_config(config: RunConfig) -> RunConfig:
    """The config's job names (``cluster.stages``) are the table's (``bulk`` besides)."""
    unknown = sorted(set(config.cluster.stages) - set(JOB_NAMES) - {"bulk"})
    if unknown:
        raise ConfigError(
            f"cluster.stages: unknown jobs {unknown}; jobs are {[*JOB_NAMES, 'bulk']}"
        )
    return config


def job(name: str) -> Job:
    for j in JOBS:
        if j.name == name:
            return j
    raise ConfigError(f"unknown job {name!r}; jobs are {list(JOB_NAMES)}")


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
    with staged(config, j.needs(config, unit)) as cfg:
        j.run(cfg, unit)
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


def run_job(config: RunConfig, job_name: str, unit_names: Sequence[str] = ()) -> list[str]:
    """``orgseg run JOB``: the job's units (or the named ones) in this process, through the
    same path as train-all (staging, done checks, markers)."""
    out = []
    units = units_by_name(config, job_name, unit_names)
    for i, unit in enumerate(units, start=1):
        log.info("%s: unit %d/%d: %s", job_name, i, len(units), unit_name(unit))
        out.append(run_unit(config, job_name, unit))
        log.info("%s", out[-1])
    return out
