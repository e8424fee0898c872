"""Awkward inputs meet the one reader that training data and inference share: a header
that lies about its size, a scan of pure air, a label that is no label."""

from __future__ import annotations

import gzip
import io
import resource

import nibabel as nib
import numpy as np
import pytest

from orgseg.core.volume import Volume
from orgseg.errors import DataContractError
from orgseg.io import load_ct, read_volume, write_volume
from orgseg.io.headers import read_header


def hostile_nifti(path, *, shape=(2000, 2000, 2000), compress=True) -> int:
    """A tiny NIfTI whose header claims ``shape`` int16 voxels (16 GB at 2000^3)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_zooms((1.0, 1.0, 1.0))
    buf = io.BytesIO()
    header.write_to(buf)
    raw = buf.getvalue() + b"\0" * 4 + bytes(range(256)) * 3
    data = gzip.compress(raw) if compress else raw
    path.write_bytes(data)
    return len(data)


@pytest.mark.parametrize("compress", [True, False])
def test_a_header_claiming_more_than_the_file_holds_is_refused_before_allocating(
    tmp_path, compress
):
    path = tmp_path / ("big.nii.gz" if compress else "big.nii")
    size = hostile_nifti(path, compress=compress)
    assert size < 2000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataContractError, match="claims a grid of 2000 x 2000 x 2000"):
        read_volume(str(path))
    with pytest.raises(DataContractError, match="claims a grid"):
        read_header(str(path))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500  # the 16 GB were never asked for


@pytest.mark.parametrize(
    ("name", "shape"),
    [("short.nii", (64, 64, 64)), ("short.nii.gz", (1024, 1024, 1000))],
)
def test_a_claim_below_the_voxel_bound_the_file_cannot_hold_is_truncation(tmp_path, name, shape):
    # 512 KB claimed by ~1 KB uncompressed; 2 GB claimed by ~0.3 KB of gzip (max ~1000:1)
    path = tmp_path / name
    hostile_nifti(path, shape=shape, compress=name.endswith(".gz"))
    with pytest.raises(DataContractError, match="truncated"):
        read_volume(str(path))
    with pytest.raises(DataContractError, match="truncated"):
        read_header(str(path))


def test_a_huge_grid_in_an_itk_header_is_refused(tmp_path):
    path = tmp_path / "big.mha"
    path.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 3000 3000 3000\nElementType = MET_SHORT\n"
        "ElementSpacing = 1 1 1\nElementDataFile = LOCAL\n"
    )
    with pytest.raises(DataContractError, match="claims a grid"):
        read_volume(str(path))


def test_pure_air_is_no_patient(tmp_path):
    air = Volume(np.full((40, 128, 128), -1000, np.int16), spacing_mm=(5.0, 3.0, 3.0))
    write_volume(air, str(tmp_path / "air.nii.gz"))
    with pytest.raises(DataContractError, match="no patient found"):
        load_ct(str(tmp_path / "air.nii.gz"))
    noisy = Volume(
        (np.random.default_rng(0).normal(-1000, 30, air.shape)).astype(np.int16),
        spacing_mm=air.spacing_mm,
    )
    write_volume(noisy, str(tmp_path / "noisy_air.nii.gz"))
    with pytest.raises(DataContractError, match="no patient found"):
        load_ct(str(tmp_path / "noisy_air.nii.gz"))


def test_header_grid_equals_the_volumes(tmp_path, real_ct_path):
    header = read_header(str(real_ct_path))
    volume = read_volume(str(real_ct_path))
    assert header.grid.differences(volume.grid) == []
    assert header.file_bytes == real_ct_path.stat().st_size


def test_header_reader_and_reader_agree_on_itk_formats(tmp_path):
    # an MHA with its voxels inside, and an MHD whose voxels live in another file
    vol = Volume(np.full((4, 5, 6), 40, np.int16), spacing_mm=(2.0, 1.0, 1.5))
    for name in ("ct.mha", "ct.mhd"):
        write_volume(vol, str(tmp_path / name))
        assert read_header(str(tmp_path / name)).grid.differences(vol.grid) == []
        assert read_volume(str(tmp_path / name)).grid.differences(vol.grid) == []
