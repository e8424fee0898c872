"""A case's manual masks from whatever its source ships: label map, per-organ files or
RTSTRUCT, each checked against the CT it belongs to and brought to the canonical frame.

Every pairing is checked: the label grid must equal the image's (shape exactly, origin,
spacing and direction within float tolerance), label values must be integral (float
labels are rounded only within 1e-3 of an integer), and values the registry does not
map are reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from orgseg.core.contours import rasterize_contours
from orgseg.core.labels import integral_labels, label_values, masks_from_label_map
from orgseg.core.orientation import Reorientation, to_canonical
from orgseg.core.volume import Grid, Volume
from orgseg.errors import DataContractError
from orgseg.io import join_url, read_volume
from orgseg.pipeline.discovery import CaseFiles
from orgseg.sources.registry import Source

log = logging.getLogger(__name__)

#: label and image origins/spacing may differ by this much (float32 headers)
PAIRING_TOL_MM = 1e-2


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualLabels:
    """Manual organ masks of one case in the canonical frame, and what reading them found."""

    masks: Mapping[str, np.ndarray]
    #: label values found in the files (label maps) or ROI names (RTSTRUCT)
    values_found: tuple[object, ...] = ()
    #: of those, what the registry does not map (and does not list as unused)
    unmapped: tuple[object, ...] = ()


def native_grid(reorientation: Reorientation) -> Grid:
    """The grid of the file a canonical volume was read from."""
    return Grid(
        shape=reorientation.shape,
        spacing_mm=reorientation.spacing_mm,
        origin_mm=reorientation.origin_mm,
        direction=reorientation.direction,
    )


def _read_paired(url: str, grid: Grid) -> np.ndarray:
    """A label file's voxels in the canonical frame, after checking it is on ``grid``."""
    label = read_volume(url)
    diffs = grid.differences(label.grid, tol_mm=PAIRING_TOL_MM)
    if diffs:
        raise DataContractError(
            f"{url}: the label is not on its image's grid ({'; '.join(diffs)}, image vs "
            "label); the pair does not belong together or one was resampled: use the "
            "files as released"
        )
    canon, _ = to_canonical(label)
    return np.asarray(canon.array)


def read_manual_labels(
    source: Source, case: CaseFiles, reorientation: Reorientation, organs: tuple[str, ...]
) -> ManualLabels:
    """The manual masks of ``organs`` (those the case labels) on the CT's canonical grid."""
    grid = native_grid(reorientation)
    wanted = [o for o in organs if o in case.organ_labels]
    if source.format == "label_map":
        values = integral_labels(_read_paired(case.label_url, grid), name=case.label_url)
        found = label_values(values)
        known = {v for vs in source.labels.values() for v in vs} | set(source.unused_labels)
        unmapped = tuple(v for v in found if v not in known)
        masks = masks_from_label_map(values, {o: source.labels[o] for o in wanted})
        return ManualLabels(masks=masks, values_found=found, unmapped=unmapped)
    if source.format == "per_organ_files":
        # each file read once, into every organ it is part of (TotalSegmentator's vertebrae
        # also make up whole_bones)
        masks: dict[str, np.ndarray] = {}
        names = dict.fromkeys(n for organ in wanted for n in case.organ_labels[organ])
        for name in names:
            url = join_url(case.label_url, name)
            part = integral_labels(_read_paired(url, grid), name=url) > 0
            for organ in wanted:
                if name in case.organ_labels[organ]:
                    masks[organ] = masks[organ] | part if organ in masks else part
        return ManualLabels(masks=masks)
    return _rtstruct_labels(case, reorientation, grid, wanted)


def _rtstruct_labels(
    case: CaseFiles, reorientation: Reorientation, grid: Grid, organs: list[str]
) -> ManualLabels:
    from orgseg.io.dicom_tree import read_structure_set

    structure = read_structure_set(case.label_url)
    if structure.referenced_series_uid != (case.series_uid or structure.referenced_series_uid):
        raise DataContractError(
            f"{case.label_url}: the RTSTRUCT references series "
            f"{structure.referenced_series_uid}, not the paired CT {case.series_uid}"
        )
    masks = {}
    for organ in organs:
        acc = np.zeros(grid.shape, bool)
        for roi in case.organ_labels[organ]:
            mask, report = rasterize_contours(
                structure.rois.get(roi, ()), grid, name=f"{case.label_url} ROI {roi!r}"
            )
            if report.off_grid:
                log.warning(
                    "%s: ROI %r has %d contour(s) off the CT's slices (ignored)",
                    case.case_id,
                    roi,
                    report.off_grid,
                )
            acc |= mask
        canon, _ = to_canonical(
            Volume(
                acc, spacing_mm=grid.spacing_mm, origin_mm=grid.origin_mm, direction=grid.direction
            )
        )
        masks[organ] = np.asarray(canon.array)
    used = {n for names in case.organ_labels.values() for n in names}
    found = tuple(sorted(n for n, c in structure.rois.items() if c))
    return ManualLabels(
        masks=masks, values_found=found, unmapped=tuple(n for n in found if n not in used)
    )
