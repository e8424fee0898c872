"""orgseg's slab-wise zooms equal scipy.ndimage.zoom (TotalSegmentator's resampling)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from orgseg.core.resample import nearest_preimage, zoom_linear, zoom_nearest


@pytest.mark.parametrize("shape", [(20, 27, 24), (60, 80, 70), (1, 51, 45)])
def test_zooms_are_scipys(shape):
    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 1500, (37, 51, 45)).astype(np.int16)
    zoom = np.asarray(shape) / np.asarray(ct.shape)
    ref = ndimage.zoom(ct.astype(np.float64), zoom, order=1, mode="nearest")
    assert ref.shape == shape
    ours = zoom_linear(ct, shape, dtype=np.int32, slab_rows=7)
    # truncation to integers may flip a value sitting on an integer by rounding error
    assert np.count_nonzero(ours != ref.astype(np.int32)) <= 1e-4 * ours.size
    assert np.abs(ours - ref.astype(np.int32)).max() <= 1
    labels = rng.integers(0, 5, ct.shape).astype(np.uint8)
    back = ndimage.zoom(labels, zoom, order=0, mode="nearest")
    np.testing.assert_array_equal(zoom_nearest(labels, shape, slab_rows=5), back)


def test_the_preimage_of_a_mask_zooms_back_onto_it():
    rng = np.random.default_rng(1)
    fine = ndimage.binary_dilation(rng.random((30, 40, 40)) > 0.995, iterations=2)
    grid = (20, 27, 27)
    pre = nearest_preimage(fine, grid, slab_rows=4)
    back = zoom_nearest(pre, fine.shape)
    assert np.all(back[fine])  # every voxel of the mask comes back from inside the preimage
    # and nothing smaller would do: each preimage voxel is some mask voxel's source
    assert pre.sum() <= fine.sum()
    assert pre.any() and not pre.all()
