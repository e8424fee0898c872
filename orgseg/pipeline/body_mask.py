"""Body-contour stage: CT URL in, body mask (and optionally the cropped CT) out."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from orgseg.core.body import PackedMask, body_mask
from orgseg.core.crop import bounding_box, crop_volume
from orgseg.core.size import patient_size
from orgseg.defaults import BODY_MARGIN_MM
from orgseg.io import load_ct, save_like, write_volume

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyMaskResult:
    voxels: int
    volume_ml: float
    crop_start: tuple[int, int, int]
    crop_stop: tuple[int, int, int]
    median_wed_mm: float
    median_effective_diameter_mm: float
    size_group: str
    seconds: float

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self.__dataclass_fields__}, indent=2)


def run_body_mask(
    ct_url: str,
    mask_url: str,
    *,
    crop_url: str | None = None,
    margin_mm: float = BODY_MARGIN_MM,
    series_uid: str | None = None,
) -> BodyMaskResult:
    """Compute the body mask of a CT and write it in the CT's own geometry."""
    t0 = time.perf_counter()
    ct, reorientation = load_ct(ct_url, series_uid=series_uid)
    # held as bits and written a slab at a time: no full-size bool mask or reoriented copy
    mask = body_mask(ct.array, spacing_mm=ct.spacing_mm, packed=True)
    assert isinstance(mask, PackedMask)
    save_like(mask, reorientation, mask_url)
    box = bounding_box(mask, spacing_mm=ct.spacing_mm, margin_mm=margin_mm)
    if crop_url is not None:
        write_volume(crop_volume(ct, box), crop_url)
    size = patient_size(ct.array, mask, spacing_mm=ct.spacing_mm)
    voxels = mask.count()
    result = BodyMaskResult(
        voxels=voxels,
        volume_ml=voxels * ct.voxel_volume_ml,
        crop_start=box.start,
        crop_stop=box.stop,
        median_wed_mm=round(size.median_wed_mm, 1),
        median_effective_diameter_mm=round(size.median_effective_diameter_mm, 1),
        size_group=size.group,
        seconds=round(time.perf_counter() - t0, 3),
    )
    log.info(
        "body mask of %s: %.0f ml, %s, %.2f s", ct_url, result.volume_ml, size.group, result.seconds
    )
    return result
