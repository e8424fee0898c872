"""Segmenting canonical CTs with trained models (strategy 2, or strategy-1 ensembles)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from orgseg.core.body import body_mask
from orgseg.core.crop import CropBox, bounding_box, crop, uncrop
from orgseg.core.volume import Volume
from orgseg.errors import DataContractError
from orgseg.nnunet.predict import Predictor

log = logging.getLogger(__name__)

MODEL_INFO = "orgseg_model.json"


class MultiLabelModel:
    """A strategy-2 model folder (``orgseg_model.json`` + nnU-Net folds), loaded once."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        folds: Sequence[int] | None = None,
        device: str = "cpu",
        use_mirroring: bool = False,
        tile_step_size: float = 0.5,
    ) -> None:
        model_dir = Path(model_dir)
        info_file = model_dir / MODEL_INFO
        if not info_file.exists():
            raise DataContractError(
                f"{model_dir}: no {MODEL_INFO}; expected an orgseg model folder (as written "
                "to <run_root>/models/strategy2 by train-all)"
            )
        self.info = json.loads(info_file.read_text())
        self.predictor = Predictor(
            model_dir,
            folds=folds,
            device=device,
            use_mirroring=use_mirroring,
            tile_step_size=tile_step_size,
        )
        train_ids = self.info["training_ids"]
        catalog = self.info["catalog_ids"]
        lut = np.zeros(max(train_ids.values()) + 1, dtype=np.uint8)
        for organ, tid in train_ids.items():
            lut[tid] = catalog[organ]
        self.lut = lut
        self.labels: dict[str, int] = {o: int(catalog[o]) for o in self.info["organs"]}

    def crop_box(self, ct: Volume) -> CropBox:
        crop_cfg = self.info.get("body_crop", {"enabled": True, "margin_mm": 10.0})
        if not crop_cfg["enabled"]:
            return CropBox((0, 0, 0), ct.shape, ct.shape)
        body = body_mask(ct.array, spacing_mm=ct.spacing_mm)
        return bounding_box(body, spacing_mm=ct.spacing_mm, margin_mm=crop_cfg["margin_mm"])

    def segment(self, ct: Volume) -> np.ndarray:
        """Catalog-id label map of a canonical CT, on its full grid."""
        box = self.crop_box(ct)
        seg = self.predictor.predict(np.asarray(crop(ct.array, box)), ct.spacing_mm)
        return uncrop(self.lut[seg], box)
