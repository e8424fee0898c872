"""One training unit: (dataset, fold) on nnU-Net's plain ``nnUNetTrainer``.

Budgets come from config and are set on the trainer instance, so no trainer subclass per
value exists. A unit that finds ``checkpoint_latest.pth`` resumes from it (spot nodes
depend on this); a finished unit (our marker written after validation) is skipped.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from orgseg.errors import JobError
from orgseg.nnunet.budget import TrainingConfig
from orgseg.nnunet.env import NnunetPaths, nnunet_env, nnunet_output_to_log
from orgseg.nnunet.plan import PLANS

log = logging.getLogger(__name__)

TRAINER = "nnUNetTrainer"
UNIT_MARKER = "orgseg_unit.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitResult:
    dataset: str
    fold: int
    val_dice: float
    per_label_dice: dict[str, float]
    epochs: int
    seconds: float
    resumed_from_epoch: int
    output_folder: str


def model_folder(paths: NnunetPaths, dataset: str, configuration: str) -> Path:
    return paths.results / dataset / f"{TRAINER}__{PLANS}__{configuration}"


def model_folder_url(root_url: str, dataset: str, configuration: str) -> str:
    """:func:`model_folder` under a committed nnU-Net root that may be a URL."""
    return f"{root_url.rstrip('/')}/results/{dataset}/{TRAINER}__{PLANS}__{configuration}"


def read_unit(paths: NnunetPaths, dataset: str, configuration: str, fold: int) -> UnitResult | None:
    marker = model_folder(paths, dataset, configuration) / f"fold_{fold}" / UNIT_MARKER
    if not marker.exists():
        return None
    return UnitResult(**json.loads(marker.read_text()))


def train_unit(
    paths: NnunetPaths,
    dataset: str,
    fold: int,
    *,
    configuration: str,
    training: TrainingConfig,
    device: str = "cpu",
    seed: int = 0,
) -> UnitResult:
    """Train (or resume, or skip) one fold of one dataset and validate it."""
    done = read_unit(paths, dataset, configuration, fold)
    if done is not None:
        log.info("train %s fold %d: already done (val Dice %.3f)", dataset, fold, done.val_dice)
        return done
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    t0 = time.perf_counter()
    with nnunet_env(paths, training=True):
        pre = paths.preprocessed / dataset
        plans = json.loads((pre / f"{PLANS}.json").read_text())
        dataset_json = json.loads((pre / "dataset.json").read_text())
        plans["continue_training"] = False  # nnU-Net pops this key; resuming is ours
        _seed_everything(seed * 1000 + fold)
        with nnunet_output_to_log():
            trainer = nnUNetTrainer(
                plans=plans,
                configuration=configuration,
                fold=fold,
                dataset_json=dataset_json,
                device=torch.device(device),
            )
        trainer.num_epochs = training.epochs
        trainer.num_iterations_per_epoch = training.iterations_per_epoch
        trainer.num_val_iterations_per_epoch = training.val_iterations_per_epoch
        trainer.save_every = max(1, training.save_every_epochs)
        trainer.initial_lr = training.initial_lr
        out = Path(trainer.output_folder)
        resumed_from = 0
        with nnunet_output_to_log():
            trainer.initialize()
            for group in trainer.optimizer.param_groups:
                group["momentum"] = training.momentum
            if (out / "checkpoint_final.pth").exists():
                trainer.load_checkpoint(str(out / "checkpoint_final.pth"))
                resumed_from = trainer.current_epoch
            else:
                for name in ("checkpoint_latest.pth", "checkpoint_best.pth"):
                    if not (out / name).exists():
                        continue
                    try:
                        trainer.load_checkpoint(str(out / name))
                    except (RuntimeError, EOFError, OSError) as exc:
                        # a save cut short by a preemption leaves a torn file behind
                        log.warning(
                            "train %s fold %d: %s unreadable (%s); trying an older one",
                            dataset, fold, name, exc,
                        )  # fmt: skip
                        continue
                    resumed_from = trainer.current_epoch
                    log.info(
                        "train %s fold %d: resuming at epoch %d from %s", dataset, fold,
                        resumed_from, name,
                    )  # fmt: skip
                    break
                log.info(
                    "train %s fold %d: %d epochs x %d iterations",
                    dataset,
                    fold,
                    training.epochs,
                    training.iterations_per_epoch,
                )
                trainer.run_training()
            trainer.perform_actual_validation(False)
    summary_file = out / "validation" / "summary.json"
    if not summary_file.exists():
        raise JobError(
            f"nnU-Net wrote no validation summary for {dataset} fold {fold} "
            f"(expected {summary_file})"
        )
    summary = json.loads(summary_file.read_text())
    per_label = {k: float(v["Dice"]) for k, v in summary.get("mean", {}).items()}
    result = UnitResult(
        dataset=dataset,
        fold=fold,
        val_dice=float(summary["foreground_mean"]["Dice"]),
        per_label_dice=per_label,
        epochs=training.epochs,
        seconds=round(time.perf_counter() - t0, 1),
        resumed_from_epoch=resumed_from,
        output_folder=str(out),
    )
    tmp = out / f".{UNIT_MARKER}.tmp"
    tmp.write_text(json.dumps(asdict(result)))
    tmp.replace(out / UNIT_MARKER)
    log.info(
        "train %s fold %d: done in %.0f s, val Dice %.3f",
        dataset,
        fold,
        result.seconds,
        result.val_dice,
    )
    return result


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
