"""A CT whose voxels stay on local disk, read a slab of axial rows at a time.

Every stage that walks a whole scan (the CT checks, the body contour, the patient size,
the streamed engine, the organ statistics) reads it a slab of canonical rows at a time.
:func:`ct_rows` lets them keep only those slabs in memory: a NIfTI is decompressed once
into a raw file in a temporary folder (an uncompressed ``.nii`` is read in place), and
each slab is read back with one ``preadv`` into its own buffer. The process then holds
slabs, not the scan; the rest sits in the operating system's page cache, which the
kernel reclaims under pressure instead of killing the job (a cgroup's limit counts it
as reclaimable). This works when the file's slowest axis is the cranio-caudal one (an
axial series, as scanners and converters write them); any other layout, and DICOM, NRRD
or MHA, is read whole as :func:`orgseg.io.load_ct` reads it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import DTypeLike

from orgseg.core.orientation import (
    Reorientation,
    check_slices_are_axial,
    file_rows,
    slices_are_axial,
    to_canonical,
    to_canonical_axes,
)
from orgseg.core.validate import check_ct, check_geometry
from orgseg.core.volume import Volume
from orgseg.errors import DataContractError
from orgseg.io.nifti import (
    nifti_geometry,
    open_maybe_gzip,
    read_into,
    read_nifti,
    read_nifti_header,
    truncated,
)
from orgseg.io.nifti_header import NiftiHeader
from orgseg.io.storage import local_copy, split_suffix

log = logging.getLogger(__name__)

#: axial slices decompressed and written per step while spilling
_SPILL_ROWS = 16


class ScanRows:
    """The canonical (z, y, x) voxels of a scan in a raw file, as a read-only array of
    rows: ``rows[a:b]``, ``rows[r]`` and ``rows[a:b, ys, xs]`` read those rows only.

    ``path`` holds the file's own slices (``reorientation.shape``, ``offset`` bytes in),
    its slowest axis the cranio-caudal one; canonical rows are read as the file slices
    :func:`~orgseg.core.orientation.file_rows` names, brought to the canonical frame by
    :func:`~orgseg.core.orientation.to_canonical_axes`. ``np.asarray`` reads it whole
    (what a caller that needs every voxel at once, a preview, asks for)."""

    ndim = 3

    def __init__(
        self, path: str, *, offset: int, dtype: np.dtype, reorientation: Reorientation
    ) -> None:
        check_slices_are_axial(reorientation, name=path)
        self.path = path
        self.offset = offset
        self.dtype = np.dtype(dtype)
        self.reorientation = reorientation
        file_shape = reorientation.shape
        self.shape = tuple(file_shape[p] for p in reorientation.perm)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self._slice_bytes = file_shape[1] * file_shape[2] * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, start: int, stop: int) -> np.ndarray:
        """Canonical rows ``[start, stop)`` as a C-contiguous array."""
        n_rows = self.shape[0]
        start, stop = max(0, min(start, n_rows)), max(0, min(stop, n_rows))
        first, last = file_rows(self.reorientation, start, max(start, stop))
        buf = np.empty((last - first, *self.reorientation.shape[1:]), dtype=self.dtype)
        if last > first:
            want = buf.nbytes
            got = os.preadv(self._fd, [buf.data.cast("B")], self.offset + first * self._slice_bytes)
            if got != want:
                raise OSError(f"{self.path}: read {got} of {want} bytes of rows {start}-{stop}")
        r = self.reorientation
        return np.ascontiguousarray(to_canonical_axes(buf, r.perm, r.flips))

    def __getitem__(self, key: object) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            rest = key[1:]
            key = key[0]
        if isinstance(key, (int, np.integer)):
            r = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= r < self.shape[0]:
                raise IndexError(f"row {key} outside a scan of {self.shape[0]} rows")
            return self.read(r, r + 1)[(0, *rest)]
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(self.shape[0])
            block = self.read(start, max(start, stop))
            return block[(slice(None), *rest)] if rest else block
        raise TypeError(f"ScanRows reads rows by an index or a slice of step 1, got {key!r}")

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        log.debug("reading all %d rows of %s at once", self.shape[0], self.path)
        whole = self.read(0, self.shape[0])
        return whole if dtype is None else whole.astype(dtype)


@contextmanager
def ct_rows(
    url: str, *, series_uid: str | None = None, require_air: bool = True
) -> Iterator[tuple[Volume, Reorientation]]:
    """What :func:`orgseg.io.load_ct` returns, with the voxels read a slab at a time.

    The volume's ``array`` is a :class:`ScanRows` for an axial NIfTI (checked as
    :func:`load_ct` checks a CT), else the whole in-memory array. The raw file is
    removed when the block ends, also on failure."""
    from orgseg.io.volumes import load_ct

    _, suffix = split_suffix(url)
    if suffix.lower() not in (".nii", ".nii.gz"):
        yield load_ct(url, series_uid=series_uid, require_air=require_air)
        return
    with local_copy(url) as path:
        header = read_nifti_header(path, url)
        dims = list(header.dims)
        while len(dims) > 3 and dims[-1] == 1:
            dims.pop()
        if len(dims) != 3 or 1 in dims:  # read_nifti words the error
            yield _whole(path, url, require_air)
            return
        spacing, origin, direction = nifti_geometry(header.affine, url)
        file_shape = (dims[2], dims[1], dims[0])
        grid = np.broadcast_to(np.zeros((), dtype=np.int8), file_shape)  # no voxels
        canonical, reorientation = to_canonical(
            Volume(grid, spacing_mm=spacing, origin_mm=origin, direction=direction)
        )
        if not slices_are_axial(reorientation):
            log.debug("%s: slices are not axial (axes %s): read whole", url, reorientation.perm)
            yield _whole(path, url, require_air)
            return
        scaled = header.scaled
        native = header.dtype.newbyteorder("=")
        tmpdir = None
        rows = None
        try:
            if path.lower().endswith(".nii") and not scaled and header.dtype == native:
                raw, offset, dtype = path, header.vox_offset, native
            else:
                tmpdir = tempfile.mkdtemp(prefix="orgseg-scan-")
                raw, offset = os.path.join(tmpdir, "ct.raw"), 0
                dtype = np.dtype(np.float32) if scaled else native
                _spill(path, url, raw, header, file_shape, dtype)
            rows = ScanRows(raw, offset=offset, dtype=dtype, reorientation=reorientation)
            ct = Volume(
                rows,  # type: ignore[arg-type]
                spacing_mm=canonical.spacing_mm,
                origin_mm=canonical.origin_mm,
                direction=canonical.direction,
            )
            check_ct(ct, name=url, require_air=require_air)
            yield ct, reorientation
        finally:  # also when the spill or the checks fail
            if rows is not None:
                rows.close()
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)


def _whole(path: str, url: str, require_air: bool) -> tuple[Volume, Reorientation]:
    """The local NIfTI at ``path`` read whole and checked, as :func:`load_ct` reads it."""
    volume = read_nifti(path, url)
    check_geometry(volume, name=url)
    check_ct(volume, name=url, require_air=require_air)
    return to_canonical(volume)


def _spill(
    path: str,
    url: str,
    raw: str,
    header: NiftiHeader,
    file_shape: tuple[int, int, int],
    dtype: np.dtype,
) -> None:
    """Decompress (and scale, and byte-swap) the voxels into ``raw``, a slab at a time."""
    plane = file_shape[1] * file_shape[2]
    itemsize = header.dtype.itemsize
    slab = np.empty(_SPILL_ROWS * plane, dtype=header.dtype)
    view = slab.data.cast("B")
    with open_maybe_gzip(path) as src, open(raw, "wb") as dst:
        if len(src.read(header.vox_offset)) < header.vox_offset:
            raise DataContractError(f"{url}: the file ends inside its header; it is truncated")
        for a in range(0, file_shape[0], _SPILL_ROWS):
            n = min(_SPILL_ROWS, file_shape[0] - a) * plane
            got = read_into(src, view[: n * itemsize], url)
            if got < n * itemsize:
                claimed = int(np.prod(file_shape, dtype=np.int64)) * itemsize
                raise truncated(url, a * plane * itemsize + got, claimed)
            values = header.scale(slab[:n])
            dst.write(np.ascontiguousarray(values, dtype=dtype).data.cast("B"))
