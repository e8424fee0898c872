from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from orgseg.core.volume import Volume
from orgseg.errors import DataContractError, StorageError
from orgseg.io import load_ct, read_volume, save_like, write_volume
from orgseg.io import volumes as volumes_module

OBLIQUE = np.array(
    [[0.0, 0.2, 0.98], [0.0, -0.98, 0.2], [-1.0, 0.0, 0.0]]
)  # rows: array axes in LPS; near-canonical with flips and a tilt
OBLIQUE = OBLIQUE / np.linalg.norm(OBLIQUE, axis=1, keepdims=True)


CANONICAL = np.eye(3)[[2, 1, 0]]


def ct_volume(direction=CANONICAL, shape=(6, 7, 8)) -> Volume:
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 500, size=shape).astype(np.int16)
    return Volume(
        arr, spacing_mm=(2.5, 0.7, 0.9), origin_mm=(-10.0, 20.5, 3.0), direction=direction
    )


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("direction", [np.eye(3)[[2, 1, 0]], OBLIQUE, np.diag([1.0, -1.0, -1.0])])
def test_write_read_round_trip_keeps_geometry(tmp_path, suffix, direction):
    vol = ct_volume(direction)
    url = str(tmp_path / f"ct{suffix}")
    write_volume(vol, url)
    back = read_volume(url)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.same_grid(vol, tol_mm=1e-4)


def test_canonical_round_trip_through_files(tmp_path):
    vol = ct_volume(OBLIQUE)
    url = str(tmp_path / "ct.nii.gz")
    write_volume(vol, url)
    canon, rec = load_ct(url, require_air=False)
    assert canon.direction[0, 2] > 0.9  # axis 0 runs towards superior
    save_like(np.asarray(canon.array), rec, str(tmp_path / "back.nii.gz"))
    back = read_volume(str(tmp_path / "back.nii.gz"))
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.same_grid(vol, tol_mm=1e-4)


def test_memory_url_round_trip():
    vol = ct_volume()
    write_volume(vol, "memory://orgseg-test/ct.nii.gz")
    back = read_volume("memory://orgseg-test/ct.nii.gz")
    np.testing.assert_array_equal(back.array, vol.array)


def test_real_nifti_and_dicom_agree_on_orientation(real_ct_path, real_dicom_dir):
    ct, _ = load_ct(str(real_ct_path))
    assert ct.shape == (30, 101, 122) and ct.spacing_mm == (3.0, 3.0, 3.0)
    dcm, rec = load_ct(str(real_dicom_dir))
    assert dcm.shape == (20, 512, 512)
    assert dcm.spacing_mm[0] == pytest.approx(2.0) and dcm.spacing_mm[1] == pytest.approx(0.9765625)
    # in the canonical frame the table (dense rows) is at the posterior end: high y
    rows = (dcm.array > 0).sum(axis=(0, 2))
    assert np.argmax(rows[::-1] > 500) < np.argmax(rows > 500) or rows[-100:].sum() > 0
    assert dcm.direction[0] @ np.array([0, 0, 1.0]) > 0.99


def test_dicom_missing_slice_is_reported(tmp_path, real_dicom_dir):
    files = sorted(os.listdir(real_dicom_dir))
    target = tmp_path / "series"
    target.mkdir()
    for f in files:
        shutil.copy(real_dicom_dir / f, target / f)
    # remove a slice from the middle of the stack (by position, not by name)
    positions = {}
    for f in files:
        r = sitk.ImageFileReader()
        r.SetFileName(str(target / f))
        r.ReadImageInformation()
        positions[f] = float(r.GetMetaData("0020|0032").split("\\")[2])
    middle = sorted(positions, key=positions.get)[len(files) // 2]
    (target / middle).unlink()
    with pytest.raises(DataContractError, match="missing"):
        read_volume(str(target))


def test_dicom_folder_with_two_series_needs_a_choice(tmp_path, real_dicom_dir):
    pydicom = pytest.importorskip("pydicom")
    target = tmp_path / "mixed"
    target.mkdir()
    for f in sorted(os.listdir(real_dicom_dir)):
        shutil.copy(real_dicom_dir / f, target / f)
        ds = pydicom.dcmread(real_dicom_dir / f)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.999"
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(target / f"b_{f}")
    with pytest.raises(DataContractError) as err:
        read_volume(str(target))
    assert "2 DICOM series" in str(err.value) and "1.2.826.0.1.3680043.8.498.999" in str(err.value)
    vol = read_volume(str(target), series_uid="1.2.826.0.1.3680043.8.498.999")
    assert vol.shape == (20, 512, 512)
    with pytest.raises(DataContractError, match="not in this folder"):
        read_volume(str(target), series_uid="1.2.3")


def test_truncated_gzip_is_a_clear_error(tmp_path):
    url = tmp_path / "ct.nii.gz"
    write_volume(ct_volume(), str(url))
    data = url.read_bytes()
    url.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataContractError, match=r"ct\.nii\.gz.*(truncated|corrupt)"):
        read_volume(str(url))


