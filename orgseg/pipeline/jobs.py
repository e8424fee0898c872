"""The run's job table: the one description of a training run's work.

Each :class:`Job` says what its units are, how one unit runs, what of nnU-Net's folders it
stages, and how long a unit takes when none has been measured. Everything that talks
about the run's work derives from :data:`JOBS`: ``orgseg run``, ``train-all``, ``orgseg
status``, ``--dry-run``, the sbatch files and the config's check of ``cluster.stages``.
The orchestrator (:mod:`orgseg.orchestrate`) runs them; this module knows nothing of
schedulers.

Running units and reading what is done (unit markers) is :mod:`orgseg.pipeline.units`;
how many shards a case-level job has is :mod:`orgseg.pipeline.shards`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orgseg.errors import ConfigError
from orgseg.pipeline.markers import UnitKey
from orgseg.pipeline.shards import SHARDING, RunSize, check_shards, shard_count
from orgseg.pipeline.staging import Need

if TYPE_CHECKING:  # the config imports this table (cluster.stages are job names)
    from orgseg.config import CostRates, RunConfig


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
    #: runs on nnU-Net's folders staged to scratch when they live in an object store
    #: (False: the unit reads them where they are committed, and writes none)
    staged: bool = True


# --- the units and runners of each job -------------------------------------------------


def _one(config: RunConfig) -> tuple[UnitKey, ...]:
    return ((),)


def _organs(config: RunConfig) -> tuple[UnitKey, ...]:
    return tuple((o,) for o in config.strategy1_organs)


def _s1_units(config: RunConfig) -> tuple[UnitKey, ...]:
    return tuple((o, f) for o in config.strategy1_organs for f in config.strategy1_training.folds)


def _s2_folds(config: RunConfig) -> tuple[UnitKey, ...]:
    return tuple((f,) for f in config.strategy2_training.folds)


def _sharded(job_name: str) -> Callable[[RunConfig], tuple[UnitKey, ...]]:
    """The units of a case-level job: ``(shard, count)`` (orgseg/pipeline/shards.py)."""

    def units(config: RunConfig) -> tuple[UnitKey, ...]:
        n = shard_count(config, job_name)
        return tuple((s, n) for s in range(n))

    return units


def _shard(unit: UnitKey) -> tuple[int, int]:
    return int(unit[0]), int(unit[1])  # type: ignore[call-overload]


def _run_cases(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.cases import prepare_shard

    prepare_shard(config, *_shard(unit))


def _run_manifest(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.manifest import build_manifest

    build_manifest(config)


def _run_s1_data(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy1 import build_strategy1_dataset

    build_strategy1_dataset(config, str(unit[0]))


def _run_s1_train(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy1 import train_strategy1_unit

    train_strategy1_unit(config, str(unit[0]), int(unit[1]))  # type: ignore[call-overload]


def _run_pseudo(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.pseudo import run_pseudo_shard

    run_pseudo_shard(config, *_shard(unit))


def _run_qc(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.pseudo_qc import run_qc

    run_qc(config)


def _run_cv_dice(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy1 import collect_cv_dice

    collect_cv_dice(config)


def _run_fusion(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy2 import run_fusion_shard

    run_fusion_shard(config, *_shard(unit))


def _run_s2_data(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy2 import build_strategy2_dataset

    build_strategy2_dataset(config)


def _run_s2_train(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy2 import train_strategy2_unit

    train_strategy2_unit(config, int(unit[0]))  # type: ignore[call-overload]


def _run_s2_export(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.strategy2 import export_strategy2_model

    export_strategy2_model(config)


def _run_test_predictions(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.evaluate import predict_test_shard

    predict_test_shard(config, *_shard(unit))


def _run_report(config: RunConfig, unit: UnitKey) -> None:
    from orgseg.pipeline.evaluate import write_run_report

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


def _per_shard(job_name: str, config: RunConfig, total_s: float) -> float:
    return total_s / shard_count(config, job_name)


JOBS: tuple[Job, ...] = (
    Job(
        name="cases",
        work="a shard of cases: read, hash, body crop, patient size, manual masks",
        after=(),
        gpu=False,
        units=_sharded("cases"),
        run=_run_cases,
        estimate=lambda c, n, r: (
            _per_shard("cases", c, n.cases * r.case_prep_s),
            "cluster.rates.case_prep_s x cases / shards",
        ),
    ),
    Job(
        name="manifest",
        work="the case table, exclusions and splits from the shards' case records",
        after=("cases",),
        gpu=False,
        units=_one,
        run=_run_manifest,
        estimate=lambda c, n, r: (60.0, "a minute"),
    ),
    Job(
        name="strategy1-data",
        work="the organ's binary nnU-Net dataset: verified, planned, preprocessed, CV splits",
        after=("manifest",),
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
        work="a shard of training cases: every organ a case lacks, by its fold ensemble "
        "through the streamed engine",
        after=("strategy1-train",),
        gpu=True,
        units=_sharded("pseudo-labels"),
        run=_run_pseudo,
        needs=lambda c, u: [("results", name, False) for name in _s1_names(c)],
        estimate=lambda c, n, r: (
            _per_shard("pseudo-labels", c, n.train * n.organs * r.pseudo_label_s_per_case_organ),
            "cluster.rates.pseudo_label_s_per_case_organ x training cases x organs / shards",
        ),
    ),
    Job(
        name="pseudo-qc",
        work="every pseudo-label judged (volume vs manual masks, organs missing from the "
        "field of view, the records' figures): qc/ with flags, tables and contact sheets",
        after=("pseudo-labels",),
        gpu=False,
        units=_one,
        run=_run_qc,
        staged=False,  # reads records, masks and CTs where they are committed
        estimate=lambda c, n, r: (60.0 + n.train * n.organs * 0.01, "a minute + 10 ms a mask"),
    ),
    Job(
        name="cv-dice",
        work="strategy-1 cross-validation Dice per organ (the fusion's priorities)",
        after=("strategy1-train",),
        gpu=False,
        units=_one,
        run=_run_cv_dice,
        needs=lambda c, u: [("results", name, True) for name in _s1_names(c)],
        estimate=lambda c, n, r: (60.0, "a minute"),
    ),
    Job(
        name="fusion",
        work="a shard of training cases: one non-overlapping map of manual and pseudo masks",
        after=("pseudo-qc", "cv-dice"),
        gpu=False,
        units=_sharded("fusion"),
        run=_run_fusion,
        estimate=lambda c, n, r: (
            _per_shard("fusion", c, n.train * r.fusion_s_per_case),
            "cluster.rates.fusion_s_per_case x training cases / shards",
        ),
    ),
    Job(
        name="strategy2-data",
        work="the multi-label nnU-Net dataset of the fused maps: planned, preprocessed",
        after=("fusion",),
        gpu=False,
        units=_one,
        run=_run_s2_data,
        estimate=lambda c, n, r: (
            n.train * r.preprocess_s_per_case,
            "cluster.rates.preprocess_s_per_case x training cases",
        ),
    ),
    Job(
        name="strategy2-train",
        work="one multi-label nnU-Net fold; resumes from checkpoint_latest.pth",
        after=("strategy2-data",),
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
        name="strategy2-export",
        work="the strategy-2 folds as an orgseg model folder (models/strategy2)",
        after=("strategy2-train",),
        gpu=False,
        units=_one,
        run=_run_s2_export,
        needs=lambda c, u: [("results", _s2_name(c), False)],
        estimate=lambda c, n, r: (60.0, "a minute"),
    ),
    Job(
        name="test-predictions",
        work="a shard of held-out cases predicted by both strategies through the streamed engine",
        after=("strategy2-export", "cv-dice"),
        gpu=True,
        units=_sharded("test-predictions"),
        run=_run_test_predictions,
        needs=lambda c, u: [("results", name, False) for name in _s1_names(c)],
        estimate=lambda c, n, r: (
            _per_shard(
                "test-predictions",
                c,
                n.test * (r.prediction_s_per_case + n.organs * r.pseudo_label_s_per_case_organ),
            ),
            "cluster.rates.prediction_s_per_case + organs x pseudo_label_s_per_case_organ, "
            "x test cases / shards",
        ),
    ),
    Job(
        name="report",
        work="scores of both strategies, tables, tests, plots, CV and chunking tables",
        after=("test-predictions",),
        gpu=False,
        units=_one,
        run=_run_report,
        staged=False,  # the CV table reads the fold summaries where they are committed
        estimate=lambda c, n, r: (n.test * 5.0, "5 s x test cases"),
    ),
)

assert set(SHARDING) <= {j.name for j in JOBS}, "every sharded job is in the table"

#: the jobs' names in run order (derived from the table)
JOB_NAMES: tuple[str, ...] = tuple(j.name for j in JOBS)


def check_config(config: RunConfig) -> RunConfig:
    """The config's job names (``cluster.stages``) are the table's (``bulk`` besides)."""
    unknown = sorted(set(config.cluster.stages) - set(JOB_NAMES) - {"bulk"})
    if unknown:
        raise ConfigError(
            f"cluster.stages: unknown jobs {unknown}; jobs are {[*JOB_NAMES, 'bulk']}"
        )
    check_shards(config)
    return config


def job(name: str) -> Job:
    for j in JOBS:
        if j.name == name:
            return j
    raise ConfigError(f"unknown job {name!r}; jobs are {list(JOB_NAMES)}")
