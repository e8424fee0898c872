"""Prediction with a trained nnU-Net model folder (any subset of folds, ensembled)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from orgseg.defaults import TILE_STEP
from orgseg.errors import DataContractError
from orgseg.nnunet.datasets import IGNORE_LABEL
from orgseg.nnunet.env import nnunet_output_to_log
from orgseg.nnunet.export import slab_export_mode
from orgseg.nnunet.folder import (
    FolderPlan,
    WeightsMismatchError,
    build_networks,
    load_checkpoint,
    patch_extent_mm,
    read_folder,
    scan_spacing_mm,
)

log = logging.getLogger(__name__)


class Predictor:
    """Loads a model folder's folds once; predicts any number of canonical CT arrays.

    Everything is read from the folder here, so it may go away afterwards (a model staged
    from a bucket into scratch is deleted once loaded). The plans, labels and the folds'
    networks are read without nnU-Net's predictor: the streamed engine needs nothing else
    (:meth:`fold_networks`). nnU-Net's own predictor is built from them, in memory, on
    first use of the whole-scan paths (:meth:`predict`, :meth:`predict_logits`); a
    folder whose networks only nnU-Net can build is loaded by it here."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        folds: Sequence[int] | None = None,
        device: str = "cpu",
        use_mirroring: bool = False,
        tile_step_size: float = TILE_STEP,
        checkpoint: str = "checkpoint_final.pth",
    ) -> None:
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
        self.device = device
        self.use_mirroring = use_mirroring
        self.tile_step_size = tile_step_size
        self._checkpoint = checkpoint
        self.plan: FolderPlan = read_folder(model_dir, folds[0], checkpoint)
        self._nets: list | None = None
        self._stock = None
        if self.plan.lean:
            import torch

            try:
                self._nets = build_networks(self.plan, folds, checkpoint, torch.device(device))
            except WeightsMismatchError as exc:
                log.info("%s; loading it with nnU-Net's own predictor", exc)
        if self._nets is None:
            self._stock = self._stock_from_folder()
        # a model trained with nnU-Net's ignore label predicts every label but that one
        self.labels: dict[str, int] = {
            k: int(v) for k, v in self.plan.labels.items() if k not in ("background", IGNORE_LABEL)
        }
        self.n_classes = len(self.labels) + 1
        log.info("loaded %s folds %s", model_dir, list(folds))

    @property
    def mirror_axes(self) -> tuple[int, ...] | None:
        """The axes test-time mirroring flips (None when mirroring is off, or when the
        checkpoint names none: nnU-Net then does not mirror either)."""
        return self.plan.mirror_axes if self.use_mirroring else None

    def _new_stock(self):  # noqa: ANN202 - an uninitialised nnUNetPredictor
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        return nnUNetPredictor(
            tile_step_size=self.tile_step_size,
            use_gaussian=True,
            use_mirroring=self.use_mirroring,
            perform_everything_on_device=self.device == "cuda",
            device=torch.device(self.device),
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )

    def _stock_from_folder(self):  # noqa: ANN202 - nnU-Net's predictor
        """nnU-Net's predictor with the network its trainer class builds (a trainer with
        its own network), as ``initialize_from_trained_model_folder`` does, but finding
        the trainer without failing on unrelated trainer modules whose optional
        dependencies do not import here."""
        import inspect

        import torch
        from nnunetv2.utilities.label_handling.label_handling import (
            determine_num_input_channels,
        )
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        plan = self.plan
        try:
            trainer = find_trainer_class(plan.trainer_name)
            plans = PlansManager(copy.deepcopy(plan.plans))
            conf = plans.get_configuration(plan.configuration_name)
            n_in = determine_num_input_channels(plans, conf, plan.dataset)
            n_out = plans.get_label_manager(plan.dataset).num_segmentation_heads
            if "plans_manager" in inspect.signature(trainer.build_network_architecture).parameters:
                net = trainer.build_network_architecture(
                    plans, conf, n_in, n_out, enable_deep_supervision=False
                )
            else:
                net = trainer.build_network_architecture(
                    conf.network_arch_class_name, conf.network_arch_init_kwargs,
                    conf.network_arch_init_kwargs_req_import, n_in, n_out,
                    enable_deep_supervision=False,
                )  # fmt: skip
            weights = []
            for fold in self.folds:
                ckpt = load_checkpoint(self.model_dir / f"fold_{fold}" / self._checkpoint)
                weights.append(ckpt["network_weights"])
            net.load_state_dict(weights[0])
            stock = self._new_stock()
            with nnunet_output_to_log():
                stock.manual_initialization(
                    net.to(torch.device(self.device)), plans, conf, weights,
                    copy.deepcopy(plan.dataset), plan.trainer_name, plan.mirror_axes,
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - nnU-Net raises anything here
            raise DataContractError(
                f"{self.model_dir}: neither orgseg nor nnU-Net can load this folder (trainer "
                f"{plan.trainer_name}, network "
                f"{plan.configuration.get('architecture', {}).get('network_class_name', '?')}, "
                f"configuration {plan.configuration_name}; nnU-Net said: "
                f"{type(exc).__name__}: {str(exc).strip()[:200]}). Supported: nnU-Net v2 "
                "folders of nnUNetTrainer or a variant that keeps its network "
                "(NoMirroring, _<N>epochs, DA5), or a trainer class installed in nnU-Net's "
                "nnunetv2.training.nnUNetTrainer package"
            ) from None
        return stock

    @property
    def nnunet(self):  # noqa: ANN201 - nnU-Net's own loaded predictor
        """nnU-Net's ``nnUNetPredictor`` holding the loaded folds, built on first use from
        what is already in memory (the folder is not read again)."""
        if self._stock is None:
            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

            assert self._nets is not None
            plans = PlansManager(copy.deepcopy(self.plan.plans))
            stock = self._new_stock()
            stock.manual_initialization(
                copy.deepcopy(self._nets[0]),
                plans,
                plans.get_configuration(self.plan.configuration_name),
                [net.state_dict() for net in self._nets],
                copy.deepcopy(self.plan.dataset),
                self.plan.trainer_name,
                self.plan.mirror_axes,
            )
            self._stock = stock
        return self._stock

    def predict(
        self, ct: np.ndarray, spacing_mm: Sequence[float], *, probabilities: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Segment a canonical (z, y, x) CT; optionally also return class probabilities."""
        image = np.asarray(ct, dtype=np.float32)[None]
        props = {"spacing": [float(s) for s in spacing_mm]}
        with nnunet_output_to_log():
            out = self.nnunet.predict_single_npy_array(
                image, props, None, None, save_or_return_probabilities=probabilities
            )
        if probabilities:
            seg, probs = out
            return np.asarray(seg, dtype=np.uint8), np.asarray(probs, dtype=np.float32)
        return np.asarray(out, dtype=np.uint8)

    @property
    def patch_extent_mm(self) -> tuple[float, float, float]:
        """Extent of the network's patch in mm, in the scan's (z, y, x) order."""
        return patch_extent_mm(self.plan)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """The network's voxel spacing in the scan's (z, y, x) order."""
        return scan_spacing_mm(self.plan)  # type: ignore[return-value]

    def predict_logits(
        self, ct: np.ndarray, spacing_mm: Sequence[float]
    ) -> tuple[np.ndarray, dict]:
        """nnU-Net's preprocessing and sliding window (folds averaged): logits on the model's
        grid, (n_classes, z', y', x') float32, with nnU-Net's properties of the block."""
        from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy

        p = self.nnunet
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
            logits = p.predict_logits_from_preprocessed_data(pre["data"]).cpu().numpy()
        return np.asarray(logits, dtype=np.float32), pre["data_properties"]

    def fold_networks(self) -> list:
        """One network per fold on the device, built once and kept (streaming many scans
        with one ensemble must not rebuild them per scan)."""
        if self._nets is None:  # a folder only nnU-Net could load
            self._nets = _stock_fold_networks(self.nnunet)
        return self._nets

    def _slab_export_mode(self, props: dict) -> str | None:
        return slab_export_mode(self.plan, props["spacing"])

    def predict_slabs(
        self, ct: np.ndarray, spacing_mm: Sequence[float], *, slab_rows: int = 16
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Class probabilities on the block's grid, ``slab_rows`` rows at a time.

        Yields ``(first row, probabilities (n_classes, rows, y, x) float32)``. The logits
        are resampled back exactly as nnU-Net's export does (same grid convention and
        interpolation), but one slab at a time, so the block's classes x voxels array never
        exists. Models whose export cannot be reproduced (other resampling, region-based
        labels, transposed axes) fall back to nnU-Net's own export of the whole block.
        """
        from orgseg.core.resample import resize_rows

        logits, props = self.predict_logits(ct, spacing_mm)
        mode = self._slab_export_mode(props)
        shape = tuple(int(s) for s in np.shape(ct))
        if mode is None:
            log.debug("slab export not reproducible for this model: nnU-Net's export")
            probs = self._export_whole(logits, props)
            for a in range(0, shape[0], slab_rows):
                yield a, probs[:, a : a + slab_rows]
            return
        bbox = [tuple(int(v) for v in b) for b in props["bbox_used_for_cropping"]]
        cropped = tuple(int(s) for s in props["shape_after_cropping_and_before_resampling"])
        (z0, z1), (y0, y1), (x0, x1) = bbox
        for a in range(0, shape[0], slab_rows):
            b = min(shape[0], a + slab_rows)
            out = np.zeros((self.n_classes, b - a, shape[1], shape[2]), dtype=np.float32)
            out[0] = 1.0  # outside nnU-Net's crop: background
            lo, hi = max(a, z0), min(b, z1)
            if lo < hi:
                scores = resize_rows(logits, cropped, (lo - z0, hi - z0), axis0=mode)
                scores -= scores.max(axis=0, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(axis=0, keepdims=True)
                out[:, lo - a : hi - a, y0:y1, x0:x1] = scores
            yield a, out

    def _export_whole(self, logits: np.ndarray, props: dict) -> np.ndarray:
        import torch
        from nnunetv2.inference.export_prediction import (
            convert_predicted_logits_to_segmentation_with_correct_shape,
        )

        p = self.nnunet
        with nnunet_output_to_log():
            _, probs = convert_predicted_logits_to_segmentation_with_correct_shape(
                torch.from_numpy(logits),
                p.plans_manager,
                p.configuration_manager,
                p.label_manager,
                props,
                return_probabilities=True,
            )
        return np.asarray(probs, dtype=np.float32)


def find_trainer_class(name: str) -> type:
    """The trainer class called ``name`` in nnU-Net's trainer package (what nnU-Net's
    ``recursive_find_trainer_class_by_name`` finds), skipping modules that fail to import
    (a variant whose optional dependency is missing must not hide every other trainer)."""
    import importlib
    import pkgutil

    import nnunetv2.training.nnUNetTrainer as package

    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            module = importlib.import_module(info.name)
        except Exception as exc:  # noqa: BLE001 - any import failure of an unrelated variant
            log.debug("trainer module %s does not import: %s", info.name, exc)
            continue
        found = getattr(module, name, None)
        if isinstance(found, type):
            return found
    raise DataContractError(
        f"no trainer class {name!r} in nnU-Net's nnunetv2.training.nnUNetTrainer package; "
        "install the package that defines it"
    )


def _stock_fold_networks(p) -> list:  # noqa: ANN001 - nnU-Net's predictor
    """One network per fold from nnU-Net's predictor (which keeps one network and loads
    each fold's weights into it per scan)."""
    from torch._dynamo import OptimizedModule

    base = p.network._orig_mod if isinstance(p.network, OptimizedModule) else p.network
    nets = []
    for params in p.list_of_parameters:
        net = copy.deepcopy(base)
        net.load_state_dict(params)
        nets.append(net.to(p.device).eval())
    return nets
