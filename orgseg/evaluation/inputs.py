"""Reading prediction and reference sets: case discovery, organ masks, case metadata.

A *set* is a folder or URL holding one entry per case: a label map file
(``<case>.nii.gz``, any image suffix) or a folder ``<case>/`` with per-organ/per-class
files (or ``segmentation.nii.gz``, what ``orgseg segment --ml`` writes). A single file is a
set of one case. Every volume is brought to the canonical frame before comparison, so a
prediction written in another axis order than its reference still lines up.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from orgseg.core.body import body_mask
from orgseg.core.orientation import to_canonical
from orgseg.core.size import patient_size
from orgseg.core.volume import Volume
from orgseg.errors import DataContractError
from orgseg.evaluation.labelling import ORGSEG, Labelling
from orgseg.inference.outputs import ML_NAME
from orgseg.io import join_url, read_bytes, read_volume
from orgseg.io.storage import is_dir, list_entries, split_suffix
from orgseg.io.volumes import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseInfo:
    """What a case is grouped by."""

    source: str = "unknown"
    size_group: str = "unknown"


@dataclass(frozen=True, slots=True)
class CaseLabels:
    """Organ masks of one case in the canonical frame, and the grid they sit on."""

    masks: dict[str, np.ndarray]
    grid: Volume  # canonical; its array is not used

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.grid.spacing_mm


def discover_cases(url: str, labelling: Labelling | None = None) -> dict[str, str]:
    """case id -> URL of its label file or folder.

    A folder that holds the labelling's own per-organ/per-class file names (or
    ``segmentation.nii.gz``) is one case, named after the folder.
    """
    if not is_dir(url):
        stem, suffix = split_suffix(url.rstrip("/").rsplit("/", 1)[-1])
        if suffix.lower() not in IMAGE_SUFFIXES:
            raise DataContractError(
                f"{url}: expected a folder of cases or one label file "
                f"({', '.join(IMAGE_SUFFIXES)}), got suffix {suffix!r}"
            )
        return {stem: url}
    entries = list_entries(url)
    if labelling is not None:
        own = {ML_NAME} | {f for names in labelling.file_names.values() for f in names}
        if any(not folder and name in own for name, folder in entries):
            return {url.rstrip("/").rsplit("/", 1)[-1]: url}
    out: dict[str, str] = {}
    for name, folder in entries:
        if name.startswith("."):
            continue
        stem, suffix = split_suffix(name)
        if folder:
            out[name] = join_url(url, name)
        elif suffix.lower() in IMAGE_SUFFIXES:
            out[stem] = join_url(url, name)
    if not out:
        raise DataContractError(
            f"{url}: found no cases; expected label files ({', '.join(IMAGE_SUFFIXES)}) or "
            "one folder per case"
        )
    return out


def _canonical(url: str) -> Volume:
    volume, _ = to_canonical(read_volume(url))
    return volume


def read_case_labels(url: str, labelling: Labelling, organs: tuple[str, ...]) -> CaseLabels:
    """Masks of ``organs`` (those the labelling expresses) from a case's file or folder.

    A folder of per-class files gives only the organs with at least one file present;
    an organ's files are merged (kidney_left + kidney_right = kidneys).
    """
    wanted = tuple(o for o in organs if o in labelling.organs)
    if not is_dir(url):
        volume = _canonical(url)
        return CaseLabels(labelling.masks_from_label_map(np.asarray(volume.array), wanted), volume)
    names = {n for n, folder in list_entries(url) if not folder}
    if labelling.name == ORGSEG and ML_NAME in names:
        return read_case_labels(join_url(url, ML_NAME), labelling, organs)
    masks: dict[str, np.ndarray] = {}
    grid: Volume | None = None
    for organ in wanted:
        files = [f for f in labelling.file_names.get(organ, ()) if f in names]
        for f in files:
            volume = _canonical(join_url(url, f))
            if grid is not None and not volume.same_grid(grid, tol_mm=1e-2):
                raise DataContractError(
                    f"{join_url(url, f)} is not on the grid of the case's other masks "
                    f"(shape {volume.shape} vs {grid.shape}); write every mask on one grid"
                )
            grid = grid or volume
            mask = np.asarray(volume.array) > 0
            masks[organ] = masks[organ] | mask if organ in masks else mask
    if grid is None:
        expected = sorted({f for o in wanted for f in labelling.file_names.get(o, ())})
        raise DataContractError(
            f"{url}: no mask file of the wanted organs; with labelling {labelling.name!r} "
            f"expected some of {expected[:8]}{' ...' if len(expected) > 8 else ''}"
        )
    return CaseLabels(masks, grid)


def read_case_info(url: str) -> dict[str, CaseInfo]:
    """Case metadata from CSV: a ``case`` column and any of ``source``, ``size_group``
    (adult | paediatric) or ``age`` (years; under 18 is paediatric)."""
    text = read_bytes(url).decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or ())
    if "case" not in columns:
        raise DataContractError(
            f"{url}: expected a CSV with a 'case' column (and source, size_group or age), "
            f"got columns {sorted(columns)}"
        )
    out: dict[str, CaseInfo] = {}
    for i, row in enumerate(reader, start=2):
        group = (row.get("size_group") or "").strip().lower() or "unknown"
        if group == "unknown" and (row.get("age") or "").strip():
            try:
                group = "paediatric" if float(row["age"]) < 18 else "adult"
            except ValueError:
                raise DataContractError(
                    f"{url} line {i}: age {row['age']!r} is not a number of years"
                ) from None
        if group not in ("adult", "paediatric", "unknown"):
            raise DataContractError(
                f"{url} line {i}: size_group must be adult or paediatric, got {group!r}"
            )
        out[row["case"].strip()] = CaseInfo(
            source=(row.get("source") or "").strip() or "unknown", size_group=group
        )
    return out


def size_group_from_ct(url: str) -> str:
    """adult | paediatric from the CT's median effective body diameter."""
    ct = _canonical(url)
    arr = np.asarray(ct.array)
    body = body_mask(arr, spacing_mm=ct.spacing_mm)
    return patient_size(arr, np.asarray(body), spacing_mm=ct.spacing_mm).group


def case_info_for(
    cases: Mapping[str, str],
    *,
    metadata: Mapping[str, CaseInfo] | None = None,
    images: Mapping[str, str] | None = None,
) -> dict[str, CaseInfo]:
    """Metadata first; a missing size group is measured on the CT when ``images`` has it."""
    out = {}
    for case in cases:
        info = (metadata or {}).get(case, CaseInfo())
        if info.size_group == "unknown" and images and case in images:
            info = CaseInfo(source=info.source, size_group=size_group_from_ct(images[case]))
            log.info("evaluate %s: size group %s from the CT", case, info.size_group)
        out[case] = info
    return out
