"""The stages of a training run, in order, and the local (in-process) runner.

Each stage is idempotent: it skips what its committed outputs show is done, so
``train_all`` can be interrupted anywhere and run again with the same result.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from orgseg.config import RunConfig
from orgseg.errors import ConfigError
from orgseg.io import join_url, read_bytes, write_bytes
from orgseg.pipeline.cases import build_manifest
from orgseg.pipeline.evaluate import evaluate_test_cases, format_dice_table, predict_test_cases
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.pseudo import run_pseudo_shard
from orgseg.pipeline.strategy1 import (
    build_strategy1_dataset,
    collect_cv_dice,
    train_strategy1_unit,
)
from orgseg.pipeline.strategy2 import (
    build_strategy2_dataset,
    export_strategy2_model,
    run_fusion,
    train_strategy2_unit,
)

log = logging.getLogger(__name__)


def _strategy1_data(config: RunConfig) -> None:
    for i, organ in enumerate(config.strategy1_organs, start=1):
        log.info("strategy 1 dataset %d/%d: %s", i, len(config.strategy1_organs), organ)
        build_strategy1_dataset(config, organ)


def _strategy1_train(config: RunConfig) -> None:
    units = [(o, f) for o in config.strategy1_organs for f in config.strategy1_training.folds]
    for i, (organ, fold) in enumerate(units, start=1):
        log.info("strategy 1 training unit %d/%d: %s fold %d", i, len(units), organ, fold)
        train_strategy1_unit(config, organ, fold)
    collect_cv_dice(config)


def _pseudo(config: RunConfig) -> None:
    n = config.pseudo_labels.shards
    for shard in range(n):
        run_pseudo_shard(config, shard, n)


def _strategy2_train(config: RunConfig) -> None:
    for fold in config.strategy2_training.folds:
        log.info("strategy 2 training: fold %d", fold)
        train_strategy2_unit(config, fold)
    export_strategy2_model(config)


def report(config: RunConfig) -> None:
    """The run's report: the full evaluation under ``<run>/evaluation/`` (report.html),
    and ``<run>/report.md``: held-out Dice per organ with strategy-1 CV Dice."""
    results = evaluate_test_cases(config)
    layout = RunLayout.of(config)
    cv = json.loads(read_bytes(layout.cv_dice(1)))
    text = "# orgseg run report\n\nHeld-out test cases, Dice per organ (mean over cases).\n\n"
    text += format_dice_table(results, cv) + "\n\n"
    text += "Full report (per source and size group, tests, plots, cross-validation and "
    text += "chunking tables): evaluation/report.html\n"
    write_bytes(join_url(layout.root, "report.md"), text.encode())


STAGES: dict[str, Callable[[RunConfig], object]] = {
    "cases": build_manifest,
    "strategy1-data": _strategy1_data,
    "strategy1-train": _strategy1_train,
    "pseudo-labels": _pseudo,
    "fusion": run_fusion,
    "strategy2-data": build_strategy2_dataset,
    "strategy2-train": _strategy2_train,
    "predict": predict_test_cases,
    "evaluate": report,
}


def run_stage(config: RunConfig, stage: str) -> None:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages are {list(STAGES)}")
    t0 = time.perf_counter()
    log.info("stage %s: start", stage)
    STAGES[stage](config)
    log.info("stage %s: done in %.1f s", stage, time.perf_counter() - t0)


def train_all(config: RunConfig, *, executor: str | None = None) -> float:
    """Every pending unit of the run (skipping what is committed): in this process
    (``local``), or submitted to Slurm (``slurm``: returns once submitted). Returns the
    wall time in s."""
    import dataclasses

    from orgseg import orchestrate

    if executor is not None:
        config = dataclasses.replace(
            config, cluster=dataclasses.replace(config.cluster, executor=executor)
        )
    t0 = time.perf_counter()
    if config.cluster.executor == "slurm":
        orchestrate.submit(config)
    elif config.cluster.executor == "local":
        orchestrate.run_local(config)
    else:
        raise ConfigError(
            f"executor {config.cluster.executor!r} is not available; use 'local' or 'slurm'"
        )
    return time.perf_counter() - t0
