"""orgseg's NIfTI reader against nibabel's own reading of the same files."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from orgseg.errors import DataContractError
from orgseg.io import read_volume
from orgseg.io.nifti import nifti_geometry


def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(12.0)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-120.0, 35.5, 410.0]
    return affine


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_voxels_and_geometry_equal_nibabels(tmp_path, suffix):
    rng = np.random.default_rng(0)
    data = rng.integers(-1024, 2000, size=(13, 11, 7)).astype(np.int16)  # (x, y, z) on disk
    path = tmp_path / f"ct{suffix}"
    nib.save(nib.Nifti1Image(data, _oblique_affine()), str(path))
    vol = read_volume(str(path))
    ref = nib.load(str(path))
    assert vol.array.dtype == np.int16 and vol.shape == (7, 11, 13)
    np.testing.assert_array_equal(vol.array, np.transpose(np.asarray(ref.dataobj), (2, 1, 0)))
    spacing, origin, direction = nifti_geometry(ref.affine, str(path))
    assert vol.spacing_mm == pytest.approx(spacing) and vol.origin_mm == pytest.approx(origin)
    np.testing.assert_allclose(vol.direction, direction)
    assert vol.array.flags.c_contiguous and vol.array.flags.writeable


def test_scaled_voxels_come_back_in_float32_as_nibabel_scales_them(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(2.0, -1024.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, str(path))
    vol = read_volume(str(path))
    assert vol.array.dtype == np.float32
    expected = np.transpose(np.asarray(nib.load(str(path)).dataobj), (2, 1, 0))
    np.testing.assert_allclose(vol.array, expected)
    assert float(vol.array.min()) == -1024.0


def test_a_4d_file_with_one_volume_is_read_as_3d(tmp_path):
    data = np.ones((4, 5, 6, 1), dtype=np.int16)
    path = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    assert read_volume(str(path)).shape == (6, 5, 4)


def test_a_truncated_gzip_stream_is_refused(tmp_path):
    data = np.random.default_rng(1).integers(-1000, 1000, (64, 64, 40)).astype(np.int16)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    raw = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(DataContractError, match="truncated"):
        read_volume(str(cut))
    # a stream that is whole but shorter than its header claims
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(gzip.decompress(raw)[:-1000]))
    with pytest.raises(DataContractError, match="truncated"):
        read_volume(str(short))
