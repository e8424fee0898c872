"""orgseg's NIfTI header codec against nibabel's reading and writing of the same headers."""

from __future__ import annotations

import io
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from orgseg.core.volume import Volume
from orgseg.errors import DataContractError
from orgseg.io import read_volume, write_volume
from orgseg.io.nifti_header import (
    decode_header,
    encode_header,
    header_dtype,
    quaternion_matrix,
)

# orgseg groups nibabel's numbered fields (quatern_b, _c, _d) into arrays
_FIRST_OF = {
    "intent_p": "intent_p1",
    "quatern": "quatern_b",
    "qoffset": "qoffset_x",
    "srow": "srow_x",
}


def _affines() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    out = []
    for k in range(6):
        if k == 0:
            rot = np.diag([-1.0, -1.0, 1.0])  # LPS-stored axes, as ITK writes them
        elif k == 1:
            rot = np.eye(3)
        else:  # oblique: a random rotation
            q = rng.normal(size=4)
            q *= np.sign(q[0]) / np.linalg.norm(q)
            rot = quaternion_matrix(q[1:])
        if k % 2:
            rot = rot.copy()
            rot[:, 2] *= -1  # left-handed: qfac -1
        affine = np.eye(4)
        affine[:3, :3] = rot @ np.diag([0.8, 0.9, 2.5])
        affine[:3, 3] = [-120.0, 35.5, 410.0]
        out.append(affine)
    return out


@pytest.mark.parametrize(("version", "klass"), [(1, nib.Nifti1Header), (2, nib.Nifti2Header)])
def test_the_field_layout_is_nibabels(version, klass):
    ours, theirs = header_dtype(version), klass.template_dtype
    assert ours.itemsize == theirs.itemsize
    for name in ours.names:
        assert ours.fields[name][1] == theirs.fields[_FIRST_OF.get(name, name)][1], name


@pytest.mark.parametrize("k", range(6))
def test_an_encoded_header_is_byte_for_byte_the_one_nibabel_writes(k):
    affine = _affines()[k]
    ref = nib.Nifti1Header()
    ref.set_data_dtype(np.int16)
    ref.set_data_shape((5, 6, 7))
    ref.set_qform(affine, code=1)
    ref.set_sform(affine, code=1)
    ref.set_xyzt_units("mm", "sec")
    ref["vox_offset"] = 352
    ours = encode_header(np.dtype(np.int16), (5, 6, 7), affine)
    assert ours == ref.binaryblock + b"\0\0\0\0"
    np.testing.assert_allclose(decode_header(ours, "x").affine, affine, atol=1e-5)


def _nibabel_header(affine: np.ndarray, *, sform: bool, qform: bool, order: str = "<"):
    h = nib.Nifti1Header(endianness=order)
    h.set_data_dtype(np.float32)
    h.set_data_shape((4, 9, 3))
    h.set_qform(affine, code=1 if qform else 0)
    h.set_sform(affine @ np.diag([1.0, 1.0, 2.0, 1.0]), code=2 if sform else 0)  # unlike qform
    h.set_slope_inter(2.0, -1024.0)
    return h


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(("sform", "qform"), [(True, True), (False, True), (False, False)])
def test_the_decoded_affine_is_nibabels_best_affine(sform, qform, order):
    for affine in _affines():
        ref = _nibabel_header(affine, sform=sform, qform=qform, order=order)
        ours = decode_header(ref.binaryblock, "x")
        np.testing.assert_allclose(ours.affine, ref.get_best_affine(), atol=1e-12)
        assert ours.dims == (4, 9, 3) and ours.dtype == ref.get_data_dtype()
        assert (ours.slope, ours.inter) == ref.get_slope_inter()
        assert ours.vox_offset == int(ref["vox_offset"])


def test_a_zero_qfac_is_read_as_right_handed_as_nifti1_io_does():
    affine = _affines()[2]
    h = _nibabel_header(affine, sform=False, qform=True)
    h["pixdim"][0] = 0.0  # nibabel refuses this; the reference C library reads +1
    np.testing.assert_allclose(decode_header(h.binaryblock, "x").affine, affine, atol=1e-5)


