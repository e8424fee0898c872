"""A small real nnU-Net model trained on phantoms, for tests, the benchmarks and trying
``orgseg segment`` without real data. Not a clinical model: it knows phantoms only."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orgseg.catalog import label_ids
from orgseg.config import TrainingConfig
from orgseg.core.volume import Volume
from orgseg.io import write_volume
from orgseg.nnunet.datasets import (
    dataset_name,
    image_path,
    label_path,
    make_dataset_json,
    write_dataset_json,
    write_splits,
)
from orgseg.nnunet.env import NnunetPaths
from orgseg.nnunet.plan import plan_and_preprocess
from orgseg.nnunet.train import model_folder, train_unit
from orgseg.phantoms import make_phantom

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PhantomModelConfig:
    #: organs the model outputs; those the phantoms lack are outputs that never fire
    organs: tuple[str, ...] = ("heart", "liver", "lungs", "spleen", "vertebrae")
    n_cases: int = 6
    #: grid of the phantoms, cycled through the cases (several: scans of several lengths)
    shapes: tuple[tuple[int, int, int], ...] = ((48, 64, 64),)
    spacing_mm: tuple[float, float, float] = (8.0, 7.5, 7.5)
    extent: str = "torso"
    features_scale: float = 0.5
    #: None: nnU-Net's planned patch; else (z, y, x), a multiple of the downsampling
    patch_size: tuple[int, int, int] | None = None
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(
            epochs=4,
            iterations_per_epoch=25,
            val_iterations_per_epoch=2,
            folds=(0,),
            save_every_epochs=100,
            initial_lr=0.1,
            momentum=0.9,
        )
    )
    dataset_id: int = 990
    seed: int = 0


def train_phantom_model(work_dir: str | Path, config: PhantomModelConfig) -> Path:
    """Generate phantoms, train fold 0, export an orgseg model to ``work_dir/model``."""
    from orgseg.inference.model import export_model

    work = Path(work_dir)
    target = work / "model"
    if (target / "orgseg_model.json").exists():
        return target
    paths = NnunetPaths(work / "nnunet").make()
    name = dataset_name(config.dataset_id, "Phantoms")
    raw = paths.raw / name
    catalog = label_ids(config.organs)
    train_ids = {o: i + 1 for i, o in enumerate(config.organs)}
    cases = []
    for i in range(config.n_cases):
        ph = make_phantom(
            shape=config.shapes[i % len(config.shapes)],
            spacing_mm=config.spacing_mm,
            seed=config.seed + i,
            extent=config.extent,  # type: ignore[arg-type]
        )
        lab = np.zeros(ph.labels.shape, np.uint8)
        for organ, tid in train_ids.items():
            if organ in ph.label_ids:
                lab[ph.labels == ph.label_ids[organ]] = tid
        case_id = f"phantom_{i:03d}"
        ct = Volume(ph.ct_hu, spacing_mm=ph.spacing_mm)
        write_volume(ct, str(image_path(raw, case_id)))
        write_volume(ct.with_array(lab), str(label_path(raw, case_id)))
        cases.append(case_id)
    write_dataset_json(
        raw,
        make_dataset_json(labels=train_ids, n_training=len(cases), description="phantoms"),
    )
    configuration = plan_and_preprocess(
        paths,
        config.dataset_id,
        configuration="3d_fullres",
        features_scale=config.features_scale,
        patch_size=config.patch_size,
    )
    n_val = max(1, len(cases) // 5)
    write_splits(paths.preprocessed / name, [{"train": cases[n_val:], "val": cases[:n_val]}])
    result = train_unit(
        paths, name, 0, configuration=configuration, training=config.training, seed=config.seed
    )
    log.info("phantom model: validation Dice %s", json.dumps(result.per_label_dice))
    return export_model(
        model_folder(paths, name, configuration),
        target,
        folds=(0,),
        organs=config.organs,
        training_ids=train_ids,
        output_ids=catalog,
        extra={"cv_dice": {"0": result.val_dice}, "phantom_model": True},
    )
