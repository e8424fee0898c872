"""Image headers without the voxels: the grid an image file claims, read cheaply.

NIfTI headers are read from the first block of the file (a ranged read on object
stores; gzip needs only its first deflate block), so a data audit over thousands of
cases never downloads a volume. Other formats go through ITK's header reader.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
from dataclasses import dataclass

import numpy as np

from orgseg.core.volume import Grid
from orgseg.errors import DataContractError
from orgseg.io.nifti import check_claimed_size, nifti_geometry
from orgseg.io.nifti_header import NIFTI2_BYTES, decode_header
from orgseg.io.storage import filesystem, local_copy, read_head, split_suffix
from orgseg.io.volumes import checked_itk_info, first_error_line

log = logging.getLogger(__name__)

#: bytes fetched for a header: NIfTI-1 needs 348 (NIfTI-2 540) after decompression
HEADER_BLOCK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageHeader:
    """An image file's grid and voxel type, as its header states them."""

    url: str
    grid: Grid
    dtype: str
    file_bytes: int


def _read_head(url: str, n: int) -> tuple[bytes, int]:
    """The first ``n`` bytes of a file and its size."""
    head = read_head(url, n)
    fs, path = filesystem(url)
    return head, int(fs.size(path))


def read_header(url: str) -> ImageHeader:
    """The grid an image file claims, without reading its voxels.

    Raises :class:`DataContractError` for a header that is unreadable, or that claims
    more voxels than the file can hold (see :func:`orgseg.io.nifti.check_claimed_size`).
    """
    _, suffix = split_suffix(url)
    suffix = suffix.lower()
    if suffix in (".nii", ".nii.gz"):
        head, size = _read_head(url, HEADER_BLOCK_BYTES)
        if suffix == ".nii.gz":
            try:
                raw = gzip.GzipFile(fileobj=io.BytesIO(head)).read(NIFTI2_BYTES)
            except (OSError, EOFError) as exc:
                raise DataContractError(
                    f"{url}: not a readable gzip file ({exc}); the file is truncated or "
                    "corrupt: re-download it"
                ) from None
        else:
            raw = head[:NIFTI2_BYTES]
        header = decode_header(raw, url)
        dims = list(header.dims)
        check_claimed_size(
            url,
            dims=dims,
            bytes_per_voxel=header.dtype.itemsize,
            file_bytes=size,
            compressed=suffix == ".nii.gz",
            data_offset=header.vox_offset,
        )
        while len(dims) > 3 and dims[-1] == 1:
            dims.pop()
        if len(dims) != 3:
            raise DataContractError(
                f"{url}: expected a 3D image, the header says {len(dims)}D ({dims})"
            )
        spacing, origin, direction = nifti_geometry(header.affine, url)
        grid = Grid(
            shape=(dims[2], dims[1], dims[0]),
            spacing_mm=spacing,
            origin_mm=origin,
            direction=direction,
        )
        return ImageHeader(url=url, grid=grid, dtype=str(header.dtype), file_bytes=size)
    return _itk_header(url)


def _itk_header(url: str) -> ImageHeader:
    import SimpleITK as sitk

    with local_copy(url) as path:
        try:
            reader = checked_itk_info(path, url)
        except RuntimeError as exc:
            raise DataContractError(
                f"{url}: cannot read the image header ({first_error_line(exc)}); "
                "the file is truncated, corrupt or not an image"
            ) from None
        size = os.path.getsize(path)
        dims = list(reader.GetSize())
        if len(dims) != 3:
            raise DataContractError(f"{url}: expected a 3D image, the header says {dims}")
        d = np.array(reader.GetDirection(), float).reshape(3, 3)
        grid = Grid(
            shape=(dims[2], dims[1], dims[0]),
            spacing_mm=tuple(reversed(reader.GetSpacing())),  # type: ignore[arg-type]
            origin_mm=reader.GetOrigin(),  # type: ignore[arg-type]
            direction=np.stack([d[:, 2 - a] for a in range(3)]),
        )
        dtype = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    return ImageHeader(url=url, grid=grid, dtype=dtype, file_bytes=size)
