"""nnU-Net raw datasets: naming, dataset.json, integrity check, splits."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from orgseg.errors import DataContractError
from orgseg.nnunet.env import nnunet_output_to_log

log = logging.getLogger(__name__)

CHANNEL_NAME = "CT"
FILE_ENDING = ".nii.gz"
#: nnU-Net v2's name of the label its losses leave out (it must be the highest value)
IGNORE_LABEL = "ignore"


def dataset_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name: ``Dataset{id:03d}_{name}``.

    >>> dataset_name(507, "Liver")
    'Dataset507_Liver'
    """
    if not 1 <= dataset_id <= 999:
        raise DataContractError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    return f"Dataset{dataset_id:03d}_{name}"


def make_dataset_json(
    *, labels: Mapping[str, int], n_training: int, description: str, ignore: bool = False
) -> dict[str, object]:
    """The ``dataset.json`` of a one-channel CT dataset with consecutive label values;
    ``ignore``: plus nnU-Net's ignore label, one above the highest (see
    :func:`ignore_value`)."""
    values = sorted(labels.values())
    if values != list(range(1, len(values) + 1)):
        raise DataContractError(
            f"nnU-Net needs consecutive label values 1..N, got {dict(labels)}; remap the "
            "organs to training ids first"
        )
    return {
        "name": description,
        "description": description,
        "reference": "orgseg",
        "channel_names": {"0": CHANNEL_NAME},
        "labels": {
            "background": 0,
            **{k: int(v) for k, v in labels.items()},
            **({IGNORE_LABEL: ignore_value(labels)} if ignore else {}),
        },
        "numTraining": int(n_training),
        "file_ending": FILE_ENDING,
    }


def ignore_value(labels: Mapping[str, int]) -> int:
    """The value of nnU-Net's ignore label in a dataset of ``labels``: one above them."""
    return max(labels.values(), default=0) + 1


def write_dataset_json(folder: Path, content: Mapping[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".dataset.json.tmp"
    tmp.write_text(json.dumps(content, indent=2, sort_keys=False) + "\n")
    tmp.replace(folder / "dataset.json")


def image_path(folder: Path, case_id: str) -> Path:
    return folder / "imagesTr" / f"{case_id}_0000{FILE_ENDING}"


def label_path(folder: Path, case_id: str) -> Path:
    return folder / "labelsTr" / f"{case_id}{FILE_ENDING}"


def verify_dataset(folder: Path, *, num_processes: int = 1) -> None:
    """nnU-Net's own integrity check; its failures become one :class:`DataContractError`."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    try:
        with nnunet_output_to_log():
            verify_dataset_integrity(str(folder), num_processes=num_processes)
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise DataContractError(
            f"nnU-Net's integrity check failed for {folder.name}: {exc}; fix the dataset "
            "(geometry of images and labels must match, labels must be 0..N)"
        ) from None


def write_splits(preprocessed_folder: Path, folds: Sequence[Mapping[str, Sequence[str]]]) -> None:
    """Write ``splits_final.json``: one ``{"train": [...], "val": [...]}`` per fold."""
    preprocessed_folder.mkdir(parents=True, exist_ok=True)
    content = [{"train": sorted(f["train"]), "val": sorted(f["val"])} for f in folds]
    tmp = preprocessed_folder / ".splits_final.json.tmp"
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    tmp.replace(preprocessed_folder / "splits_final.json")
