"""A trained model folder, loaded once: an orgseg model or a plain nnU-Net results folder.

An orgseg model folder (``orgseg_model.json`` beside nnU-Net's ``dataset.json``,
``plans.json`` and ``fold_N/``, as exported by ``train-all``) maps nnU-Net's training ids to
catalog label ids and names the organs. A plain nnU-Net model folder is accepted too: its
``dataset.json`` labels are used as they are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orgseg.errors import DataContractError
from orgseg.inference.options import DEFAULT_TILE_STEP
from orgseg.nnunet.predict import Predictor

log = logging.getLogger(__name__)

MODEL_INFO = "orgseg_model.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelOptions:
    folds: tuple[int, ...] | None = None  # None: every trained fold (or the set's folds)
    device: str = "cpu"
    #: test-time mirroring (None: off, or the model set's own setting)
    use_mirroring: bool | None = None
    #: sliding-window step (None: DEFAULT_TILE_STEP, or the model set's own setting)
    tile_step_size: float | None = None
    threads: int | None = None
    #: model sets: "native" (the set's own classes) or "orgseg" (the organ catalog)
    classes: str = "native"


class SegmentationModel:
    """Predictor + label names: ``labels`` maps organ -> id in our output label maps."""

    def __init__(self, model_dir: str | Path, options: ModelOptions = ModelOptions()) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "dataset.json").exists():
            raise DataContractError(
                f"{model_dir}: no dataset.json; expected a trained model folder (an orgseg "
                "model such as <run_root>/models/strategy2, or an nnU-Net results folder "
                "with dataset.json, plans.json and fold_N/)"
            )
        if options.threads is not None:
            import torch

            torch.set_num_threads(max(1, options.threads))
        self.predictor = Predictor(
            model_dir,
            folds=options.folds,
            device=options.device,
            use_mirroring=bool(options.use_mirroring),
            tile_step_size=DEFAULT_TILE_STEP
            if options.tile_step_size is None
            else options.tile_step_size,
        )
        info_file = model_dir / MODEL_INFO
        self.info: dict = json.loads(info_file.read_text()) if info_file.exists() else {}
        if self.info:
            train_ids = {str(k): int(v) for k, v in self.info["training_ids"].items()}
            output_ids = {str(k): int(v) for k, v in self.info["catalog_ids"].items()}
            organs = list(self.info["organs"])
        else:
            train_ids = dict(self.predictor.labels)
            output_ids = dict(train_ids)
            organs = list(train_ids)
        lut = np.zeros(self.predictor.n_classes, dtype=np.uint8)
        for organ in organs:
            lut[train_ids[organ]] = output_ids[organ]
        self.lut = lut
        self.labels: dict[str, int] = {o: output_ids[o] for o in organs}
        self.model_dir = model_dir

    @property
    def n_classes(self) -> int:
        return self.predictor.n_classes

    @property
    def folds(self) -> Sequence[int]:
        return self.predictor.folds

    def predict_slabs(
        self, ct: np.ndarray, spacing_mm: Sequence[float], *, slab_rows: int = 16
    ) -> Iterator[tuple[int, np.ndarray]]:
        return self.predictor.predict_slabs(ct, spacing_mm, slab_rows=slab_rows)

    def stream_labels(
        self, ct: np.ndarray, spacing_mm: Sequence[float], **kwargs
    ) -> Iterator[tuple[int, int, tuple[slice, slice], np.ndarray]]:
        """nnU-Net's whole-scan sliding window, a tile row at a time (exact)."""
        from orgseg.nnunet.stream import stream_labels

        p = self.predictor
        return stream_labels(
            p.plan,
            p.fold_networks(),
            ct,
            spacing_mm,
            device=p.device,
            tile_step_size=p.tile_step_size,
            mirror_axes=p.mirror_axes,
            **kwargs,
        )

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.predictor.spacing_mm

    @property
    def patch_extent_mm(self) -> tuple[float, float, float]:
        """The network's patch in mm (z, y, x): blocks smaller than it would be padded."""
        return self.predictor.patch_extent_mm


def export_model(
    source: Path,
    target: Path,
    *,
    folds: Sequence[int],
    organs: Sequence[str],
    training_ids: dict[str, int],
    output_ids: dict[str, int],
    extra: dict | None = None,
) -> Path:
    """Copy trained nnU-Net folds into an orgseg model folder (committed by a rename)."""
    import shutil

    missing = [f for f in folds if not (source / f"fold_{f}" / "checkpoint_final.pth").exists()]
    if missing:
        raise DataContractError(f"{source}: folds {missing} have no checkpoint_final.pth")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in ("dataset.json", "plans.json", "dataset_fingerprint.json"):
        if (source / f).exists():
            shutil.copy(source / f, tmp / f)
    for fold in folds:
        (tmp / f"fold_{fold}").mkdir()
        shutil.copy(source / f"fold_{fold}" / "checkpoint_final.pth", tmp / f"fold_{fold}")
    info = {
        "organs": list(organs),
        "training_ids": dict(training_ids),
        "catalog_ids": dict(output_ids),
        "folds": list(folds),
        **(extra or {}),
    }
    (tmp / MODEL_INFO).write_text(json.dumps(info, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    log.info("model exported to %s", target)
    return target
