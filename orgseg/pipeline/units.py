"""A training run as jobs of units: what each job does, what is done, how to run one unit.

The orchestrator (:mod:`orgseg.orchestrate`) submits these jobs; this module knows nothing
of Slurm. A job is one pipeline step run as an array of units (one Slurm array task per
unit); jobs depend on the previous job finishing successfully:

==================  =========================  =======================================
job                 units                      work
==================  =========================  =======================================
cases               one                        the case manifest, cropped CTs, masks
strategy1-data      one per organ              the organ's nnU-Net dataset, preprocessed
strategy1-train     organ x fold               one binary nnU-Net fold (resumable)
pseudo-labels       one per shard of cases     fill in the organs each case lacks
fusion              one                        CV Dice, fused label maps, s2 dataset
strategy2-train     one per fold               one multi-label nnU-Net fold (resumable)
evaluate            one                        export the s2 model, predict, report
==================  =========================  =======================================

Every unit is idempotent and trusts only committed outputs (a marker or record written
last), so a unit killed anywhere is simply run again. When the run root is an object
store, nnU-Net's folders (which must be POSIX paths) are staged to node-local scratch for
the unit and synced back, data first and markers last (:func:`staged`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from orgseg.config import RunConfig
from orgseg.errors import ConfigError
from orgseg.io import exists, join_url
from orgseg.io.storage import configure_storage, is_local, sync_down, sync_up
from orgseg.pipeline.stages import JOB_NAMES

log = logging.getLogger(__name__)

UnitKey = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job of the run: a pipeline step over its units, after other jobs."""

    name: str
    units: tuple[UnitKey, ...]
    after: tuple[str, ...]
    gpu: bool  # trains or predicts with a network


def all_jobs(config: RunConfig) -> list[JobSpec]:
    """The whole DAG of a run (every unit, done or not)."""
    organs = tuple(config.strategy1_organs)
    s1_units = tuple((o, f) for o in organs for f in config.strategy1_training.folds)
    shards = tuple((s,) for s in range(config.pseudo_labels.shards))
    return [
        JobSpec("cases", ((),), (), False),
        JobSpec("strategy1-data", tuple((o,) for o in organs), ("cases",), False),
        JobSpec("strategy1-train", s1_units, ("strategy1-data",), True),
        JobSpec("pseudo-labels", shards, ("strategy1-train",), True),
        JobSpec("fusion", ((),), ("pseudo-labels",), False),
        JobSpec(
            "strategy2-train",
            tuple((f,) for f in config.strategy2_training.folds),
            ("fusion",),
            True,
        ),
        JobSpec("evaluate", ((),), ("strategy2-train",), True),
    ]


# --- what is done (committed outputs only) ---------------------------------------------


def _nnunet_marker_url(config: RunConfig, dataset: str, fold: int) -> str:
    from orgseg.nnunet.train import TRAINER, UNIT_MARKER
    from orgseg.pipeline.strategy1 import configuration_name

    folder = f"{TRAINER}__nnUNetPlans__{configuration_name(config)}"
    return join_url(nnunet_root(config), "results", dataset, folder, f"fold_{fold}", UNIT_MARKER)


def _dataset_marker_url(config: RunConfig, dataset: str) -> str:
    return join_url(nnunet_root(config), "preprocessed", dataset, "splits_final.json")


def unit_done(config: RunConfig, job: str, unit: UnitKey) -> bool:
    """Whether a unit's committed outputs exist (reads storage only; never the scheduler)."""
    from orgseg.pipeline.datasets import strategy1_dataset, strategy2_dataset
    from orgseg.pipeline.layout import RunLayout

    layout = RunLayout.of(config)
    if job == "cases":
        return exists(layout.manifest())
    if job == "strategy1-data":
        return exists(_dataset_marker_url(config, strategy1_dataset(config, str(unit[0]))[1]))
    if job == "strategy1-train":
        name = strategy1_dataset(config, str(unit[0]))[1]
        return exists(_nnunet_marker_url(config, name, int(unit[1])))  # type: ignore[call-overload]
    if job == "pseudo-labels":
        if not exists(layout.manifest()):
            return False
        from orgseg.pipeline.pseudo import pending, shard_cases

        shard = int(unit[0])  # type: ignore[call-overload]
        return not pending(config, shard_cases(config, shard, config.pseudo_labels.shards))
    if job == "fusion":
        return exists(_dataset_marker_url(config, strategy2_dataset(config)[1]))
    if job == "strategy2-train":
        name = strategy2_dataset(config)[1]
        return exists(_nnunet_marker_url(config, name, int(unit[0])))  # type: ignore[call-overload]
    if job == "evaluate":
        return exists(join_url(layout.root, "report.md"))
    raise ConfigError(f"unknown job {job!r}; jobs are {list(JOB_NAMES)}")


