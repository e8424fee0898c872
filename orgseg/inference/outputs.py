"""What ``orgseg segment`` writes for one case, all under ``<output>/<case_id>/``.

- ``segmentation.nii.gz`` (``ml``) or ``<organ>.nii.gz`` per organ, in the input's geometry
- ``statistics.json``: per organ volume (ml) and mean HU, and the patient's water-equivalent
  diameter
- ``preview.png``: axial, coronal and sagittal views with a coloured overlay
- ``seg.dcm`` (DICOM SEG) and ``rtstruct.dcm`` when the input is a DICOM series

Every file is committed atomically; if writing any of them fails, those already written
for the case are removed again, so a case has all its outputs or none.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from orgseg.core.body import PackedMask
from orgseg.core.orientation import Reorientation
from orgseg.core.size import water_equivalent_diameter
from orgseg.core.statistics import organ_statistics
from orgseg.core.volume import Volume
from orgseg.errors import ConfigError
from orgseg.io import join_url, save_like, write_bytes
from orgseg.io.storage import remove

log = logging.getLogger(__name__)

OUTPUT_TYPES = ("nifti", "dicom_seg", "rtstruct")
ML_NAME = "segmentation.nii.gz"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputOptions:
    ml: bool = False
    statistics: bool = False
    preview: bool = False
    output_types: tuple[str, ...] = ("nifti",)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.output_types) - set(OUTPUT_TYPES))
        if unknown or not self.output_types:
            raise ConfigError(
                f"unknown output types {unknown or '(none given)'}; choose from "
                f"{', '.join(OUTPUT_TYPES)} (comma-separated)"
            )


def case_statistics(
    labels: np.ndarray,
    ct: Volume,
    body: np.ndarray | PackedMask | None,
    label_ids: Mapping[str, int],
) -> dict[str, object]:
    stats: dict[str, object] = {
        "organs": organ_statistics(  # a slab at a time
            labels, ct.array, label_ids=label_ids, spacing_mm=ct.spacing_mm
        ),
        "spacing_mm": list(ct.spacing_mm),
        "shape": list(ct.shape),
    }
    if body is not None:  # read a slab at a time: no float copy of the whole scan
        wed = water_equivalent_diameter(ct.array, body, spacing_mm=ct.spacing_mm)
        stats["wed_mm_median"] = (
            None if np.all(np.isnan(wed)) else round(float(np.nanmedian(wed)), 1)
        )
    return stats


def render_preview(
    labels: np.ndarray, ct: Volume, label_ids: Mapping[str, int], *, title: str = ""
) -> bytes:
    """PNG bytes: three orthogonal views through the segmented organs, coloured overlay."""
    from orgseg.render import preview_png

    return preview_png(labels, np.asarray(ct.array), ct.spacing_mm, label_ids, title=title)


def write_case_outputs(
    case_url: str,
    *,
    labels: np.ndarray,
    ct: Volume,
    reorientation: Reorientation,
    body: np.ndarray | PackedMask | None,
    label_ids: Mapping[str, int],
    options: OutputOptions,
    dicom_url: str | None = None,
    case_id: str = "",
    organ_masks: Mapping[str, PackedMask] | None = None,
    model_info: Mapping[str, object] | None = None,
) -> list[str]:
    """Write one case's outputs (all or none); return their URLs. ``organ_masks``: each
    organ's own mask for the per-organ files (binary model sets: unfused, overlaps kept);
    ``model_info``: what the statistics record about the model (a model set's merge)."""
    written: list[str] = []
    try:
        if "nifti" in options.output_types:
            if options.ml:
                url = join_url(case_url, ML_NAME)
                save_like(labels, reorientation, url)
                written.append(url)
            else:
                for organ, lid in label_ids.items():
                    url = join_url(case_url, f"{organ}.nii.gz")
                    own = organ_masks.get(organ) if organ_masks else None
                    mask = own.unpack() if own is not None else labels == lid
                    save_like(mask.astype(np.uint8), reorientation, url)
                    written.append(url)
        if options.statistics:
            url = join_url(case_url, "statistics.json")
            stats = case_statistics(labels, ct, body, label_ids)
            if model_info:
                stats["model"] = dict(model_info)
            write_bytes(url, json.dumps(stats, indent=2).encode())
            written.append(url)
        if options.preview:
            url = join_url(case_url, "preview.png")
            write_bytes(url, render_preview(labels, ct, label_ids, title=case_id))
            written.append(url)
        dicom_types = [t for t in options.output_types if t != "nifti"]
        if dicom_types:
            from orgseg.io.dicom_out import write_dicom_outputs

            written += write_dicom_outputs(
                case_url,
                dicom_types,
                labels=labels,
                reorientation=reorientation,
                label_ids=label_ids,
                dicom_url=dicom_url,
            )
    except BaseException:
        for url in written:
            remove(url)
        raise
    return written
