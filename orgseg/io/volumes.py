"""Read and write 3D volumes (NIfTI, NRRD, MHA, DICOM series) from any fsspec URL."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from orgseg.core.orientation import Reorientation, from_canonical, to_canonical
from orgseg.core.validate import check_ct, check_geometry
from orgseg.core.volume import Volume
from orgseg.errors import DataContractError
from orgseg.io.storage import atomic_local_path, filesystem, local_copy, split_suffix

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _from_sitk(image: sitk.Image, url: str) -> Volume:
    dim = image.GetDimension()
    if dim != 3:
        raise DataContractError(
            f"{url}: expected a 3D image, got a {dim}D image of size {image.GetSize()}; "
            "orgseg segments 3D CT volumes (split 4D series, stack 2D slices into a series)"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataContractError(
            f"{url}: expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} "
            "components per voxel (RGB or vector image); convert it to a grey-level CT"
        )
    if 1 in image.GetSize():
        raise DataContractError(
            f"{url}: expected a 3D volume, got a single slice (size {image.GetSize()}); "
            "a 2D image cannot be segmented in 3D"
        )
    array = sitk.GetArrayFromImage(image)
    d = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    direction = np.stack([d[:, 2 - a] for a in range(3)])
    volume = Volume(
        array,
        spacing_mm=tuple(reversed(image.GetSpacing())),  # type: ignore[arg-type]
        origin_mm=image.GetOrigin(),  # type: ignore[arg-type]
        direction=direction,
    )
    check_geometry(volume, name=url)
    return volume


def _to_sitk(volume: Volume) -> sitk.Image:
    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(reversed(volume.spacing_mm)))
    image.SetOrigin(volume.origin_mm)
    d = np.stack([volume.direction[2 - c] for c in range(3)], axis=1)
    image.SetDirection(tuple(d.ravel()))
    return image


def _read_dicom_dir(path: str, url: str, series_uid: str | None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    uids = list(reader.GetGDCMSeriesIDs(path))
    if not uids:
        raise DataContractError(
            f"{url}: no DICOM image series found in this folder; expected a folder of "
            "DICOM slices of one CT series"
        )
    if series_uid is None:
        if len(uids) > 1:
            listing = ", ".join(
                f"{u} ({len(reader.GetGDCMSeriesFileNames(path, u))} files)" for u in uids
            )
            raise DataContractError(
                f"{url}: the folder holds {len(uids)} DICOM series: {listing}; choose one "
                "with series_uid (CLI: --series-uid)"
            )
        series_uid = uids[0]
    elif series_uid not in uids:
        raise DataContractError(
            f"{url}: series {series_uid!r} is not in this folder; it holds {uids}"
        )
    files = list(reader.GetGDCMSeriesFileNames(path, series_uid))
    _check_slice_positions(files, url)
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise DataContractError(
            f"{url}: cannot read the DICOM series ({first_error_line(exc)})"
        ) from None


def _check_slice_positions(files: Sequence[str], url: str) -> None:
    if len(files) < 2:
        raise DataContractError(
            f"{url}: the DICOM series has {len(files)} slice; expected a 3D series"
        )
    positions = []
    normal = None
    for f in files:
        r = sitk.ImageFileReader()
        r.SetFileName(f)
        try:
            r.ReadImageInformation()
        except RuntimeError as exc:
            raise DataContractError(
                f"{url}: unreadable DICOM file {os.path.basename(f)} ({first_error_line(exc)})"
            ) from None
        if not r.HasMetaDataKey("0020|0032"):
            return  # no positions to check; the reader will use the slice order
        pos = np.array([float(v) for v in r.GetMetaData("0020|0032").split("\\")])
        if normal is None and r.HasMetaDataKey("0020|0037"):
            o = np.array([float(v) for v in r.GetMetaData("0020|0037").split("\\")])
            normal = np.cross(o[:3], o[3:])
        positions.append(pos)
    if normal is None:
        return
    z = np.sort(np.array(positions) @ normal)
    steps = np.diff(z)
    if np.any(steps < 1e-3):
        raise DataContractError(
            f"{url}: two DICOM slices share a position; the series "
            "holds duplicates or several acquisitions"
        )
    median = float(np.median(steps))
    if np.any(steps > 1.5 * median):
        at = int(np.argmax(steps))
        raise DataContractError(
            f"{url}: the DICOM series has a gap of {steps[at]:.2f} mm between slices at "
            f"{z[at]:.2f} and {z[at + 1]:.2f} mm (regular step {median:.2f} mm); a slice "
            "is missing: re-export the complete series"
        )


def first_error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return next((t.strip() for t in text if "ERROR" in t or "error" in t), text[-1] if text else "")


def read_volume(url: str, *, series_uid: str | None = None) -> Volume:
    """Read a 3D image from a file or DICOM series folder at any fsspec URL.

    The volume keeps the file's own axis order and geometry (see :func:`load_ct` for
    the canonical frame).
    """
    with local_copy(url) as path:
        if os.path.isdir(path):
            image = _read_dicom_dir(path, url, series_uid)
        else:
            _, suffix = split_suffix(path)
            if suffix.lower() not in IMAGE_SUFFIXES and not looks_like_dicom(path):
                raise DataContractError(
                    f"{url}: expected an image file ({', '.join(IMAGE_SUFFIXES)}) or a DICOM "
                    f"series folder, got a file with suffix {suffix!r}"
                )
            if suffix.lower() in (".nii", ".nii.gz"):
                return _read_nifti(path, url)
            try:
                checked_itk_info(path, url)
                image = sitk.ReadImage(path)
            except RuntimeError as exc:
                raise DataContractError(
                    f"{url}: cannot read the image ({first_error_line(exc)}); the file is "
                    "truncated, corrupt or not an image: re-download or re-export it"
                ) from None
    return _from_sitk(image, url)


def checked_itk_info(path: str, url: str) -> sitk.ImageFileReader:
    """ITK's header of a local file (NRRD, MHA, DICOM), after the claimed-size check.
    ITK's RuntimeError for an unreadable header is left to the caller to word."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    # one byte per voxel and component: a lower bound, so the check never refuses a good file
    bytes_per_voxel = max(reader.GetNumberOfComponents(), 1)
    detached = path.lower().endswith((".nhdr", ".mhd"))  # voxels in another file
    check_claimed_size(
        url,
        dims=list(reader.GetSize()),
        bytes_per_voxel=bytes_per_voxel,
        file_bytes=os.path.getsize(path) if not detached else 2**62,
        compressed=True,  # NRRD/MHA may be compressed: only the deflate bound is sure
    )
    return reader


