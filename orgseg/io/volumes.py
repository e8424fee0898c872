"""Read and write 3D volumes (NIfTI, NRRD, MHA, DICOM series) from any fsspec URL."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from orgseg.core.orientation import (
    Reorientation,
    check_canonical_shape,
    file_rows,
    from_canonical,
    from_canonical_axes,
    slices_are_axial,
    to_canonical,
)
from orgseg.core.validate import check_ct, check_geometry
from orgseg.core.volume import Volume
from orgseg.errors import DataContractError
from orgseg.io.nifti import (
    check_claimed_size,
    nifti_affine,
    read_nifti,
    write_nifti,
    write_nifti_slabs,
)
from orgseg.io.storage import atomic_local_path, filesystem, local_copy, split_suffix

# SimpleITK (96 MB of RSS on import) is imported inside the functions that need it: a
# process that only reads and writes NIfTI never loads it
if TYPE_CHECKING:
    import SimpleITK as sitk

    from orgseg.core.body import PackedMask

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _from_sitk(image: sitk.Image, url: str) -> Volume:
    import SimpleITK as sitk

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
    import SimpleITK as sitk

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
    import SimpleITK as sitk

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
                "by its series UID (orgseg body-mask --series-uid; orgseg segment and bulk "
                "take each series as a case of its own)"
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
    import SimpleITK as sitk

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
                volume = read_nifti(path, url)
                check_geometry(volume, name=url)
                return volume
            import SimpleITK as sitk

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
    import SimpleITK as sitk

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
    if suffix.lower() in (".nii", ".nii.gz"):
        with atomic_local_path(url) as tmp:
            write_nifti(volume, tmp, compress=compress and suffix.lower() == ".nii.gz")
        log.debug("wrote %s", url)
        return
    import SimpleITK as sitk

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


def save_like(array: np.ndarray | PackedMask, reorientation: Reorientation, url: str) -> None:
    """Write a canonical-frame array in the original file's geometry.

    ``array`` may be anything read a slab of rows at a time (a bool array, a
    :class:`PackedMask`): to NIfTI, when the file's slowest axis is the canonical z axis
    (an axial series), it is written slab by slab in the file's axis order, with no
    whole-size reoriented copy; otherwise it is reoriented whole, then written."""
    _, suffix = split_suffix(url)
    if suffix.lower() not in (".nii", ".nii.gz") or not slices_are_axial(reorientation):
        write_volume(from_canonical(np.asarray(array), reorientation), url)
        return
    check_canonical_shape(array.shape, reorientation)
    affine = nifti_affine(
        reorientation.spacing_mm, reorientation.origin_mm, reorientation.direction
    )
    with atomic_local_path(url) as tmp:
        write_nifti_slabs(
            tmp,
            _file_slabs(array, reorientation),
            dims=reorientation.shape[::-1],
            dtype=array.dtype,
            affine=affine,
            compress=suffix.lower() == ".nii.gz",
        )
    log.debug("wrote %s", url)


def _file_slabs(
    array: np.ndarray | PackedMask, reorientation: Reorientation, rows: int = 16
) -> Iterator[np.ndarray]:
    """The file's slices, in its order, from canonical rows (axial slices)."""
    perm, flips = reorientation.perm, reorientation.flips
    n = reorientation.shape[0]
    for k in range(0, n, rows):
        a, b = file_rows(reorientation, k, min(n, k + rows))  # canonical rows of slices k..
        yield from_canonical_axes(np.asarray(array[a:b]), perm, flips)