def pending_jobs(config: RunConfig) -> list[JobSpec]:
    """The DAG with done units left out and finished jobs dropped (their dependants then
    start at once)."""
    out = []
    for job in all_jobs(config):
        units = tuple(u for u in job.units if not unit_done(config, job.name, u))
        if units:
            out.append(dataclasses.replace(job, units=units))
    names = {j.name for j in out}
    return [dataclasses.replace(j, after=tuple(a for a in j.after if a in names)) for j in out]


# --- running one unit -------------------------------------------------------------------


def nnunet_root(config: RunConfig) -> str:
    """Where the run's nnU-Net folders are committed (the run root's ``nnunet/``, unless
    ``nnunet.work_dir`` puts them elsewhere)."""
    return config.nnunet.work_dir or join_url(config.run_root, "nnunet")


#: what a unit needs of nnU-Net's folders: (part, dataset, markers only)
Need = tuple[str, str, bool]


def _needs(config: RunConfig, job: str, unit: UnitKey) -> list[Need]:
    from orgseg.pipeline.datasets import strategy1_dataset, strategy2_dataset

    s1 = [strategy1_dataset(config, o)[1] for o in config.strategy1_organs]
    s2 = strategy2_dataset(config)[1]
    if job == "strategy1-data":
        return []
    if job == "strategy1-train":
        name = strategy1_dataset(config, str(unit[0]))[1]
        return [("preprocessed", name, False), ("results", name, False)]
    if job == "pseudo-labels":
        return [("results", name, False) for name in s1]
    if job == "fusion":
        return [("results", name, True) for name in s1]
    if job == "strategy2-train":
        return [("preprocessed", s2, False), ("results", s2, False)]
    if job == "evaluate":  # held-out predictions of both strategies
        return [("results", s2, False)] + [("results", name, False) for name in s1]
    return []


@contextlib.contextmanager
def staged(config: RunConfig, needs: list[Need]) -> Iterator[RunConfig]:
    """The config a unit runs with: unchanged when nnU-Net's folders are local; otherwise
    pointing at node-local scratch (``$ORGSEG_SCRATCH`` or the temp dir) holding what the
    unit needs, synced back at the end, data first and markers last (also by
    :func:`checkpoint_staged` when the job is preempted)."""
    from orgseg.io.storage import MARKER_NAMES

    root = nnunet_root(config)
    if is_local(root):
        yield config
        return
    base = os.environ.get("ORGSEG_SCRATCH") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orgseg-nnunet-", dir=base) as scratch:
        fetched: dict[str, tuple[int, int]] = {}
        for part, name, markers_only in needs:
            got = sync_down(
                join_url(root, part, name),
                os.path.join(scratch, part, name),
                only=MARKER_NAMES if markers_only else None,
            )
            fetched.update({f"{part}/{name}/{rel}": v for rel, v in got.items()})
        local = dataclasses.replace(
            config, nnunet=dataclasses.replace(config.nnunet, work_dir=scratch)
        )
        entry = (scratch, root, fetched)
        _ACTIVE.append(entry)
        try:
            yield local
        finally:
            _ACTIVE.remove(entry)
            # a failed unit still syncs its checkpoints: the next attempt resumes from them
            sync_up(scratch, root, unchanged=fetched)


_ACTIVE: list[tuple[str, str, dict[str, tuple[int, int]]]] = []


def checkpoint_staged() -> None:
    """Sync every staged nnU-Net folder back now (called when a job is preempted)."""
    for scratch, root, fetched in list(_ACTIVE):
        log.info("preempted: syncing %s back to %s", scratch, root)
        sync_up(scratch, root, unchanged=fetched)


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
    from orgseg.pipeline.evaluate import predict_test_cases
    from orgseg.pipeline.run import report
    from orgseg.pipeline.strategy2 import export_strategy2_model

    export_strategy2_model(config)
    predict_test_cases(config)
    report(config)


RUNNERS: dict[str, Callable[[RunConfig, UnitKey], None]] = {
    "cases": _run_cases,
    "strategy1-data": _run_s1_data,
    "strategy1-train": _run_s1_train,
    "pseudo-labels": _run_pseudo,
    "fusion": _run_fusion,
    "strategy2-train": _run_s2_train,
    "evaluate": _run_evaluate,
}


def run_unit(config: RunConfig, job: str, unit: UnitKey) -> str:
    """Run one unit (skipping it when done); returns a one-line account."""
    if job not in RUNNERS:
        raise ConfigError(f"unknown job {job!r}; jobs are {list(JOB_NAMES)}")
    configure_storage(config.storage)
    if unit_done(config, job, unit):
        return f"{job} {list(unit)}: already done"
    t0 = time.perf_counter()
    with staged(config, _needs(config, job, unit)) as cfg:
        RUNNERS[job](cfg, unit)
    return f"{job} {list(unit)}: done in {time.perf_counter() - t0:.1f} s"
