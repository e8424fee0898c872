"""A trained nnU-Net model folder read without nnU-Net's predictor.

The streamed engine needs a folder's plans, labels and one network per fold. Reading them
through ``nnUNetPredictor`` costs a process ~250 MB before any voxel (its import pulls
pandas and nnU-Net's trainers; the trainer lookup imports every trainer module) and
seconds per model. Here the plans and ``dataset.json`` are read as JSON and the networks
are built from the plans as nnU-Net's default trainer builds them: for ``nnUNetTrainer``
and the variants that keep its network (``NoMirroring``, ``_<N>epochs``, the ``DA5``
augmentations: the published TotalSegmentator and MOOSE models, whose trainer names
nnU-Net itself may not ship). Plans written before nnU-Net's ``architecture`` key are
completed as nnU-Net completes them. Folders this cannot build (a trainer with its own
network, cascades) report ``lean = False``, and weights that do not load strictly raise
:class:`WeightsMismatchError`; their networks then come from nnU-Net's own predictor.

nnU-Net's geometric rules the engine reproduces (the model-grid shape, when z is resampled
separately, the tiles' Gaussian weights) are here too; tests check them against nnU-Net.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orgseg.errors import DataContractError

#: the trainer orgseg trains with
DEFAULT_TRAINER = "nnUNetTrainer"
#: trainer names whose network is nnU-Net's default one (they change the epochs, the
#: mirroring or the augmentation, not the network): nnUNetTrainer, nnUNetTrainerNoMirroring,
#: nnUNetTrainer_4000epochs_NoMirroring, nnUNetTrainer_2000_epochs_DA5NoMirroring,
#: nnUNetTrainerDA5, nnUNetTrainer_DASegOrd0, ...
DEFAULT_NETWORK_TRAINERS = re.compile(
    r"^nnUNetTrainer(_?\d+_?epochs)?(_?(NoMirroring|DA5|DA5ord0|DA5Segord0|DASegOrd0))*$",
    re.IGNORECASE,
)
#: network classes of pre-``architecture`` plans (``UNet_class_name``) and their modules
LEGACY_NETWORKS = {
    "PlainConvUNet": ("dynamic_network_architectures.architectures.unet.PlainConvUNet",
                      "n_conv_per_stage"),
    "ResidualEncoderUNet": (
        "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet",
        "n_blocks_per_stage",
    ),
}  # fmt: skip
#: nnU-Net's anisotropy threshold (``nnunetv2.configuration.ANISO_THRESHOLD``)
ANISO_THRESHOLD = 3.0


@dataclass(frozen=True, slots=True)
class FolderPlan:
    """What a model folder says about prediction: plans, labels, trainer, mirroring."""

    model_dir: Path
    configuration_name: str
    configuration: dict  # the plans' configuration, inheritance resolved
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    intensity_properties: dict  # channel "0"'s foreground intensity properties
    labels: dict  # dataset.json's labels
    n_inputs: int
    trainer_name: str
    #: axes nnU-Net's test-time mirroring may flip (None: the checkpoint does not say)
    mirror_axes: tuple[int, ...] | None
    plans: dict  # plans.json as read
    dataset: dict  # dataset.json as read

    @property
    def patch_size(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.configuration["patch_size"])

    @property
    def spacing_mm(self) -> tuple[float, ...]:
        """The model grid's spacing in the plans' axis order."""
        return tuple(float(v) for v in self.configuration["spacing"])

    @property
    def normalization_schemes(self) -> tuple[str, ...]:
        return tuple(self.configuration["normalization_schemes"])

    @property
    def has_regions(self) -> bool:
        return any(isinstance(v, (list, tuple)) for v in self.labels.values())

    @property
    def n_heads(self) -> int:
        """Network outputs: one per label but the ignore label (or one per region)."""
        if self.has_regions:
            return len([k for k in self.labels if k not in ("background", "ignore")])
        return len([k for k in self.labels if k != "ignore"])

    @property
    def lean(self) -> bool:
        """Whether :func:`build_networks` builds the networks as nnU-Net would (a strict
        load of the weights then confirms it)."""
        return (
            DEFAULT_NETWORK_TRAINERS.match(self.trainer_name) is not None
            and "architecture" in self.configuration
            and self.configuration.get("previous_stage") is None
        )


def with_architecture(configuration: dict) -> dict:
    """A configuration of plans written before nnU-Net's ``architecture`` key, completed
    the way nnU-Net's ``ConfigurationManager`` completes it (a plain or residual U-Net
    from ``UNet_class_name`` and the per-stage fields); others are returned as they are."""
    if "architecture" in configuration or "UNet_class_name" not in configuration:
        return configuration
    name = configuration["UNet_class_name"]
    if name not in LEGACY_NETWORKS:
        raise DataContractError(
            f"old-format plans name the network {name!r}; only {sorted(LEGACY_NETWORKS)} can "
            "be rebuilt from them (rerun nnUNetv2_plan_experiment for this dataset)"
        )
    network, blocks_key = LEGACY_NETWORKS[name]
    dim = len(configuration["patch_size"])
    n_stages = len(configuration["n_conv_per_stage_encoder"])
    base, top = configuration["UNet_base_num_features"], configuration["unet_max_num_features"]
    conv = "torch.nn.modules.conv.Conv3d" if dim == 3 else "torch.nn.modules.conv.Conv2d"
    norm = (
        "torch.nn.modules.instancenorm.InstanceNorm3d"
        if dim == 3
        else "torch.nn.modules.instancenorm.InstanceNorm2d"
    )
    legacy = (
        "UNet_class_name", "UNet_base_num_features", "n_conv_per_stage_encoder",
        "n_conv_per_stage_decoder", "num_pool_per_axis", "pool_op_kernel_sizes",
        "conv_kernel_sizes", "unet_max_num_features",
    )  # fmt: skip
    out = {k: v for k, v in configuration.items() if k not in legacy}
    out["architecture"] = {
        "network_class_name": network,
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": [min(base * 2**i, top) for i in range(n_stages)],
            "conv_op": conv,
            "kernel_sizes": configuration["conv_kernel_sizes"],
            "strides": configuration["pool_op_kernel_sizes"],
            blocks_key: configuration["n_conv_per_stage_encoder"],
            "n_conv_per_stage_decoder": configuration["n_conv_per_stage_decoder"],
            "conv_bias": True,
            "norm_op": norm,
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    return out


def _resolved(configurations: dict, name: str, seen: tuple[str, ...] = ()) -> dict:
    if name not in configurations:
        raise DataContractError(
            f"the plans have no configuration {name!r}; they have {sorted(configurations)}"
        )
    if name in seen:
        raise DataContractError(f"the plans' configurations inherit in a circle: {seen}")
    own = dict(configurations[name])
    parent = own.pop("inherits_from", None)
    if parent is None:
        return own
    return {**_resolved(configurations, parent, (*seen, name)), **own}


def load_checkpoint(path: Path) -> dict:
    """A checkpoint, memory-mapped: the optimizer state it carries is never read in."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError:  # the pre-zip format cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=False)


