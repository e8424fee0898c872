"""nnU-Net's own predictor for a result folder, built with nnU-Net's classes alone (its
PlansManager, which also converts pre-``architecture`` plans, and the default trainer's
network builder, which the NoMirroring, N-epochs and DA5 trainers inherit): the reference
orgseg's outputs are compared with. Nothing of orgseg's loading path is used here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def stock_predictor(
    folder: Path, *, folds: Sequence[int] = (0,), mirroring: bool = False, step: float = 0.5
):  # noqa: ANN201 - nnU-Net's nnUNetPredictor
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(json.loads((folder / "plans.json").read_text()))
    dataset = json.loads((folder / "dataset.json").read_text())
    checkpoints = [
        torch.load(folder / f"fold_{f}" / "checkpoint_final.pth", map_location="cpu",
                   weights_only=False)
        for f in folds
    ]  # fmt: skip
    conf = plans.get_configuration(checkpoints[0]["init_args"]["configuration"])
    network = nnUNetTrainer.build_network_architecture(
        plans,
        conf,
        determine_num_input_channels(plans, conf, dataset),
        plans.get_label_manager(dataset).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    predictor = nnUNetPredictor(
        tile_step_size=step,
        use_gaussian=True,
        use_mirroring=mirroring,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        plans,
        conf,
        [c["network_weights"] for c in checkpoints],
        dataset,
        checkpoints[0]["trainer_name"],
        checkpoints[0].get("inference_allowed_mirroring_axes"),
    )
    return predictor


def stock_labels(predictor, ct_hu: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:  # noqa: ANN001
    """nnU-Net's label map (its own training label values) for a (z, y, x) CT."""
    out = predictor.predict_single_npy_array(
        np.asarray(ct_hu, dtype=np.float32)[None],
        {"spacing": [float(s) for s in spacing_mm]},
        None,
        None,
        False,
    )
    return np.asarray(out, dtype=np.uint8)


def label_names(folder: Path) -> dict[int, str]:
    """dataset.json's labels by value (background left out)."""
    labels = json.loads((folder / "dataset.json").read_text())["labels"]
    return {int(v): k for k, v in labels.items() if k != "background"}