def _read_nifti(path: str, url: str) -> Volume:
    """NIfTI through nibabel: ITK silently zero-fills truncated gzip files, turns NaN into
    0 and replaces a zero pixdim by 1 mm; nibabel reports all three."""
    import nibabel as nib

    _check_nifti_header(path, url)
    try:
        image = nib.load(path)
        data = np.asarray(image.dataobj)
    except Exception as exc:  # nibabel and gzip raise many types for damaged files
        raise DataContractError(
            f"{url}: cannot read the image ({type(exc).__name__}: {exc}); the file is "
            "truncated, corrupt or not an image: re-download or re-export it"
        ) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataContractError(
            f"{url}: expected a 3D image, got a {data.ndim}D image of shape {data.shape}; "
            "orgseg segments 3D CT volumes (split 4D series, stack 2D slices into a series)"
        )
    if 1 in data.shape:
        raise DataContractError(
            f"{url}: expected a 3D volume, got a single slice (shape {data.shape}); "
            "a 2D image cannot be segmented in 3D"
        )
    spacing, origin, direction = nifti_geometry(np.asarray(image.affine, dtype=float), url)
    volume = Volume(
        np.ascontiguousarray(np.transpose(data, (2, 1, 0))),
        spacing_mm=spacing,
        origin_mm=origin,
        direction=direction,
    )
    check_geometry(volume, name=url)
    return volume


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


def _check_nifti_header(path: str, url: str) -> None:
    """Refuse zero or negative pixdim (readers would silently replace them)."""
    import gzip

    import nibabel as nib

    try:
        opener = gzip.open if path.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            # check=False: read pixdim as stored (nibabel's checks would "fix" it silently)
            header = nib.Nifti1Header.from_fileobj(fh, check=False)
    except Exception as exc:  # nibabel raises many types for a damaged header
        raise DataContractError(
            f"{url}: cannot read the NIfTI header ({type(exc).__name__}: {exc}); the file is "
            "truncated, corrupt or not NIfTI: re-download or re-export it"
        ) from None
    check_claimed_size(
        url,
        dims=[int(d) for d in header["dim"][1 : int(header["dim"][0]) + 1]],
        bytes_per_voxel=max(int(header["bitpix"]), 8) / 8,
        file_bytes=os.path.getsize(path),
        compressed=path.lower().endswith(".gz"),
        data_offset=int(header["vox_offset"]),
    )
    pixdim = [float(v) for v in header["pixdim"][1:4]]
    ndim = int(header["dim"][0])
    if ndim >= 3 and any(not (v > 0) for v in pixdim[: min(ndim, 3)]):
        raise DataContractError(
            f"{url}: expected positive voxel spacing, the NIfTI header says pixdim "
            f"{pixdim} mm; fix the header (pixdim[1:4]) or re-export the image"
        )


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


def looks_like_dicom(url: str) -> bool:
    """Whether the file at ``url`` carries the DICOM preamble magic (reads 132 bytes)."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def write_volume(volume: Volume, url: str, *, compress: bool = True) -> None:
    """Write a volume atomically; the format follows the URL's suffix."""
    _, suffix = split_suffix(url)
    if suffix.lower() not in IMAGE_SUFFIXES:
        raise DataContractError(
            f"{url}: cannot write suffix {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    image = _to_sitk(volume)
    with atomic_local_path(url) as tmp:
        sitk.WriteImage(image, tmp, useCompression=compress)
    log.debug("wrote %s", url)


def load_ct(
    url: str, *, series_uid: str | None = None, require_air: bool = True
) -> tuple[Volume, Reorientation]:
    """Read and validate a CT; return it in the canonical frame with the way back."""
    volume = read_volume(url, series_uid=series_uid)
    check_ct(volume, name=url, require_air=require_air)
    return to_canonical(volume)


def save_like(array: np.ndarray, reorientation: Reorientation, url: str) -> None:
    """Write a canonical-frame array in the original file's geometry."""
    write_volume(from_canonical(array, reorientation), url)