def read_folder(model_dir: Path, first_fold: int, checkpoint: str) -> FolderPlan:
    """The folder's plan; the trainer, configuration and mirroring from ``first_fold``'s
    checkpoint (as nnU-Net's predictor reads them)."""
    model_dir = Path(model_dir)
    dataset = json.loads((model_dir / "dataset.json").read_text())
    plans = json.loads((model_dir / "plans.json").read_text())
    ckpt = load_checkpoint(model_dir / f"fold_{first_fold}" / checkpoint)
    name = ckpt["init_args"]["configuration"]
    axes = ckpt.get("inference_allowed_mirroring_axes")
    props = plans.get("foreground_intensity_properties_per_channel") or plans.get(
        "foreground_intensity_properties_by_modality", {}
    )
    channels = dataset.get("modality", dataset.get("channel_names", {"0": "CT"}))
    return FolderPlan(
        model_dir=model_dir,
        configuration_name=name,
        configuration=with_architecture(_resolved(plans["configurations"], name)),
        transpose_forward=tuple(plans["transpose_forward"]),
        transpose_backward=tuple(plans["transpose_backward"]),
        intensity_properties=dict(props.get("0", {})),
        labels=dict(dataset["labels"]),
        n_inputs=len(channels),
        trainer_name=str(ckpt["trainer_name"]),
        mirror_axes=None if axes is None else tuple(int(a) for a in axes),
        plans=plans,
        dataset=dataset,
    )


class WeightsMismatchError(DataContractError):
    """A checkpoint's weights do not load strictly into the network built from the plans
    (the trainer changed the network): nnU-Net's own predictor must build it."""


