from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.body import body_mask
from orgseg.core.crop import bounding_box, crop, crop_volume, uncrop
from orgseg.core.volume import Volume
from orgseg.errors import DataContractError
from orgseg.phantoms import make_phantom


@pytest.mark.parametrize(
    ("spacing", "shape", "paediatric"),
    [((8.0, 7.5, 7.5), (48, 64, 64), False), ((4.0, 3.0, 5.0), (60, 150, 90), True)],
)
def test_phantom_body_keeps_arms_and_drops_table_blanket_tube(spacing, shape, paediatric):
    p = make_phantom(shape=shape, spacing_mm=spacing, seed=3, paediatric=paediatric)
    m = body_mask(p.ct_hu, spacing_mm=p.spacing_mm)
    inter = (m & p.body).sum()
    dice = 2 * inter / (m.sum() + p.body.sum())
    assert dice > 0.97
    assert p.arms.any()
    assert (m & p.arms).sum() / p.arms.sum() > 0.95, "arms must be kept"
    objects_above_air = p.objects & (p.ct_hu > -300)
    assert objects_above_air.sum() > 100
    assert (m & objects_above_air).sum() / objects_above_air.sum() < 0.05, "table/blanket/tube kept"
    # every organ voxel (lungs included: holes are filled) lies inside the body mask
    assert m[p.labels > 0].all()


def test_blanket_draped_over_the_body_is_cut():
    ct = np.full((20, 100, 100), -1000, np.int16)
    yy, xx = np.mgrid[:100, :100]
    body = ((yy - 60) / 25.0) ** 2 + ((xx - 50) / 30.0) ** 2 <= 1
    # a 3-voxel sheet resting on the anterior-most point, hanging away at the sides
    rel = np.sqrt(((yy - 68) / 34.0) ** 2 + ((xx - 50) / 45.0) ** 2)
    sheet = (rel >= 1.0) & (rel <= 1.0 + 3 / 34.0) & (yy < 62) & ~body
    ct[:, body] = 40
    ct[:, sheet] = 0
    m = body_mask(ct, spacing_mm=(2.0, 1.5, 1.5))
    assert m[:, sheet].mean() < 0.15
    assert m[:, body].mean() > 0.99


def test_holes_inside_body_are_filled_per_axial_slice():
    ct = np.full((10, 60, 60), -1000, np.int16)
    ct[:, 10:50, 10:50] = 30
    ct[:, 25:35, 25:35] = -1000  # trachea-like air column through every slice
    m = body_mask(ct, spacing_mm=(3.0, 3.0, 3.0))
    assert m[:, 25:35, 25:35].all()
    assert not m[:, :5, :].any()


def test_real_ct_excludes_the_table_and_cushion(real_ct_path):
    from orgseg.core.orientation import to_canonical
    from orgseg.io import load_ct, read_volume

    ct, _ = load_ct(str(real_ct_path))
    seg, _ = to_canonical(read_volume(str(real_ct_path).replace("example_ct_sm", "example_seg")))
    m = body_mask(ct.array, spacing_mm=ct.spacing_mm)
    # every organ TotalSegmentator found lies in the body
    assert m[seg.array > 0].all()
    # the table: dense voxels in the bottom (posterior) rows, below the cushion
    table_rows = ct.array[:, 97:, :] > -300
    assert table_rows.sum() > 200
    assert not m[:, 97:, :].any()
    # the cushion between back and table (rows 93-96) stays out, apart from skin contact
    assert m[:, 94:, :].sum() < 0.002 * m.sum()
    # the body is one filled piece in each slice: no background holes inside
    from scipy import ndimage

    for z in range(ct.shape[0]):
        assert ndimage.binary_fill_holes(m[z]).sum() == m[z].sum()


def test_body_mask_does_not_modify_input_and_handles_empty():
    ct = np.full((8, 16, 16), -1000, np.int16)
    before = ct.copy()
    assert not body_mask(ct, spacing_mm=(1.0, 1.0, 1.0)).any()
    np.testing.assert_array_equal(ct, before)
    with pytest.raises(DataContractError):
        body_mask(np.zeros((4, 4)), spacing_mm=(1.0, 1.0))


def test_crop_uncrop_round_trip_with_margin_in_mm():
    mask = np.zeros((20, 30, 40), bool)
    mask[5:10, 10:12, 20:30] = True
    box = bounding_box(mask, spacing_mm=(2.0, 0.5, 1.0), margin_mm=3.0)
    assert box.start == (3, 4, 17) and box.stop == (12, 18, 33)
    back = uncrop(crop(mask, box), box)
    np.testing.assert_array_equal(back, mask)
    assert bounding_box(np.zeros_like(mask)).cropped_shape == mask.shape


def test_crop_volume_keeps_world_positions():
    d = np.array([[0, 0, 1.0], [0, -1.0, 0], [1.0, 0, 0]])
    vol = Volume(
        np.arange(60).reshape(3, 4, 5), spacing_mm=(2, 3, 4), origin_mm=(1, 2, 3), direction=d
    )
    mask = np.zeros(vol.shape, bool)
    mask[1, 2, 3] = True
    box = bounding_box(mask)
    c = crop_volume(vol, box)
    expected = np.array([1, 2, 3]) + 1 * 2 * d[0] + 2 * 3 * d[1] + 3 * 4 * d[2]
    np.testing.assert_allclose(c.origin_mm, expected)
    assert c.array[0, 0, 0] == vol.array[1, 2, 3]


def test_packed_body_mask_is_the_same_mask():
    from orgseg.core.body import PackedMask
    from orgseg.phantoms import make_phantom

    p = make_phantom(shape=(40, 64, 60), spacing_mm=(5.0, 5.0, 5.0), seed=3)
    full = body_mask(p.ct_hu, spacing_mm=p.spacing_mm)
    packed = body_mask(p.ct_hu, spacing_mm=p.spacing_mm, packed=True)
    assert isinstance(packed, PackedMask) and packed.shape == full.shape
    assert full.any() and np.array_equal(packed.unpack(), full)
    assert np.array_equal(packed.rows(7, 19), full[7:19])


def test_a_packed_mask_answers_count_box_and_size_as_the_bool_mask_does():
    from orgseg.core.body import PackedMask
    from orgseg.core.crop import bounding_box
    from orgseg.core.size import patient_size
    from orgseg.phantoms import make_phantom

    p = make_phantom(shape=(40, 64, 61), spacing_mm=(5.0, 5.0, 5.0), seed=3)
    full = body_mask(p.ct_hu, spacing_mm=p.spacing_mm)
    full[:, :, 60] = False
    full[3:5, 10:12, 59] = True  # a voxel in the last, partial byte of each row's bits
    packed = PackedMask.pack(full)
    assert packed.count() == int(full.sum())
    assert np.array_equal(packed[5:17], full[5:17]) and np.array_equal(np.asarray(packed), full)
    box, box_packed = (
        bounding_box(m, spacing_mm=p.spacing_mm, margin_mm=10.0) for m in (full, packed)
    )
    assert box == box_packed and box.stop[2] == 61  # x reaches 59 + the 2-voxel margin
    size, size_packed = (patient_size(p.ct_hu, m, spacing_mm=p.spacing_mm) for m in (full, packed))
    np.testing.assert_array_equal(size.wed_mm, size_packed.wed_mm)
    np.testing.assert_array_equal(size.effective_diameter_mm, size_packed.effective_diameter_mm)
    with pytest.raises(TypeError, match="slice of rows"):
        packed[3]