def test_scaling_fields_follow_the_standard():
    h = _nibabel_header(np.eye(4), sform=True, qform=True)
    h["scl_slope"] = 0.0  # no scaling
    assert decode_header(h.binaryblock, "x").slope is None
    h["scl_slope"], h["scl_inter"] = 2.0, np.inf
    with pytest.raises(DataContractError, match="intercept"):
        decode_header(h.binaryblock, "bad.nii")


def test_damaged_or_unsupported_headers_are_refused_with_the_reason():
    good = _nibabel_header(np.eye(4), sform=True, qform=True)
    with pytest.raises(DataContractError, match="expected a NIfTI header"):
        decode_header(b"\x00" * 348, "zeros.nii")
    with pytest.raises(DataContractError, match="expected a NIfTI header"):
        decode_header(good.binaryblock[:200], "short.nii")
    bad_magic = bytearray(good.binaryblock)
    bad_magic[344:348] = b"abc\0"
    with pytest.raises(DataContractError, match="magic"):
        decode_header(bytes(bad_magic), "magic.nii")
    complex_header = good.copy()
    complex_header.set_data_dtype(np.complex64)
    with pytest.raises(DataContractError, match="datatype 32"):
        decode_header(complex_header.binaryblock, "complex.nii")


def test_a_nifti2_file_reads_as_nibabel_reads_it(tmp_path):
    data = np.random.default_rng(0).integers(-1000, 1000, (6, 5, 4)).astype(np.int16)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti2Image(data, _affines()[3]), str(path))
    vol = read_volume(str(path))
    ref = nib.load(str(path))
    np.testing.assert_array_equal(vol.array, np.transpose(np.asarray(ref.dataobj), (2, 1, 0)))
    header = decode_header(ref.header.binaryblock, "x")
    np.testing.assert_allclose(header.affine, ref.affine, atol=1e-12)


def test_a_written_volume_reads_back_in_nibabel_with_its_geometry(tmp_path):
    direction = quaternion_matrix(np.array([0.1, -0.2, 0.3]))
    vol = Volume(
        np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6),
        spacing_mm=(2.5, 0.9, 0.8),
        origin_mm=(-120.0, 35.5, 410.0),
        direction=direction,
    )
    path = tmp_path / "v.nii.gz"
    write_volume(vol, str(path))
    ref = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(ref.dataobj), np.transpose(vol.array, (2, 1, 0)))
    back = read_volume(str(path))
    assert back.spacing_mm == pytest.approx(vol.spacing_mm)
    assert back.origin_mm == pytest.approx(vol.origin_mm)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    np.testing.assert_allclose(ref.header.get_qform(), ref.header.get_sform(), atol=1e-5)


def test_a_body_mask_process_on_local_files_imports_neither_nibabel_nor_fsspec(tmp_path):
    from orgseg.phantoms import make_phantom

    ph = make_phantom(shape=(24, 48, 48), spacing_mm=(3.0, 3.0, 3.0), seed=1)
    write_volume(Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), str(tmp_path / "ct.nii.gz"))
    code = (
        "import sys; from orgseg.cli import main; "
        f"rc = main(['body-mask', '-i', '{tmp_path}/ct.nii.gz', '-o', '{tmp_path}/m.nii.gz']); "
        "heavy = [m for m in ('nibabel', 'fsspec') if m in sys.modules]; "
        "assert not heavy, f'{heavy} imported'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert read_volume(str(tmp_path / "m.nii.gz")).array.any()


def test_the_header_module_decodes_what_nibabel_saves_from_a_file_object():
    img = nib.Nifti1Image(np.zeros((3, 4, 5), np.uint8), _affines()[4])
    buf = io.BytesIO()
    img.to_file_map({"image": nib.FileHolder(fileobj=buf)})
    header = decode_header(buf.getvalue(), "x")
    assert header.dims == (3, 4, 5) and header.dtype == np.uint8
    np.testing.assert_allclose(header.affine, img.affine, atol=1e-5)
