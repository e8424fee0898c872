"""ct_rows: a CT read a slab at a time from local disk equals the CT load_ct reads."""

from __future__ import annotations

import glob
import os
import tempfile

import nibabel as nib
import numpy as np
import pytest

from orgseg.core.volume import CANONICAL_DIRECTION, Volume
from orgseg.errors import DataContractError
from orgseg.io import ct_rows, load_ct, write_volume
from orgseg.io.scan_rows import ScanRows


def _ct(direction: np.ndarray, shape=(23, 9, 12)) -> Volume:
    rng = np.random.default_rng(2)
    array = rng.integers(-1024, 1500, size=shape).astype(np.int16)
    array[:, 2:7, 3:9] = 200  # tissue, so the CT checks pass
    return Volume(
        array, spacing_mm=(2.5, 0.9, 0.8), origin_mm=(5.0, -7.0, 9.0), direction=direction
    )


C = CANONICAL_DIRECTION
DIRECTIONS = {
    "canonical": C,
    "head-first": C * [[-1.0], [1.0], [1.0]],  # file slices run feet to head reversed
    "in-plane flips": C * [[1.0], [-1.0], [-1.0]],
    "axes y, x swapped": C[[0, 2, 1]],
    "sagittal": C[[2, 1, 0]],  # the slowest axis is left-right: read whole
}


def _spills() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "orgseg-scan-*")))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_rows_equal_the_canonical_ct_load_ct_reads(tmp_path, name, suffix):
    url = str(tmp_path / f"ct{suffix}")
    write_volume(_ct(DIRECTIONS[name]), url)
    expected, expected_reo = load_ct(url)
    before = _spills()
    with ct_rows(url) as (ct, reorientation):
        streamed = name != "sagittal"
        assert isinstance(ct.array, ScanRows) == streamed
        assert (reorientation.perm, reorientation.flips) == (expected_reo.perm, expected_reo.flips)
        assert reorientation.shape == expected_reo.shape
        assert ct.shape == expected.shape and ct.spacing_mm == expected.spacing_mm
        assert ct.origin_mm == pytest.approx(expected.origin_mm)
        np.testing.assert_allclose(ct.direction, expected.direction)
        np.testing.assert_array_equal(np.asarray(ct.array), expected.array)
        np.testing.assert_array_equal(ct.array[4:11], expected.array[4:11])
        np.testing.assert_array_equal(ct.array[5], expected.array[5])
        np.testing.assert_array_equal(ct.array[-1], expected.array[-1])
        np.testing.assert_array_equal(ct.array[3:8, 1:4, 2:9], expected.array[3:8, 1:4, 2:9])
        np.testing.assert_array_equal(ct.array[20:40], expected.array[20:40])  # clipped
    assert _spills() == before  # the raw file is gone


def test_an_uncompressed_nifti_is_read_in_place(tmp_path):
    url = str(tmp_path / "ct.nii")
    write_volume(_ct(C), url)
    before = _spills()
    with ct_rows(url) as (ct, _):
        assert ct.array.path == url and _spills() == before


def test_scaled_and_big_endian_voxels_come_back_as_load_ct_reads_them(tmp_path):
    data = _ct(np.eye(3)).array.transpose(2, 1, 0)  # (x, y, z) on disk
    img = nib.Nifti1Image((data.astype(np.float32) + 1024) / 2, np.diag([0.8, 0.9, 2.5, 1.0]))
    img.set_data_dtype(np.dtype(">u2"))
    img.header.set_slope_inter(2.0, -1024.0)
    url = str(tmp_path / "scaled.nii.gz")
    nib.save(img, url)
    expected, _ = load_ct(url)
    with ct_rows(url) as (ct, _):
        assert ct.array.dtype == np.float32 == expected.array.dtype
        np.testing.assert_array_equal(np.asarray(ct.array), expected.array)


def test_a_truncated_file_is_refused_and_leaves_nothing_behind(tmp_path):
    url = str(tmp_path / "ct.nii.gz")
    write_volume(_ct(C, shape=(60, 64, 64)), url)
    with open(url, "rb") as fh:
        raw = fh.read()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    before = _spills()
    with pytest.raises(DataContractError, match="truncated"), ct_rows(str(cut)):
        pass
    assert _spills() == before


def test_a_failure_inside_the_block_still_removes_the_raw_file(tmp_path):
    url = str(tmp_path / "ct.nii.gz")
    write_volume(_ct(C), url)
    before = _spills()
    with pytest.raises(RuntimeError, match="boom"), ct_rows(url) as (ct, _):
        assert _spills() != before
        raise RuntimeError("boom")
    assert _spills() == before


def test_the_ct_checks_run_on_the_rows(tmp_path):
    url = str(tmp_path / "air.nii.gz")
    write_volume(Volume(np.full((8, 16, 16), -1000, np.int16)), url)
    with pytest.raises(DataContractError, match="no patient found"), ct_rows(url):
        pass
