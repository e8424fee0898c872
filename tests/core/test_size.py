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


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16, np.float32, np.float64])
def test_wed_is_one_figure_whatever_the_scans_dtype(dtype):
    """Integer scans are summed exactly in integers, float ones in float64; below -1000 HU
    (air, padding) counts as nothing; the figure is the formula's to float rounding."""
    rng = np.random.default_rng(0)
    spacing = (2.0, 0.8, 0.7)
    body = ellipse_body((5, 64, 64), 20.0, 18.0, spacing)
    hu = rng.integers(-1200, 1500, size=body.shape)
    if dtype == np.uint16:
        hu = np.clip(hu, 0, None)  # an unsigned scan has no air below 0 HU
    expected_area = (np.maximum(hu, -1000) + 1000) * body / 1000.0 * spacing[1] * spacing[2]
    expected = 2.0 * np.sqrt(expected_area.sum(axis=(1, 2)) / np.pi)
    wed = water_equivalent_diameter(hu.astype(dtype), body, spacing_mm=spacing)
    np.testing.assert_allclose(wed, expected, rtol=1e-12)
