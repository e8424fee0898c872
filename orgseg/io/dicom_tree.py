"""DICOM trees as public datasets ship them: series found by header, RTSTRUCTs read.

Releases such as Pediatric-CT-SEG (TCIA) come as one folder per series
(``<patient>/<study>/<series>/1-001.dcm``), the CT slices in one and the structure set
in another; the RTSTRUCT names the CT series it was drawn on by its SeriesInstanceUID.
Headers are read from the first block of a file (a ranged read on object stores).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from orgseg.errors import DataContractError
from orgseg.io.storage import read_bytes, read_head

log = logging.getLogger(__name__)

_HEADER_TAGS = ("Modality", "SeriesInstanceUID", "PatientID", "StudyInstanceUID")
_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class DicomSeries:
    """One series of a DICOM tree: its UID, modality, folder and files."""

    uid: str
    modality: str
    patient_id: str
    folder: str
    files: tuple[str, ...]
    size_bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StructureSet:
    """An RTSTRUCT: which CT series it was drawn on, and each ROI's closed contours."""

    url: str
    patient_id: str
    referenced_series_uid: str
    rois: Mapping[str, tuple[np.ndarray, ...]] = field(default_factory=dict)


def _parse(raw: bytes, url: str, *, header_only: bool):  # noqa: ANN202
    import pydicom

    try:
        return pydicom.dcmread(
            io.BytesIO(raw),
            stop_before_pixels=header_only,
            specific_tags=list(_HEADER_TAGS) if header_only else None,
            # a header read refuses what is not a DICOM Part-10 file (a README in a series
            # folder is no slice); a structure set is checked by its modality instead
            force=not header_only,
        )
    except Exception as exc:  # pydicom raises many types for damaged files
        raise DataContractError(
            f"{url}: not a readable DICOM file ({type(exc).__name__}: {exc}); re-download it"
        ) from None


def parse_header(raw: bytes, url: str):  # noqa: ANN201 - a pydicom Dataset
    """The grouping tags (modality, series, patient, study) of a DICOM file's bytes (the
    whole file or its first block); :class:`DataContractError` when they cannot be read."""
    return _parse(raw, url, header_only=True)


def dicom_header(url: str) -> dict[str, str]:
    """Modality, SeriesInstanceUID, PatientID and StudyInstanceUID of one DICOM file, from
    its first block (the whole file only when the header runs past it)."""
    head = read_head(url, _HEAD_BYTES)
    if len(head) < _HEAD_BYTES:  # the whole file
        ds = _parse(head, url, header_only=True)
    else:
        try:
            ds = _parse(head, url, header_only=True)
            complete = "SeriesInstanceUID" in ds
        except DataContractError:
            complete = False
        if not complete:  # the header runs past the first block
            ds = _parse(read_bytes(url), url, header_only=True)
    return {t: str(getattr(ds, t, "") or "") for t in _HEADER_TAGS}


def index_series(
    files: Iterable[tuple[str, int]], *, threads: int = 16
) -> tuple[list[DicomSeries], list[tuple[str, str]]]:
    """The series of a DICOM tree, from (URL, size) of its files.

    One header per folder is read (first and last file); a folder whose two headers
    disagree holds several series, and every file of it is read. Returns the series and
    the (URL, reason) of files that could not be read.
    """
    by_folder: dict[str, list[tuple[str, int]]] = {}
    for url, size in files:
        by_folder.setdefault(url.rsplit("/", 1)[0], []).append((url, size))
    problems: list[tuple[str, str]] = []

    def headers(urls: Sequence[str]) -> list[tuple[str, dict[str, str] | None]]:
        def one(u: str) -> tuple[str, dict[str, str] | None]:
            try:
                return u, dicom_header(u)
            except DataContractError as exc:
                problems.append((u, str(exc)))
                return u, None

        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(one, urls))

    probes = []
    for _folder, entries in sorted(by_folder.items()):
        entries.sort()
        probes.append(entries[0][0])
        if len(entries) > 1:
            probes.append(entries[-1][0])
    probed = dict(headers(probes))
    series: dict[str, dict] = {}
    for folder, entries in sorted(by_folder.items()):
        first, last = probed.get(entries[0][0]), probed.get(entries[-1][0])
        found: list[tuple[str, int, dict[str, str] | None]]
        if first is not None and (last is None or last == first):
            found = [(u, s, first) for u, s in entries]
        else:
            found = [(u, s, h) for (u, h), (_, s) in zip(headers([u for u, _ in entries]), entries)]
        for u, s, h in found:
            if h is None or not h["SeriesInstanceUID"]:
                continue
            entry = series.setdefault(
                h["SeriesInstanceUID"],
                {
                    "modality": h["Modality"],
                    "patient": h["PatientID"],
                    "folder": folder,
                    "files": [],
                    "size": 0,
                },
            )
            entry["files"].append(u)
            entry["size"] += s
    out = [
        DicomSeries(
            uid=uid,
            modality=e["modality"],
            patient_id=e["patient"],
            folder=e["folder"],
            files=tuple(sorted(e["files"])),
            size_bytes=e["size"],
        )
        for uid, e in series.items()
    ]
    return sorted(out, key=lambda s: (s.folder, s.uid)), problems


def read_structure_set(url: str) -> StructureSet:
    """An RTSTRUCT's referenced CT series and every ROI's closed planar contours (LPS mm)."""
    ds = _parse(read_bytes(url), url, header_only=False)
    if str(getattr(ds, "Modality", "")) != "RTSTRUCT":
        raise DataContractError(
            f"{url}: expected an RTSTRUCT, got modality {getattr(ds, 'Modality', None)!r}"
        )
    referenced = ""
    for frame in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        for study in getattr(frame, "RTReferencedStudySequence", []):
            for series in getattr(study, "RTReferencedSeriesSequence", []):
                referenced = referenced or str(series.SeriesInstanceUID)
    if not referenced:
        raise DataContractError(
            f"{url}: the RTSTRUCT names no referenced CT series "
            "(ReferencedFrameOfReferenceSequence > RTReferencedSeriesSequence); it cannot be "
            "paired with its CT: re-export it from the planning system"
        )
    names = {int(r.ROINumber): str(r.ROIName) for r in getattr(ds, "StructureSetROISequence", [])}
    rois: dict[str, list[np.ndarray]] = {}
    for roi in getattr(ds, "ROIContourSequence", []):
        name = names.get(int(roi.ReferencedROINumber))
        if name is None:
            continue
        contours = rois.setdefault(name, [])
        for c in getattr(roi, "ContourSequence", []):
            if str(getattr(c, "ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            pts = np.asarray([float(v) for v in c.ContourData], float)
            if pts.size >= 9 and pts.size % 3 == 0:
                contours.append(pts.reshape(-1, 3))
    for name in names.values():
        rois.setdefault(name, [])
    return StructureSet(
        url=url,
        patient_id=str(getattr(ds, "PatientID", "") or ""),
        referenced_series_uid=referenced,
        rois={k: tuple(v) for k, v in rois.items()},
    )
