"""Prediction with a trained nnU-Net model folder (any subset of folds, ensembled)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from orgseg.errors import DataContractError
from orgseg.nnunet.env import nnunet_output_to_log

log = logging.getLogger(__name__)


class Predictor:
    """Loads a model folder's folds once; predicts any number of canonical CT arrays."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        folds: Sequence[int] | None = None,
        device: str = "cpu",
        use_mirroring: bool = False,
        tile_step_size: float = 0.5,
        checkpoint: str = "checkpoint_final.pth",
    ) -> None:
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        model_dir = Path(model_dir)
        available = sorted(
            int(p.name.split("_")[1]) for p in model_dir.glob("fold_*") if (p / checkpoint).exists()
        )
        if not available:
            raise DataContractError(
                f"{model_dir}: no fold_*/{checkpoint} found; expected a trained nnU-Net "
                "model folder (dataset.json, plans.json, fold_N/)"
            )
        folds = tuple(folds) if folds is not None else tuple(available)
        missing = sorted(set(folds) - set(available))
        if missing:
            raise DataContractError(
                f"{model_dir}: folds {missing} are not trained; available folds: {available}"
            )
        self.folds = folds
        self.model_dir = model_dir
        self._predictor = nnUNetPredictor(
            tile_step_size=tile_step_size,
            use_gaussian=True,
            use_mirroring=use_mirroring,
            perform_everything_on_device=device == "cuda",
            device=torch.device(device),
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        with nnunet_output_to_log():
            self._predictor.initialize_from_trained_model_folder(
                str(model_dir), use_folds=folds, checkpoint_name=checkpoint
            )
        self.n_classes = len(self._predictor.dataset_json["labels"])
        self.labels: dict[str, int] = {
            k: int(v)
            for k, v in self._predictor.dataset_json["labels"].items()
            if k != "background"
        }
        log.info("loaded %s folds %s", model_dir, list(folds))

    def predict(
        self, ct: np.ndarray, spacing_mm: Sequence[float], *, probabilities: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Segment a canonical (z, y, x) CT; optionally also return class probabilities."""
        image = np.asarray(ct, dtype=np.float32)[None]
        props = {"spacing": [float(s) for s in spacing_mm]}
        with nnunet_output_to_log():
            out = self._predictor.predict_single_npy_array(
                image, props, None, None, save_or_return_probabilities=probabilities
            )
        if probabilities:
            seg, probs = out
            return np.asarray(seg, dtype=np.uint8), np.asarray(probs, dtype=np.float32)
        return np.asarray(out, dtype=np.uint8)

    def predict_probabilities(self, ct: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
        """Class probabilities (n_classes, z, y, x), float32, on the input's grid.

        nnU-Net's own path for one block: preprocessing (resampling to the model's spacing,
        normalisation), sliding-window prediction averaged over the loaded folds, logits
        resampled back to the block's grid, softmax. The caller bounds the block's size.
        """
        from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
        from nnunetv2.inference.export_prediction import (
            convert_predicted_logits_to_segmentation_with_correct_shape,
        )

        p = self._predictor
        image = np.asarray(ct, dtype=np.float32)[None]
        props = {"spacing": [float(s) for s in spacing_mm]}
        with nnunet_output_to_log():
            pre = next(
                PreprocessAdapterFromNpy(
                    [image],
                    [None],
                    [props],
                    [None],
                    p.plans_manager,
                    p.dataset_json,
                    p.configuration_manager,
                    num_threads_in_multithreaded=1,
                    verbose=False,
                )
            )
            del image
            logits = p.predict_logits_from_preprocessed_data(pre["data"]).cpu()
            del pre["data"]
            _, probs = convert_predicted_logits_to_segmentation_with_correct_shape(
                logits,
                p.plans_manager,
                p.configuration_manager,
                p.label_manager,
                pre["data_properties"],
                return_probabilities=True,
            )
        return np.asarray(probs, dtype=np.float32)
