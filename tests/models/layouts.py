"""Model sets in the published projects' released layouts, built from the phantom model
trained here (real nnU-Net folders with real weights; the networks know phantoms only).

What each builder changes of the phantom model, and only that:
- folder names, trainer names and dataset ids as the project releases them;
- ``dataset.json`` label names (the project's class names);
- optionally pre-``architecture`` plans (TotalSegmentator's plans predate that key);
- optionally the output layer: classes a part should not predict get a -100 bias (so the
  parts of a set predict different organs and their merge order matters), or the layer is
  cut to [background, organ] for a binary part.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

TS_PARTS = (
    "Dataset291_TotalSegmentator_part1_organs_1559subj",
    "Dataset292_TotalSegmentator_part2_vertebrae_1532subj",
    "Dataset293_TotalSegmentator_part3_cardiac_1559subj",
    "Dataset294_TotalSegmentator_part4_muscles_1559subj",
    "Dataset295_TotalSegmentator_part5_ribs_1559subj",
)
#: phantom model classes (1 heart, 2 liver, 3 lungs, 4 vertebrae) each TS part keeps (the
#: fifth predicts the heart the third does, under another name: the later part must win)
TS_KEEP = ({2}, {4}, {1}, {3}, {1})
MOOSE_TRAINER = "nnUNetTrainer_2000_epochs_DA5NoMirroring"


def legacy_plans(plans: dict) -> dict:
    """Plans in nnU-Net's format before the ``architecture`` key."""
    out = json.loads(json.dumps(plans))
    for conf in out["configurations"].values():
        arch = conf.pop("architecture", None)
        if arch is None:
            continue
        kw = arch["arch_kwargs"]
        feats = kw["features_per_stage"]
        conf.update(
            UNet_class_name="PlainConvUNet",
            UNet_base_num_features=feats[0],
            unet_max_num_features=max(feats),
            n_conv_per_stage_encoder=kw["n_conv_per_stage"],
            n_conv_per_stage_decoder=kw["n_conv_per_stage_decoder"],
            num_pool_per_axis=[
                sum(1 for s in kw["strides"] if s[a] > 1) for a in range(len(kw["strides"][0]))
            ],
            pool_op_kernel_sizes=kw["strides"],
            conv_kernel_sizes=kw["kernel_sizes"],
        )
    return out


def derive_part(
    model_dir: Path,
    target: Path,
    *,
    trainer: str,
    names: Sequence[str] | None = None,
    keep: set[int] | None = None,
    binary_of: int | None = None,
    legacy: bool = False,
    mirroring: bool | None = None,
) -> Path:
    """One result folder derived from the phantom model (see the module docstring).
    ``names``: new label names for classes 1..n; ``binary_of``: the class a binary
    part keeps (its name is ``names[0]``)."""
    import torch

    target.mkdir(parents=True)
    dataset = json.loads((model_dir / "dataset.json").read_text())
    old = sorted((v, k) for k, v in dataset["labels"].items() if k != "background")
    if binary_of is not None:
        dataset["labels"] = {"background": 0, (names or [old[binary_of - 1][1]])[0]: 1}
    elif names is not None:
        dataset["labels"] = {"background": 0, **{n: i for (i, _), n in zip(old, names)}}
    (target / "dataset.json").write_text(json.dumps(dataset, indent=2))
    plans = json.loads((model_dir / "plans.json").read_text())
    (target / "plans.json").write_text(json.dumps(legacy_plans(plans) if legacy else plans))
    for fold in sorted(model_dir.glob("fold_*")):
        ckpt = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        ckpt["trainer_name"] = trainer
        ckpt.pop("optimizer_state", None)
        if mirroring is False:
            ckpt["inference_allowed_mirroring_axes"] = None
        weights = ckpt["network_weights"]
        for key in [k for k in weights if ".seg_layers." in k]:
            if binary_of is not None:
                weights[key] = weights[key][[0, binary_of]].clone()
            elif keep is not None and key.endswith(".bias"):
                for c in range(1, weights[key].shape[0]):
                    if c not in keep:
                        weights[key][c] -= 100.0
        (target / fold.name).mkdir()
        torch.save(ckpt, target / fold.name / "checkpoint_final.pth")
    return target


def totalsegmentator_parts(
    model_dir: Path,
    root: Path,
    registry_entry,  # noqa: ANN001 - a ModelSetEntry
    keep: Sequence[set[int]] = TS_KEEP,
) -> list[Path]:
    """The five ``total`` parts as TotalSegmentator's weights folder holds them (class
    names from the registry entry's per-part tables, legacy plans, NoMirroring); part i
    predicts only the phantom model's classes ``keep[i]``."""
    dataset = json.loads((model_dir / "dataset.json").read_text())
    n = len(dataset["labels"]) - 1
    out = []
    for part, kept, entry_part in zip(TS_PARTS, keep, registry_entry.parts, strict=True):
        folder = root / part / "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
        derive_part(
            model_dir, folder, trainer="nnUNetTrainerNoMirroring",
            names=list(entry_part.labels[:n]), keep=set(kept), legacy=True, mirroring=False,
        )  # fmt: skip
        out.append(folder)
    return out


def zip_folder(folder: Path, archive: Path) -> Path:
    """A zip whose top-level entry is ``folder`` itself (TotalSegmentator's and MOOSE's
    release zips unpack to the dataset folder)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder.parent).as_posix())
    return archive


def moose_organs(model_dir: Path, root: Path) -> Path:
    """MOOSE's ``clin_ct_organs`` layout (labels from its dataset.json)."""
    return derive_part(
        model_dir,
        root / "Dataset123_Organs" / f"{MOOSE_TRAINER}__nnUNetPlans__3d_fullres",
        trainer=MOOSE_TRAINER,
        names=["Heart", "Liver", "Lungs", "Vertebrae"], mirroring=False,
    )  # fmt: skip


#: the reference study's binary parts built here: (folder, organ, phantom class)
REFERENCE_BINARY = (
    ("Dataset801_Heart-binary", "heart", 1),
    ("Dataset804_Liver-binary", "liver", 2),
    ("Dataset805_Lungs-binary", "lungs", 3),
)


def reference_strategy1(model_dir: Path, root: Path) -> Path:
    """The study's Drive folder: nnUNet_trained_models/HQCT_SinlgeModel (sic)/<binary parts>."""
    base = root / "nnUNet_trained_models" / "HQCT_SinlgeModel"
    for folder, organ, cls in REFERENCE_BINARY:
        derive_part(
            model_dir, base / folder / "nnUNetTrainer_2000epochs__nnUNetPlans__3d_fullres",
            trainer="nnUNetTrainer_2000epochs", names=[organ], binary_of=cls,
        )  # fmt: skip
    return root / "nnUNet_trained_models"


def plain_copy(model_dir: Path, target: Path) -> Path:
    """The phantom model folder without orgseg's own file (a plain nnU-Net folder)."""
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("orgseg_model.json"))
    return target
