"""Finding every case of a source in its release folder, as the registry's layout says.

One listing per source folder (a paginated LIST on object stores) gives every file and
its size; the layout's patterns pick the cases out of it, so nothing is downloaded to
find them. DICOM sources also read one header per series folder and each structure set.
A case that cannot be paired is returned with its ``problem``, never raised: one bad file
among thousands does not stop a run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from orgseg.errors import DataContractError, StorageError
from orgseg.io.storage import filesystem
from orgseg.sources.layout import is_hidden, match_image, render
from orgseg.sources.registry import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseFiles:
    """One case as found on disk: its image, its label file(s), the organs they label."""

    source: str
    case_id: str
    image_url: str
    #: the label map file, the per-organ files' folder, or the RTSTRUCT file
    label_url: str = ""
    #: organ -> the label files (per-organ sources) or ROI names (RTSTRUCT) that make it
    organ_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: the CT series of a DICOM folder (None: the image is one file), and its files
    series_uid: str | None = None
    image_files: tuple[str, ...] = ()
    image_bytes: int = 0
    label_bytes: int = 0
    #: why this case cannot be used ("" when it can)
    problem: str = ""
    #: shipped without labels (an unlabelled test image): not a training case
    unlabelled: bool = False
    #: remarks that do not stop the case (an organ with only some of its files, ...)
    warnings: tuple[str, ...] = ()

    @property
    def organs(self) -> tuple[str, ...]:
        return tuple(self.organ_labels)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_case_id(text: str) -> str:
    """A case id usable as a file name (runs of other characters become ``_``).

    >>> safe_case_id("Pediatric-CT-SEG 0A1 /x")
    'Pediatric-CT-SEG_0A1_x'
    """
    return _UNSAFE.sub("_", text.strip()).strip("_") or "case"


def list_folder(url: str) -> dict[str, int]:
    """Every file under a folder/prefix: relative path -> size in bytes (one listing)."""
    fs, path = filesystem(url)
    root = path.rstrip("/")
    try:
        if not fs.isdir(root):
            raise StorageError(
                f"source folder {url} does not exist or is not a folder; point the config's "
                "sources at the folder the release unpacked into"
            )
        found = fs.find(root, detail=True)
    except (FileNotFoundError, PermissionError, OSError) as exc:
        raise StorageError(f"cannot list {url}: {exc}") from None
    out = {}
    for p, info in found.items():
        if info.get("type") == "directory":
            continue
        rel = str(p)[len(root) :].lstrip("/")
        out[rel] = int(info.get("size") or 0)
    return out


def _url(base_url: str, rel: str) -> str:
    return f"{base_url.rstrip('/')}/{rel}" if rel else base_url


def discover_source(source: Source, folder_url: str) -> list[CaseFiles]:
    """Every case of ``source`` under ``folder_url`` (its release folder), in path order."""
    files = list_folder(folder_url)
    if source.layout.kind == "dicom":
        return _discover_dicom(source, folder_url, files)
    layout = source.layout
    out = []
    for rel in sorted(files):
        values = match_image(layout, rel)
        if values is None:
            continue
        case_id = safe_case_id(render(layout.case_id, values))
        image_url = _url(folder_url, rel)
        label_rel = render(layout.label, values)
        base = dict(
            source=source.name, case_id=case_id, image_url=image_url, image_bytes=files[rel]
        )
        if source.format == "label_map":
            if label_rel in files:
                out.append(
                    CaseFiles(
                        **base,
                        label_url=_url(folder_url, label_rel),
                        organ_labels={o: (label_rel,) for o in source.organs},
                        label_bytes=files[label_rel],
                    )
                )
            else:
                out.append(_unlabelled(base, layout.unlabelled, f"no label file {label_rel}"))
            continue
        folder = label_rel.rstrip("/")
        organ_labels: dict[str, tuple[str, ...]] = {}
        warnings = []
        size = 0
        for organ in source.organs:
            names = source.files[organ]
            present = [n for n in names if f"{folder}/{n}" in files]
            if len(present) == len(names):
                organ_labels[organ] = tuple(names)
                size += sum(files[f"{folder}/{n}"] for n in names)
            elif present:
                missing = sorted(set(names) - set(present))
                warnings.append(f"{organ}: {folder}/ lacks {missing}; organ not used")
        if not organ_labels:
            out.append(
                _unlabelled(
                    base,
                    layout.unlabelled,
                    f"no per-organ label files of this source's organs in {folder}/",
                )
            )
            continue
        out.append(
            CaseFiles(
                **base,
                label_url=_url(folder_url, folder),
                organ_labels=organ_labels,
                label_bytes=size,
                warnings=tuple(warnings),
            )
        )
    return out


def _unlabelled(base: dict, policy: str, reason: str) -> CaseFiles:
    if policy == "skip":
        return CaseFiles(**base, unlabelled=True, problem=f"unlabelled: {reason}")
    return CaseFiles(**base, problem=reason)


def normalise_roi_name(name: str) -> str:
    """ROI names compared case-insensitively, spaces, underscores and hyphens alike.

    >>> normalise_roi_name("Kidney_Left") == normalise_roi_name(" kidney-left ")
    True
    """
    return " ".join(re.split(r"[\s_\-]+", name.strip().lower())).strip()


def roi_organs(source: Source, roi_names: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    """organ -> the ROI names of a structure set that make it (names as written there)."""
    wanted = {
        normalise_roi_name(n): organ for organ, names in source.roi_names.items() for n in names
    }
    out: dict[str, list[str]] = {}
    for name in roi_names:
        organ = wanted.get(normalise_roi_name(name))
        if organ is not None:
            out.setdefault(organ, []).append(name)
    return {o: tuple(out[o]) for o in source.organs if o in out}


def _discover_dicom(source: Source, folder_url: str, files: dict[str, int]) -> list[CaseFiles]:
    from orgseg.io.dicom_tree import index_series, read_structure_set

    visible = [
        (_url(folder_url, rel), size) for rel, size in sorted(files.items()) if not is_hidden(rel)
    ]
    series, unreadable = index_series(visible)
    for _url_bad, reason in unreadable:
        log.warning("%s: %s", source.name, reason)
    sizes = dict(visible)
    by_uid = {s.uid: s for s in series}
    out: list[CaseFiles] = []
    used_ids: dict[str, int] = {}
    for s in series:
        if s.modality != "RTSTRUCT":
            continue
        for url in s.files:
            base_id = safe_case_id(render(source.layout.case_id, {"PatientID": s.patient_id}))
            used_ids[base_id] = used_ids.get(base_id, 0) + 1
            case_id = base_id if used_ids[base_id] == 1 else f"{base_id}_{used_ids[base_id]}"
            try:
                structure = read_structure_set(url)
            except DataContractError as exc:
                out.append(
                    CaseFiles(
                        source=source.name,
                        case_id=case_id,
                        image_url="",
                        label_url=url,
                        problem=str(exc),
                    )
                )
                continue
            ct = by_uid.get(structure.referenced_series_uid)
            base = dict(
                source=source.name, case_id=case_id, label_url=url, label_bytes=sizes.get(url, 0)
            )
            if ct is None:
                out.append(
                    CaseFiles(
                        **base,
                        image_url="",
                        problem=f"the CT series {structure.referenced_series_uid} this RTSTRUCT "
                        "references is not in the source folder",
                    )
                )
                continue
            contoured = {n: c for n, c in structure.rois.items() if c}
            organ_labels = roi_organs(source, contoured)
            unmapped = sorted(set(contoured) - {n for v in organ_labels.values() for n in v})
            out.append(
                CaseFiles(
                    **base,
                    image_url=ct.folder,
                    series_uid=ct.uid,
                    image_files=ct.files,
                    image_bytes=ct.size_bytes,
                    organ_labels=organ_labels,
                    problem="" if organ_labels else "no ROI of this structure set maps to an organ",
                    warnings=(f"unmapped ROI names {unmapped}",) if unmapped else (),
                )
            )
    return out
