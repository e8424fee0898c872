"""Cross-validation tables (the paper's Table 1) from nnU-Net's per-fold validation.

nnU-Net writes ``fold_<k>/validation/summary.json`` in a trained model folder, with
per-case Dice and IoU for every label, and copies ``dataset.json`` (label names) next to
the folds. Strategy 1 has one such folder per organ, strategy 2 one folder for all
organs; both go into one table, a column per strategy.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orgseg.core.significance import mean_sd
from orgseg.errors import DataContractError
from orgseg.evaluation.tables import Table, mean_sd_text, organ_order
from orgseg.io import exists, join_url, read_bytes
from orgseg.io.storage import list_entries

log = logging.getLogger(__name__)

CV_COLUMNS = ("strategy", "organ", "folds", "n", "dice_mean", "dice_sd", "iou_mean", "iou_sd")


@dataclass(frozen=True, slots=True, kw_only=True)
class FoldCase:
    """One validation case of one fold, for one label."""

    organ: str
    fold: int
    case: str
    dice: float
    iou: float


def _label_names(model_dir: str) -> dict[str, str]:
    """nnU-Net's summary key of each label (``"1"``) -> its name in dataset.json."""
    url = join_url(model_dir, "dataset.json")
    if not exists(url):
        raise DataContractError(
            f"{model_dir}: expected nnU-Net's dataset.json in the model folder (the trainer "
            "output folder, e.g. .../nnUNetTrainer__nnUNetPlans__3d_fullres)"
        )
    labels = json.loads(read_bytes(url))["labels"]
    out = {}
    for name, value in labels.items():
        if name == "background":
            continue
        key = str(value) if isinstance(value, int) else str(tuple(value))
        out[key] = name
    return out


def _float(v: object) -> float:
    return math.nan if v is None else float(v)  # type: ignore[arg-type]


def read_fold_cases(model_dir: str) -> list[FoldCase]:
    """Per-case validation metrics of every finished fold in an nnU-Net model folder."""
    names = _label_names(model_dir)
    folds = sorted(
        int(n.split("_", 1)[1])
        for n, folder in list_entries(model_dir)
        if folder and n.startswith("fold_") and n.split("_", 1)[1].isdigit()
    )
    out: list[FoldCase] = []
    for fold in folds:
        url = join_url(model_dir, f"fold_{fold}", "validation", "summary.json")
        if not exists(url):
            log.warning("%s fold %d: no validation summary yet; left out", model_dir, fold)
            continue
        summary = json.loads(read_bytes(url))
        for entry in summary.get("metric_per_case", []):
            case = str(entry.get("reference_file", "")).rsplit("/", 1)[-1]
            case = case.split(".", 1)[0]
            for key, metrics in entry["metrics"].items():
                if key not in names:
                    continue
                out.append(
                    FoldCase(
                        organ=names[key],
                        fold=fold,
                        case=case,
                        dice=_float(metrics.get("Dice")),
                        iou=_float(metrics.get("IoU")),
                    )
                )
    if not out:
        raise DataContractError(
            f"{model_dir}: found no fold_<k>/validation/summary.json; train and validate at "
            "least one fold first"
        )
    return out


def cv_rows(strategies: Mapping[str, Sequence[FoldCase]]) -> list[dict[str, object]]:
    """Mean +- sd over validation cases (pooled over folds) per (strategy, organ)."""
    out = []
    for strategy, cases in strategies.items():
        for organ in sorted({c.organ for c in cases}, key=organ_order):
            mine = [c for c in cases if c.organ == organ]
            dice_mean, dice_sd = mean_sd([c.dice for c in mine])
            iou_mean, iou_sd = mean_sd([c.iou for c in mine])
            out.append(
                {
                    "strategy": strategy,
                    "organ": organ,
                    "folds": " ".join(str(f) for f in sorted({c.fold for c in mine})),
                    "n": len(mine),
                    "dice_mean": dice_mean,
                    "dice_sd": dice_sd,
                    "iou_mean": iou_mean,
                    "iou_sd": iou_sd,
                }
            )
    return out


def cv_table(rows: Sequence[Mapping[str, object]]) -> Table:
    """organ | per strategy: Dice mean ± sd (n validation cases)."""
    strategies = list(dict.fromkeys(str(r["strategy"]) for r in rows))
    organs = sorted({str(r["organ"]) for r in rows}, key=organ_order)
    index = {(str(r["strategy"]), str(r["organ"])): r for r in rows}
    body = []
    for organ in organs:
        cells = [organ]
        for s in strategies:
            r = index.get((s, organ))
            cells.append(
                "-"
                if r is None
                else f"{mean_sd_text(r['dice_mean'], r['dice_sd'], 3)} (n={r['n']})"  # type: ignore[arg-type]
            )
        body.append(tuple(cells))
    return Table(
        title="Cross-validation Dice (nnU-Net validation folds)",
        columns=("organ", *(f"{s} Dice" for s in strategies)),
        rows=tuple(body),
        note="Mean ± sd over the validation cases of all trained folds (sd with n-1).",
    )