def test_not_an_image(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(DataContractError, match="expected an image file"):
        read_volume(str(txt))
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(gzip.compress(b"not a nifti header" * 30))
    with pytest.raises(DataContractError, match="fake.nii.gz"):
        read_volume(str(fake))


def test_missing_file_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        read_volume(str(tmp_path / "nope.nii.gz"))


def test_2d_and_4d_images_are_rejected(tmp_path):
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((10, 10), np.int16)), str(tmp_path / "a.nii.gz")
    )
    with pytest.raises(DataContractError, match="3D"):
        read_volume(str(tmp_path / "a.nii.gz"))
    nib.save(
        nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.int16), np.eye(4)), str(tmp_path / "b.nii.gz")
    )
    with pytest.raises(DataContractError, match="3D"):
        read_volume(str(tmp_path / "b.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 1), np.int16), np.eye(4)), str(tmp_path / "c.nii.gz"))
    with pytest.raises(DataContractError, match="single slice"):
        read_volume(str(tmp_path / "c.nii.gz"))


def test_nan_and_mr_range_and_empty_are_rejected(tmp_path):
    arr = np.full((5, 6, 7), -1000, np.float32)
    arr[2, 3, 3] = np.nan
    write_volume(Volume(arr), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(DataContractError, match="NaN"):
        load_ct(str(tmp_path / "nan.nii.gz"))
    mr = np.random.default_rng(0).integers(0, 1200, (5, 6, 7)).astype(np.int16)
    write_volume(Volume(mr), str(tmp_path / "mr.nii.gz"))
    with pytest.raises(DataContractError, match="MR"):
        load_ct(str(tmp_path / "mr.nii.gz"))
    assert load_ct(str(tmp_path / "mr.nii.gz"), require_air=False)[0].shape == (5, 6, 7)
    from orgseg.core.validate import check_ct

    with pytest.raises(DataContractError, match="empty"):
        check_ct(Volume(np.zeros((0, 4, 4), np.int16)))


@pytest.mark.parametrize("pixdim", [0.0, -2.0])
def test_zero_or_negative_spacing_is_rejected(tmp_path, pixdim):
    img = nib.Nifti1Image(np.full((5, 4, 3), -1000, np.int16), np.eye(4))
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    path = tmp_path / "s.nii"
    nib.save(img, str(path))
    raw = bytearray(path.read_bytes())
    raw[80:84] = struct.pack("<f", pixdim)  # pixdim[1]
    path.write_bytes(bytes(raw))
    with pytest.raises(DataContractError, match="positive voxel spacing"):
        read_volume(str(path))


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    url = tmp_path / "out" / "ct.nii.gz"

    def crash(volume, path, compress=True):
        Path(path).write_bytes(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(volumes_module, "write_nifti", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_volume(ct_volume(), str(url))
    assert not url.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_write_keeps_the_previous_output(tmp_path, monkeypatch):
    url = tmp_path / "ct.nii.gz"
    write_volume(ct_volume(), str(url))
    before = url.read_bytes()

    def crash(volume, path, compress=True):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("killed")

    monkeypatch.setattr(volumes_module, "write_nifti", crash)
    with pytest.raises(RuntimeError):
        write_volume(ct_volume(), str(url))
    assert url.read_bytes() == before


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.bool_])
def test_nifti_writer_geometry_is_what_itk_writes(tmp_path, dtype):
    """orgseg writes NIfTI without ITK; ITK (and nnU-Net, which reads through it) sees the
    same voxels, spacing, origin and oblique or mirrored direction as in ITK's own file."""

    from orgseg.io.volumes import _to_sitk

    rng = np.random.default_rng(int(np.dtype(dtype).itemsize))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a random rotation or reflection
    array = (rng.normal(size=(7, 9, 11)) * 100).astype(dtype)
    volume = Volume(array, spacing_mm=(2.5, 0.7, 0.9), origin_mm=(10.0, -20.0, 30.5), direction=q)
    ours, theirs = tmp_path / "ours.nii.gz", tmp_path / "itk.nii.gz"
    write_volume(volume, str(ours))
    sitk.WriteImage(_to_sitk(volume), str(theirs))
    a, b = sitk.ReadImage(str(ours)), sitk.ReadImage(str(theirs))
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6)
    assert a.GetPixelIDTypeAsString() == b.GetPixelIDTypeAsString()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    back = read_volume(str(ours))
    np.testing.assert_array_equal(
        back.array, array.astype(np.uint8) if dtype is np.bool_ else array
    )
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-6)


@pytest.mark.parametrize(
    "direction",
    [
        np.eye(3),  # z, y, x already canonical
        np.diag([-1.0, -1.0, 1.0]),  # slices stored head first: rows written in reverse
        np.diag([1.0, -1.0, -1.0]),  # in-plane flips only
        np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]]),  # sagittal slices: written whole
    ],
)
@pytest.mark.parametrize("packed", [False, True])
def test_save_like_writes_a_canonical_mask_back_in_the_files_geometry(tmp_path, direction, packed):
    from orgseg.core.body import PackedMask
    from orgseg.core.orientation import to_canonical

    rng = np.random.default_rng(5)
    original = Volume(
        rng.random((19, 7, 11)) < 0.4,
        spacing_mm=(2.5, 0.9, 0.8),
        origin_mm=(10.0, -20.0, 30.0),
        direction=direction,
    )
    canonical, reorientation = to_canonical(original)
    mask = PackedMask.pack(canonical.array) if packed else canonical.array
    url = str(tmp_path / "mask.nii.gz")
    save_like(mask, reorientation, url)
    back = read_volume(url)
    np.testing.assert_array_equal(back.array, original.array.astype(np.uint8))
    assert back.spacing_mm == pytest.approx(original.spacing_mm)
    assert back.origin_mm == pytest.approx(original.origin_mm)
    np.testing.assert_allclose(back.direction, original.direction, atol=1e-6)
