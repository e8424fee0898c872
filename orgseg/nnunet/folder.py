"""A trained nnU-Net model folder read without nnU-Net's predictor.

The streamed engine needs a folder's plans, labels and one network per fold. Reading them
through ``nnUNetPredictor`` costs a process ~250 MB before any voxel (its import pulls
pandas and nnU-Net's trainers; the trainer lookup imports every trainer module) and
seconds per model. Here the plans and ``dataset.json`` are read as JSON and the networks
are built from the plans as nnU-Net's default trainer builds them. Folders this cannot
build the same way (another trainer class, pre-``architecture`` plans, cascades) report
``lean = False``; their networks then come from nnU-Net's own predictor.

nnU-Net's geometric rules the engine reproduces (the model-grid shape, when z is resampled
separately, the tiles' Gaussian weights) are here too; tests check them against nnU-Net.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orgseg.errors import DataContractError

#: the one trainer whose networks are built here (orgseg trains with it)
DEFAULT_TRAINER = "nnUNetTrainer"
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
        """Whether :func:`build_networks` builds the networks exactly as nnU-Net would."""
        return (
            self.trainer_name == DEFAULT_TRAINER
            and "architecture" in self.configuration
            and self.configuration.get("previous_stage") is None
        )


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
        configuration=_resolved(plans["configurations"], name),
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


def build_networks(plan: FolderPlan, folds: Sequence[int], checkpoint: str, device) -> list:
    """One network per fold with its weights, in eval mode on ``device`` (lean plans only)."""
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
        net.load_state_dict(ckpt["network_weights"])
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
