"""Checks that an image is a usable CT, with errors that say what to do."""

from __future__ import annotations

import numpy as np

from orgseg.core.volume import Volume
from orgseg.errors import DataContractError

AIR_HU = -500.0
#: denser than fat and lung: what a patient is made of
TISSUE_HU = -300.0
#: less tissue than this is no patient (a neonate's body is well over 1,000 ml) ...
MIN_TISSUE_ML = 50.0
#: ... or, in a field of view under 5 litres (a crop, a test volume), this share of it
MIN_TISSUE_FRACTION = 0.01
#: axial slices checked at a time (a scan may be read a slab at a time, see ScanRows)
_SLAB_ROWS = 32


def check_geometry(volume: Volume, *, name: str = "image") -> None:
    """Raise :class:`DataContractError` for empty images or non-positive spacing."""
    if volume.array.size == 0 or min(volume.shape) < 1:
        raise DataContractError(
            f"{name}: the image is empty (shape {volume.shape}); "
            "check that the file holds pixel data"
        )
    spacing = np.asarray(volume.spacing_mm)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise DataContractError(
            f"{name}: expected positive voxel spacing, got {volume.spacing_mm} mm; "
            "fix the header (pixdim / PixelSpacing / SliceThickness)"
        )


def check_ct(volume: Volume, *, name: str = "image", require_air: bool = True) -> None:
    """Validate a CT volume: 3D, finite, positive spacing, and a CT intensity range.

    A CT in Hounsfield units holds air (about -1000 HU) around the patient; an image
    with no value below ``AIR_HU`` is most likely not a CT in HU (an MR, a CT already
    cropped to the body, or an image stored without its rescale slope/intercept).
    Pass ``require_air=False`` for tightly cropped CTs.
    """
    check_geometry(volume, name=name)
    arr = volume.array
    bad, lo, hi, tissue = 0, np.inf, -np.inf, 0
    floating = np.issubdtype(arr.dtype, np.floating)
    for a in range(0, arr.shape[0], _SLAB_ROWS):  # a slab at a time: no full-size temporaries
        slab = np.asarray(arr[a : a + _SLAB_ROWS])
        if floating:
            finite = np.isfinite(slab)
            if not finite.all():
                bad += int(np.count_nonzero(~finite))
                continue
        lo, hi = min(lo, float(slab.min())), max(hi, float(slab.max()))
        tissue += int(np.count_nonzero(slab > TISSUE_HU))
    if bad:
        raise DataContractError(
            f"{name}: expected finite intensities, found {bad} NaN/inf voxel(s); "
            "the image is corrupt or was saved from a failed computation"
        )
    if require_air and lo > AIR_HU:
        raise DataContractError(
            f"{name}: expected a CT in Hounsfield units with air (< {AIR_HU:.0f} HU) around "
            f"the patient, got intensities {lo:.0f}..{hi:.0f}; is this an MR, or a CT "
            "without its rescale intercept? For a CT already cropped to the body, "
            "disable the air check"
        )
    if lo < -4000 or hi > 40000:
        raise DataContractError(
            f"{name}: intensities {lo:.0f}..{hi:.0f} are outside any CT range; "
            "expected Hounsfield units"
        )
    _check_tissue(tissue, volume, name=name)


def _check_tissue(tissue_voxels: int, volume: Volume, *, name: str) -> None:
    tissue_ml = tissue_voxels * volume.voxel_volume_ml
    needed_ml = min(MIN_TISSUE_ML, MIN_TISSUE_FRACTION * volume.array.size * volume.voxel_volume_ml)
    if tissue_ml < needed_ml or tissue_ml == 0:
        raise DataContractError(
            f"{name}: no patient found: {tissue_ml:.1f} ml of the scan is denser than "
            f"{TISSUE_HU:.0f} HU (expected at least {needed_ml:.1f} ml of tissue); "
            "the scan is empty air or not a CT of a patient"
        )
