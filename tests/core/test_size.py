from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.size import effective_diameter, patient_size, water_equivalent_diameter
from orgseg.errors import DataContractError


def ellipse_body(shape, ry, rx, spacing):
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    cy, cx = shape[1] / 2, shape[2] / 2
    return (((yy - cy) * spacing[1] / ry) ** 2 + ((xx - cx) * spacing[2] / rx) ** 2) <= 1


def test_wed_of_water_and_of_fat_cylinder():
    spacing = (5.0, 0.5, 0.5)
    body = ellipse_body((2, 400, 400), 80.0, 80.0, spacing)
    water = np.zeros(body.shape, np.float32)
    wed = water_equivalent_diameter(water, body, spacing_mm=spacing)
    assert wed == pytest.approx([160.0, 160.0], rel=0.01)
    fat = np.full(body.shape, -100.0, np.float32)  # density 0.9 -> WED scales by sqrt(0.9)
    wed_fat = water_equivalent_diameter(fat, body, spacing_mm=spacing)
    assert wed_fat[0] == pytest.approx(160.0 * np.sqrt(0.9), rel=0.01)


def test_effective_diameter_uses_ap_and_lateral_spacing():
    spacing = (2.0, 1.0, 2.0)
    body = ellipse_body((3, 300, 200), 50.0, 100.0, spacing)  # AP 100 mm, LAT 200 mm
    ed = effective_diameter(body, spacing_mm=spacing)
    assert ed == pytest.approx(np.full(3, np.sqrt(100 * 200)), rel=0.02)


def test_size_group_and_empty_slices():
    spacing = (2.0, 1.0, 1.0)
    adult = ellipse_body((4, 400, 400), 120.0, 170.0, spacing)
    child = ellipse_body((4, 400, 400), 70.0, 90.0, spacing)
    ct = np.zeros(adult.shape, np.float32)
    assert patient_size(ct, adult, spacing_mm=spacing).group == "adult"
    assert patient_size(ct, child, spacing_mm=spacing).group == "paediatric"
    child[0] = False
    size = patient_size(ct, child, spacing_mm=spacing)
    assert np.isnan(size.wed_mm[0]) and not np.isnan(size.wed_mm[1])
    with pytest.raises(DataContractError, match="empty"):
        patient_size(ct, np.zeros_like(adult), spacing_mm=spacing)
