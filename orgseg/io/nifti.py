"""NIfTI reading: the header checked before anything is allocated, the voxels read once.

ITK silently zero-fills truncated gzip files, turns NaN into 0 and replaces a zero pixdim
by 1 mm, so NIfTI is not read through ITK. :mod:`orgseg.io.nifti_header` decodes the
header and its affine (nibabel, whose import alone costs a quarter of a second, is the
reference its tests hold it to); the voxels are decompressed once, with ISA-L's gzip
(``isal``, several times zlib's speed) where installed, straight into one buffer that the
array is a view of: NIfTI's x-fastest order is already orgseg's (z, y, x) C order, so
nothing is transposed or copied.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from typing import IO

import numpy as np

from orgseg.core.volume import Volume
from orgseg.errors import DataContractError
from orgseg.io.nifti_header import NIFTI2_BYTES, NiftiHeader, decode_header, encode_header

try:  # ISA-L's gzip: same format, a few times faster to decompress
    from isal import igzip as _fast_gzip
except ImportError:  # pragma: no cover - isal is a dependency; plain gzip still works
    _fast_gzip = None  # type: ignore[assignment]


def open_maybe_gzip(path: str) -> IO[bytes]:
    if path.lower().endswith(".gz"):
        return (_fast_gzip or gzip).open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


#: no CT needs more voxels than this (2**31: e.g. 1024 x 1024 x 2048); a header that
#: claims more is corrupt or hostile, and reading it would exhaust a node's memory
MAX_VOXELS = 2**31
#: deflate (gzip) cannot expand data more than about 1032:1; a compressed file claiming
#: more than this many times its size is truncated or lying
MAX_DEFLATE_RATIO = 1100


def check_claimed_size(
    url: str,
    *,
    dims: Sequence[int],
    bytes_per_voxel: float,
    file_bytes: int,
    compressed: bool,
    data_offset: int = 0,
) -> None:
    """Refuse a header whose grid the file cannot hold, before allocating anything.

    A 1.3 KB file whose header claims 2000 x 2000 x 2000 voxels would otherwise make the
    reader allocate 16 GB before failing (and a low-RAM node kill the whole batch).
    """
    voxels = int(np.prod([max(int(d), 1) for d in dims], dtype=np.int64))
    claimed = voxels * bytes_per_voxel
    grid = " x ".join(str(int(d)) for d in dims)
    if voxels > MAX_VOXELS:
        raise DataContractError(
            f"{url}: the header claims a grid of {grid} ({voxels:,} voxels), above the "
            f"{MAX_VOXELS:,} any CT needs; the header is corrupt: re-export the image"
        )
    limit = file_bytes * MAX_DEFLATE_RATIO if compressed else file_bytes - data_offset
    if claimed > limit:
        raise DataContractError(
            f"{url}: the header claims a grid of {grid} ({claimed / 1e6:,.1f} MB of voxels) "
            f"but the file holds only {file_bytes:,} bytes"
            + (" (more than gzip can expand)" if compressed else "")
            + "; the file is truncated or its header is corrupt: re-download or re-export it"
        )


def read_nifti_header(path: str, url: str) -> NiftiHeader:
    """The header as stored, after the claimed-size and pixdim checks."""
    try:
        with open_maybe_gzip(path) as fh:
            raw = fh.read(NIFTI2_BYTES)
    except Exception as exc:  # gzip/zlib/isal raise several types for damaged streams
        raise DataContractError(
            f"{url}: cannot read the NIfTI header ({type(exc).__name__}: {exc}); the file is "
            "truncated, corrupt or not NIfTI: re-download or re-export it"
        ) from None
    header = decode_header(raw, url)
    check_claimed_size(
        url,
        dims=header.dims,
        bytes_per_voxel=header.dtype.itemsize,
        file_bytes=os.path.getsize(path),
        compressed=path.lower().endswith(".gz"),
        data_offset=header.vox_offset,
    )
    pixdim = list(header.pixdim)
    ndim = len(header.dims)
    if ndim >= 3 and any(not (v > 0) for v in pixdim[: min(ndim, 3)]):
        raise DataContractError(
            f"{url}: expected positive voxel spacing, the NIfTI header says pixdim "
            f"{pixdim} mm; fix the header (pixdim[1:4]) or re-export the image"
        )
    return header


def read_into(fh: IO[bytes], view: memoryview, url: str) -> int:
    """Fill ``view`` from the (decompressing) stream ``fh``; the bytes read, fewer only at
    the end of the stream. A damaged stream is a :class:`DataContractError`."""
    got, n_bytes = 0, len(view)
    try:
        while got < n_bytes:
            k = fh.readinto(view[got:])  # type: ignore[attr-defined]
            if not k:
                break
            got += k
    except Exception as exc:  # gzip/zlib/isal raise several types for damaged streams
        raise DataContractError(
            f"{url}: cannot read the image ({type(exc).__name__}: {exc}); the file is "
            "truncated, corrupt or not an image: re-download or re-export it"
        ) from None
    return got


def truncated(url: str, got: int, claimed: int) -> DataContractError:
    return DataContractError(
        f"{url}: the file ends after {got:,} of the {claimed:,} bytes its header claims; "
        "it is truncated: re-download or re-export it"
    )


def _payload(path: str, url: str, n_bytes: int) -> np.ndarray:
    """The file's first ``n_bytes`` (decompressed), read once into one buffer (not
    zero-filled first: every byte is written by the read or the file is refused)."""
    buf = np.empty(n_bytes, dtype=np.uint8)
    with open_maybe_gzip(path) as fh:
        got = read_into(fh, buf.data, url)
    if got < n_bytes:
        raise truncated(url, got, n_bytes)
    return buf


def read_nifti(path: str, url: str) -> Volume:
    """A local NIfTI file as a :class:`Volume` (the file's own axis order and geometry)."""
    header = read_nifti_header(path, url)
    dims = list(header.dims)
    count = int(np.prod(dims, dtype=np.int64))
    buf = _payload(path, url, header.vox_offset + count * header.dtype.itemsize)
    # x fastest on disk: the C-order array of the reversed dims is (..., z, y, x)
    data = np.frombuffer(buf, dtype=header.dtype, count=count, offset=header.vox_offset)
    data = data.reshape(dims[::-1])
    data = header.scale(data)  # float32 when the header scales, else as stored
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 3:
        raise DataContractError(
            f"{url}: expected a 3D image, got a {data.ndim}D image of shape "
            f"{tuple(dims)}; orgseg segments 3D CT volumes (split 4D series, stack 2D "
            "slices into a series)"
        )
    if 1 in data.shape:
        raise DataContractError(
            f"{url}: expected a 3D volume, got a single slice (shape {tuple(dims)}); "
            "a 2D image cannot be segmented in 3D"
        )
    spacing, origin, direction = nifti_geometry(header.affine, url)
    return Volume(data, spacing_mm=spacing, origin_mm=origin, direction=direction)


def nifti_geometry(
    affine: np.ndarray, url: str
) -> tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray]:
    """(spacing (z, y, x), LPS origin, direction rows (z, y, x)) of a NIfTI affine, whose
    columns are the file's axes i, j, k in RAS; the array is read as (k, j, i)."""
    ras_to_lps = np.array([-1.0, -1.0, 1.0])
    columns = affine[:3, :3] * ras_to_lps[:, None]  # column c: file axis c (i, j, k) in LPS
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise DataContractError(
            f"{url}: expected positive voxel spacing, the affine gives {spacing.tolist()} mm; "
            "fix the NIfTI header"
        )
    direction = np.stack([columns[:, 2 - a] / spacing[2 - a] for a in range(3)])
    return (
        tuple(float(spacing[2 - a]) for a in range(3)),  # type: ignore[return-value]
        tuple(float(v) for v in affine[:3, 3] * ras_to_lps),  # type: ignore[return-value]
        direction,
    )


