"""Patient size: water-equivalent diameter (AAPM TG-220) and effective diameter (TG-204).

Per axial slice (canonical frame, ``ct[z]``):

* water-equivalent area ``A_w = sum_body (HU / 1000 + 1) * pixel_area``, and
  ``WED = 2 * sqrt(A_w / pi)``;
* effective diameter ``ED = sqrt(AP * LAT)``, the body's anterior-posterior and lateral
  extents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from orgseg.errors import DataContractError

if TYPE_CHECKING:
    from orgseg.core.body import PackedMask

SizeGroup = Literal["adult", "paediatric"]

#: below this median effective diameter a patient is flagged paediatric (heuristic: adult
#: trunks measure about 240-380 mm; children below 10 years mostly under 220 mm)
PAEDIATRIC_MAX_ED_MM = 220.0
#: axial slices measured at a time (the float32 temporaries stay a few MB)
_SLAB_ROWS = 16


@dataclass(frozen=True, slots=True)
class PatientSize:
    """Per-slice and summary size figures of one scan."""

    wed_mm: np.ndarray  # (Z,), nan where the slice holds no body
    effective_diameter_mm: np.ndarray  # (Z,)
    median_wed_mm: float
    median_effective_diameter_mm: float
    group: SizeGroup


def water_equivalent_diameter(
    ct_hu: np.ndarray, body: np.ndarray | PackedMask, *, spacing_mm: Sequence[float]
) -> np.ndarray:
    """WED per axial slice in mm (nan for slices without body). ``ct_hu`` and ``body``
    are read a slab of rows at a time (``body`` may be held as bits).

    >>> import numpy as np
    >>> ct = np.zeros((1, 100, 100)); body = np.zeros(ct.shape, bool)
    >>> yy, xx = np.mgrid[:100, :100]; body[0] = (yy - 50) ** 2 + (xx - 50) ** 2 <= 40 ** 2
    >>> round(float(water_equivalent_diameter(ct, body, spacing_mm=(1, 1, 1))[0]))
    80
    """
    if ct_hu.shape != body.shape or ct_hu.ndim != 3:
        raise DataContractError(
            f"expected a 3D CT and body mask of one shape, got {ct_hu.shape} and {body.shape}"
        )
    pixel_area = float(spacing_mm[1]) * float(spacing_mm[2])
    # A_w / pixel_area = sum_body (max(HU, -1000) + 1000) / 1000 = (S + 1000 N) / 1000, with
    # S = sum_body max(HU, -1000) summed exactly in the scan's own integers (no float copy)
    # and N the body's voxels
    n_slices = ct_hu.shape[0]
    sums = np.empty(n_slices, dtype=np.float64)
    counts = np.empty(n_slices, dtype=np.int64)
    for a in range(0, n_slices, _SLAB_ROWS):  # a slab at a time: no full-size temporaries
        inside = np.asarray(body[a : a + _SLAB_ROWS])
        hu = np.asarray(ct_hu[a : a + _SLAB_ROWS])
        if hu.dtype.kind == "u" or hu.dtype == np.int8:  # -1000 must fit
            hu = hu.astype(np.int32)
        hu = np.maximum(hu, -1000)
        hu *= inside
        k = hu.shape[0]
        acc = np.int64 if hu.dtype.kind == "i" else np.float64
        sums[a : a + k] = hu.reshape(k, -1).sum(axis=1, dtype=acc)
        counts[a : a + k] = np.count_nonzero(inside.reshape(k, -1), axis=1)
    area = (sums + 1000.0 * counts) / 1000.0 * pixel_area
    wed = 2.0 * np.sqrt(area / np.pi)
    wed[counts == 0] = np.nan
    return wed


def effective_diameter(body: np.ndarray | PackedMask, *, spacing_mm: Sequence[float]) -> np.ndarray:
    """sqrt(AP x LAT) per axial slice in mm (nan for slices without body)."""
    ap_rows = np.empty(body.shape[:2], dtype=bool)  # (Z, Y)
    lat_cols = np.empty((body.shape[0], body.shape[2]), dtype=bool)  # (Z, X)
    for a in range(0, body.shape[0], _SLAB_ROWS):
        inside = np.asarray(body[a : a + _SLAB_ROWS])
        ap_rows[a : a + _SLAB_ROWS] = inside.any(axis=2)
        lat_cols[a : a + _SLAB_ROWS] = inside.any(axis=1)

    def extent(rows: np.ndarray, step: float) -> np.ndarray:
        n = rows.shape[1]
        first = np.argmax(rows, axis=1)
        last = n - 1 - np.argmax(rows[:, ::-1], axis=1)
        out = (last - first + 1).astype(float) * step
        out[~rows.any(axis=1)] = np.nan
        return out

    return np.sqrt(extent(ap_rows, float(spacing_mm[1])) * extent(lat_cols, float(spacing_mm[2])))


def patient_size(
    ct_hu: np.ndarray,
    body: np.ndarray | PackedMask,
    *,
    spacing_mm: Sequence[float],
    paediatric_max_ed_mm: float = PAEDIATRIC_MAX_ED_MM,
) -> PatientSize:
    """WED, effective diameter and an adult/paediatric flag for one scan."""
    wed = water_equivalent_diameter(ct_hu, body, spacing_mm=spacing_mm)
    ed = effective_diameter(body, spacing_mm=spacing_mm)
    if np.all(np.isnan(ed)):
        raise DataContractError("the body mask is empty: no patient size can be measured")
    med_ed = float(np.nanmedian(ed))
    return PatientSize(
        wed_mm=wed,
        effective_diameter_mm=ed,
        median_wed_mm=float(np.nanmedian(wed)),
        median_effective_diameter_mm=med_ed,
        group="paediatric" if med_ed < paediatric_max_ed_mm else "adult",
    )
