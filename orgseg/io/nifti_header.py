"""NIfTI-1 and NIfTI-2 headers decoded and encoded with numpy alone.

A header is 348 (NIfTI-1) or 540 (NIfTI-2) bytes of fixed fields. Reading one through
nibabel costs its import (about a quarter of a second, more than the contour of a CT
takes on the coarse grid), paid by every ``orgseg body-mask`` process of a 100,000-mask
run; nibabel stays the reference the tests hold this module to.

The geometry follows the NIfTI-1 standard and its reference library (nifti1_io.c): the
sform when its code is set, else the qform (quaternion, ``pixdim[0]`` the handedness,
anything but a negative value read as +1), else the Analyze default (pixdim scaling about
the grid's centre, x flipped), which is what nibabel's ``get_best_affine`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from orgseg.errors import DataContractError

NIFTI1_BYTES = 348
NIFTI2_BYTES = 540
#: the data of a single-file NIfTI-1 written here starts after the header and the
#: 4-byte extension flag (no extensions)
NIFTI1_VOX_OFFSET = 352

_NIFTI1 = [
    ("sizeof_hdr", "i4"),
    ("data_type", "S10"),
    ("db_name", "S18"),
    ("extents", "i4"),
    ("session_error", "i2"),
    ("regular", "S1"),
    ("dim_info", "u1"),
    ("dim", "i2", (8,)),
    ("intent_p", "f4", (3,)),
    ("intent_code", "i2"),
    ("datatype", "i2"),
    ("bitpix", "i2"),
    ("slice_start", "i2"),
    ("pixdim", "f4", (8,)),
    ("vox_offset", "f4"),
    ("scl_slope", "f4"),
    ("scl_inter", "f4"),
    ("slice_end", "i2"),
    ("slice_code", "u1"),
    ("xyzt_units", "u1"),
    ("cal_max", "f4"),
    ("cal_min", "f4"),
    ("slice_duration", "f4"),
    ("toffset", "f4"),
    ("glmax", "i4"),
    ("glmin", "i4"),
    ("descrip", "S80"),
    ("aux_file", "S24"),
    ("qform_code", "i2"),
    ("sform_code", "i2"),
    ("quatern", "f4", (3,)),
    ("qoffset", "f4", (3,)),
    ("srow", "f4", (3, 4)),
    ("intent_name", "S16"),
    ("magic", "S4"),
]
_NIFTI2 = [
    ("sizeof_hdr", "i4"),
    ("magic", "S8"),
    ("datatype", "i2"),
    ("bitpix", "i2"),
    ("dim", "i8", (8,)),
    ("intent_p", "f8", (3,)),
    ("pixdim", "f8", (8,)),
    ("vox_offset", "i8"),
    ("scl_slope", "f8"),
    ("scl_inter", "f8"),
    ("cal_max", "f8"),
    ("cal_min", "f8"),
    ("slice_duration", "f8"),
    ("toffset", "f8"),
    ("slice_start", "i8"),
    ("slice_end", "i8"),
    ("descrip", "S80"),
    ("aux_file", "S24"),
    ("qform_code", "i4"),
    ("sform_code", "i4"),
    ("quatern", "f8", (3,)),
    ("qoffset", "f8", (3,)),
    ("srow", "f8", (3, 4)),
    ("slice_code", "i4"),
    ("xyzt_units", "i4"),
    ("intent_code", "i4"),
    ("intent_name", "S16"),
    ("dim_info", "u1"),
    ("unused_str", "S15"),
]

#: NIfTI datatype code -> numpy type, for the scalar types a CT or a mask can have
DATATYPES = {
    2: "u1",
    4: "i2",
    8: "i4",
    16: "f4",
    64: "f8",
    256: "i1",
    512: "u2",
    768: "u4",
    1024: "i8",
    1280: "u8",
}
_CODES = {np.dtype(v): k for k, v in DATATYPES.items()}
#: a header's byte order, as numpy spells it
ByteOrder = Literal["<", ">"]

#: xyzt_units: millimetres (2) and seconds (8)
_MM_SEC = 2 | 8


def header_dtype(version: int, byteorder: ByteOrder = "<") -> np.dtype:
    """The structured dtype of a NIfTI-``version`` header in ``byteorder``."""
    fields = _NIFTI1 if version == 1 else _NIFTI2
    return np.dtype(fields).newbyteorder(byteorder)


@dataclass(frozen=True, slots=True)
class NiftiHeader:
    """What orgseg needs of a NIfTI header: the grid, the voxel type, where the voxels
    start, their scaling and the voxel-to-RAS affine."""

    dims: tuple[int, ...]  # dim[1 : dim[0] + 1], file axes i, j, k, ...
    dtype: np.dtype  # in the file's byte order
    vox_offset: int
    pixdim: tuple[float, float, float]  # pixdim[1:4] as stored
    slope: float | None  # None: no scaling (scl_slope 0 or not finite)
    inter: float
    affine: np.ndarray  # (4, 4), voxel (i, j, k) to RAS mm

    @property
    def scaled(self) -> bool:
        """Whether the stored voxels are scaled to their values (slope not 1 or an
        intercept): they are then read as float32."""
        return self.slope is not None and (self.slope != 1.0 or self.inter != 0.0)

    def scale(self, stored: np.ndarray) -> np.ndarray:
        """``stored`` voxels as their values (float32 when :attr:`scaled`)."""
        if not self.scaled:
            return stored
        return stored.astype(np.float32) * np.float32(self.slope) + np.float32(self.inter)


def header_bytes(raw: bytes) -> int:
    """How many bytes the header at the start of ``raw`` has (348 or 540; 0 when its
    first field is neither, in either byte order)."""
    for order in ("little", "big"):
        size = int.from_bytes(raw[:4], order)
        if size in (NIFTI1_BYTES, NIFTI2_BYTES):
            return size
    return 0


def decode_header(raw: bytes, url: str) -> NiftiHeader:
    """Decode the NIfTI-1 or NIfTI-2 header at the start of ``raw``.

    Raises :class:`DataContractError` when ``raw`` holds no readable NIfTI header.
    """
    size = header_bytes(raw)
    if size == 0 or len(raw) < size:
        got = "too few bytes" if len(raw) < 4 else f"a first field of {raw[:4].hex()}"
        raise DataContractError(
            f"{url}: expected a NIfTI header ({NIFTI1_BYTES} or {NIFTI2_BYTES} bytes, "
            f"starting with its size), got {got} in {len(raw)} bytes; the file is truncated, "
            "corrupt or not NIfTI: re-download or re-export it"
        )
    version = 1 if size == NIFTI1_BYTES else 2
    order: ByteOrder = "<" if int.from_bytes(raw[:4], "little") == size else ">"
    h = np.frombuffer(raw, dtype=header_dtype(version, order), count=1)[0]
    magic = bytes(h["magic"])[:3]
    if magic not in (b"n+1", b"ni1", b"n+2", b"ni2"):
        raise DataContractError(
            f"{url}: expected the NIfTI magic 'n+1' or 'n+2', got {magic!r}; the file is "
            "corrupt or not NIfTI: re-download or re-export it"
        )
    ndim = int(h["dim"][0])
    if not 1 <= ndim <= 7:
        raise DataContractError(
            f"{url}: expected 1 to 7 dimensions in the NIfTI header, got dim[0] = {ndim}; "
            "the header is corrupt: re-export the image"
        )
    code = int(h["datatype"])
    if code not in DATATYPES:
        raise DataContractError(
            f"{url}: expected a scalar integer or float voxel type, the NIfTI header says "
            f"datatype {code} (complex, RGB or unknown); convert the image to a grey-level CT"
        )
    dims = tuple(int(d) for d in h["dim"][1 : ndim + 1])
    pixdim = np.asarray(h["pixdim"], dtype=np.float64)
    stored_slope, inter = float(h["scl_slope"]), float(h["scl_inter"])
    slope: float | None = stored_slope
    if stored_slope == 0 or not np.isfinite(stored_slope):
        slope, inter = None, 0.0
    elif not np.isfinite(inter):
        raise DataContractError(
            f"{url}: the NIfTI header scales voxels by {slope} but its intercept is {inter}; "
            "fix scl_inter in the header or re-export the image"
        )
    return NiftiHeader(
        dims=dims,
        dtype=np.dtype(DATATYPES[code]).newbyteorder(order),
        vox_offset=int(h["vox_offset"]),
        pixdim=(float(pixdim[1]), float(pixdim[2]), float(pixdim[3])),
        slope=slope,
        inter=inter,
        affine=_best_affine(h, dims, pixdim),
    )


def _best_affine(h: np.void, dims: Sequence[int], pixdim: np.ndarray) -> np.ndarray:
    affine = np.eye(4)
    if int(h["sform_code"]) != 0:
        affine[:3] = np.asarray(h["srow"], dtype=np.float64)
        return affine
    if int(h["qform_code"]) != 0:
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        zooms = pixdim[1:4] * [1.0, 1.0, qfac]
        affine[:3, :3] = quaternion_matrix(np.asarray(h["quatern"], np.float64)) * zooms
        affine[:3, 3] = np.asarray(h["qoffset"], dtype=np.float64)
        return affine
    shape = np.ones(3)
    shape[: min(3, len(dims))] = dims[:3]
    zooms = np.where(np.arange(3) < len(dims), pixdim[1:4], 1.0) * [-1.0, 1.0, 1.0]
    affine[:3, :3] = np.diag(zooms)
    affine[:3, 3] = -(shape - 1) / 2 * zooms
    return affine


def quaternion_matrix(bcd: np.ndarray) -> np.ndarray:
    """The rotation of the unit quaternion (a, b, c, d) whose a >= 0 is implied; a
    (b, c, d) slightly longer than 1 (float32 rounding) is normalised, as nifti1_io does."""
    b, c, d = (float(v) for v in bcd)
    a2 = 1.0 - (b * b + c * c + d * d)
    if a2 < 1e-7:
        norm = np.sqrt(b * b + c * c + d * d)
        b, c, d, a = b / norm, c / norm, d / norm, 0.0
    else:
        a = float(np.sqrt(a2))
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ]
    )


def matrix_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(b, c, d) of the unit quaternion of a proper rotation, with a >= 0 (Shepperd's
    method: the largest of the four squared components is taken first)."""
    r = np.asarray(rotation, dtype=np.float64)
    t = np.trace(r)
    candidates = [t, r[0, 0], r[1, 1], r[2, 2]]
    k = int(np.argmax(candidates))
    if k == 0:
        s = 2.0 * np.sqrt(max(1.0 + t, 0.0))
        q = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif k == 1:
        s = 2.0 * np.sqrt(max(1.0 + r[0, 0] - r[1, 1] - r[2, 2], 0.0))
        q = [(r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif k == 2:
        s = 2.0 * np.sqrt(max(1.0 - r[0, 0] + r[1, 1] - r[2, 2], 0.0))
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(max(1.0 - r[0, 0] - r[1, 1] + r[2, 2], 0.0))
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4]
    quat = np.asarray(q) / np.linalg.norm(q)
    if quat[0] < 0:
        quat = -quat
    return quat[1:]


def encode_header(dtype: np.dtype, dims: Sequence[int], affine: np.ndarray) -> bytes:
    """A little-endian single-file NIfTI-1 header (plus the empty extension flag) for
    voxels of ``dtype`` on a grid of ``dims`` (file axes i, j, k), with ``affine`` as
    both the qform and the sform (code 1, scanner), millimetres and seconds."""
    dtype = np.dtype(dtype)
    if dtype.newbyteorder("=") not in _CODES:
        raise DataContractError(
            f"expected a scalar integer or float voxel type to write NIfTI, got {dtype}"
        )
    affine = np.asarray(affine, dtype=np.float64)
    h = np.zeros((), dtype=header_dtype(1))
    h["sizeof_hdr"] = NIFTI1_BYTES
    h["dim"][: len(dims) + 1] = [len(dims), *dims]
    h["dim"][len(dims) + 1 :] = 1
    h["datatype"] = _CODES[dtype.newbyteorder("=")]
    h["bitpix"] = dtype.itemsize * 8
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    rotation = affine[:3, :3] / np.where(zooms > 0, zooms, 1.0)
    qfac = 1.0
    if np.linalg.det(rotation) < 0:
        qfac = -1.0
        rotation[:, 2] *= -1
    u, _, vt = np.linalg.svd(rotation)  # the nearest orthonormal matrix
    h["pixdim"] = [qfac, *zooms, 1.0, 1.0, 1.0, 1.0]
    h["vox_offset"] = NIFTI1_VOX_OFFSET
    h["scl_slope"] = 1.0
    h["xyzt_units"] = _MM_SEC
    h["qform_code"] = 1
    h["sform_code"] = 1
    h["quatern"] = matrix_quaternion(u @ vt)
    h["qoffset"] = affine[:3, 3]
    h["srow"] = affine[:3]
    h["magic"] = b"n+1"
    return h.tobytes() + b"\0\0\0\0"