def nifti_affine(
    spacing_mm: Sequence[float], origin_mm: Sequence[float], direction: np.ndarray
) -> np.ndarray:
    """The NIfTI affine (voxel i, j, k to RAS) of a (z, y, x) grid: the inverse of
    :func:`nifti_geometry`."""
    ras_to_lps = np.array([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    for c in range(3):  # file axis c (i, j, k) is array axis 2 - c
        affine[:3, c] = np.asarray(direction)[2 - c] * spacing_mm[2 - c] * ras_to_lps
    affine[:3, 3] = np.asarray(origin_mm, dtype=float) * ras_to_lps
    return affine


def file_dtype(dtype: np.dtype) -> np.dtype:
    """The voxel type an array of ``dtype`` is written as: bool as uint8, float64 as
    float32, in native byte order."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype == np.float64:
        return np.dtype(np.float32)
    return dtype.newbyteorder("=")


def write_nifti(volume: Volume, path: str, *, compress: bool) -> None:
    """Write ``volume`` as a NIfTI-1 file at the local ``path`` (see
    :func:`write_nifti_slabs`)."""
    array = np.asarray(volume.array)
    write_nifti_slabs(
        path,
        [array],
        dims=array.shape[::-1],
        dtype=array.dtype,
        affine=nifti_affine(volume.spacing_mm, volume.origin_mm, volume.direction),
        compress=compress,
    )


def write_nifti_slabs(
    path: str,
    slabs: Iterable[np.ndarray],
    *,
    dims: Sequence[int],
    dtype: np.dtype,
    affine: np.ndarray,
    compress: bool,
) -> None:
    """Write a NIfTI-1 file at the local ``path`` from ``slabs``, consecutive blocks of the
    file's slowest axis (each a C-order ``(n, j, i)`` array), so a volume is written
    without a whole-size copy. gzip at level 1 when ``compress``: a label mask compresses
    nearly as well as at level 6, several times faster. The affine goes into both the
    qform and the sform; bool is written as uint8 and float64 as float32."""
    out_dtype = file_dtype(dtype)
    head = encode_header(out_dtype, dims, affine)  # no extensions
    expected = int(np.prod(dims, dtype=np.int64)) * out_dtype.itemsize
    written = 0
    gzip_open = (_fast_gzip or gzip).open
    with gzip_open(path, "wb", compresslevel=1) if compress else open(path, "wb") as f:
        f.write(head)
        for slab in slabs:
            slab = np.asarray(slab)
            if slab.dtype == np.bool_:
                slab = slab.view(np.uint8)
            data = np.ascontiguousarray(slab, dtype=out_dtype)
            f.write(data.data.cast("B"))
            written += data.nbytes
    if written != expected:
        raise DataContractError(
            f"{path}: wrote {written:,} bytes of voxels, expected {expected:,} for a grid of "
            f"{tuple(dims)}; the slabs do not cover the volume (a bug: please report it)"
        )