def build_networks(plan: FolderPlan, folds: Sequence[int], checkpoint: str, device) -> list:
    """One network per fold with its weights, in eval mode on ``device`` (lean plans only).
    Raises :class:`WeightsMismatchError` when the weights do not load strictly."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    if not plan.lean:
        raise DataContractError(
            f"{plan.model_dir}: trainer {plan.trainer_name} or its plans need nnU-Net's own "
            "predictor to build the network"
        )
    arch = plan.configuration["architecture"]
    nets = []
    for fold in folds:
        net = get_network_from_plans(
            arch["network_class_name"],
            arch["arch_kwargs"],
            arch["_kw_requires_import"],
            plan.n_inputs,
            plan.n_heads,
            allow_init=True,
            deep_supervision=False,
        )
        ckpt = load_checkpoint(plan.model_dir / f"fold_{fold}" / checkpoint)
        try:
            net.load_state_dict(ckpt["network_weights"])
        except RuntimeError as exc:  # missing, unexpected or reshaped tensors
            lines = str(exc).strip().splitlines()
            first = lines[1].strip() if len(lines) > 1 else lines[0]
            raise WeightsMismatchError(
                f"{plan.model_dir} fold {fold}: trainer {plan.trainer_name}'s weights do not "
                f"fit the network its plans describe ({first})"
            ) from None
        del ckpt
        nets.append(net.to(device).eval())
    return nets


def mirrored_forward(net, x, mirror_axes: Sequence[int] | None):  # noqa: ANN001, ANN201
    """The network's logits for batch ``x``, averaged over test-time mirroring when
    ``mirror_axes`` (spatial axes) are given: ``x`` itself, then every combination of
    flips (one axis, two, ...), summed in that order and divided once, as nnU-Net does."""
    import torch

    out = net(x)
    if mirror_axes:
        axes = [int(a) + 2 for a in mirror_axes]
        combos = [c for k in range(1, len(axes) + 1) for c in itertools.combinations(axes, k)]
        for dims in combos:
            out += torch.flip(net(torch.flip(x, dims)), dims)
        out /= len(combos) + 1
    return out


def model_shape(
    shape: Sequence[int], spacing_mm: Sequence[float], target_mm: Sequence[float]
) -> tuple[int, ...]:
    """The model grid's shape for a block of ``shape`` at ``spacing_mm`` (nnU-Net rounds
    each axis's extent over the target spacing to the nearest integer)."""
    return tuple(
        int(round(s / t * n)) for n, s, t in zip(shape, spacing_mm, target_mm, strict=True)
    )


def _coarse_axis(spacing_mm: Sequence[float]) -> list[int]:
    top = max(spacing_mm)
    return [i for i, s in enumerate(spacing_mm) if top / s == 1]


def _anisotropic(spacing_mm: Sequence[float]) -> bool:
    return max(spacing_mm) / min(spacing_mm) > ANISO_THRESHOLD


def separate_z(
    force: bool | None, spacing_mm: Sequence[float], target_mm: Sequence[float]
) -> tuple[bool, int | None]:
    """Whether nnU-Net resamples one axis apart from the others, and which: forced by the
    plans, else the input's coarse axis when the input is anisotropic, else the target's
    when the target is; never when two or three axes share the coarsest spacing."""
    if force is not None:
        axes = _coarse_axis(spacing_mm) if force else []
    elif _anisotropic(spacing_mm):
        axes = _coarse_axis(spacing_mm)
    elif _anisotropic(target_mm):
        axes = _coarse_axis(target_mm)
    else:
        axes = []
    return (True, axes[0]) if len(axes) == 1 else (False, None)


def tile_weights(patch: Sequence[int], *, sigma_scale: float = 1.0 / 8, peak: float = 10.0):
    """The Gaussian weight of each voxel of a tile (float16 torch tensor): a unit impulse
    at the patch centre blurred with sigma ``patch * sigma_scale``, scaled to ``peak`` at
    the centre, zeros raised to the smallest non-zero weight."""
    import torch
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(tuple(patch))
    impulse[tuple(int(p) // 2 for p in patch)] = 1.0
    w = gaussian_filter(impulse, [p * sigma_scale for p in patch], 0, mode="constant", cval=0)
    w /= np.max(w) / peak
    out = torch.from_numpy(w).to(dtype=torch.float16)
    zero = out == 0
    if bool(zero.any()):
        out[zero] = torch.min(out[~zero])
    return out


def patch_extent_mm(plan: FolderPlan) -> tuple[float, ...]:
    """The patch's extent in mm in the scan's axis order."""
    back = list(plan.transpose_backward)
    return tuple(
        float(plan.patch_size[back[a]]) * plan.spacing_mm[back[a]] for a in range(len(back))
    )


def scan_spacing_mm(plan: FolderPlan) -> tuple[float, ...]:
    """The model grid's spacing in the scan's axis order."""
    back = list(plan.transpose_backward)
    return tuple(plan.spacing_mm[back[a]] for a in range(len(back)))
