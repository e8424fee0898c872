"""RTSTRUCT contours to masks through the CT's own geometry, against orgseg's own RTSTRUCT
writer on a series with more rows than columns (where a reader that mixes up rows and
columns misplaces every ROI)."""

from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.contours import rasterize_contours
from orgseg.core.metrics import overlap_metrics
from orgseg.core.volume import CANONICAL_DIRECTION, Grid
from orgseg.errors import DataContractError
from orgseg.io import load_ct
from orgseg.io.dicom_out import write_dicom_outputs
from orgseg.io.dicom_tree import index_series, read_structure_set
from orgseg.pipeline.manual import native_grid
from tests.sources import replicas


def _blobs() -> dict[str, np.ndarray]:
    z, y, x = np.mgrid[: replicas.SHAPE[0], : replicas.SHAPE[1], : replicas.SHAPE[2]]
    liver = ((z - 8) / 5.0) ** 2 + ((y - 14) / 7.0) ** 2 + ((x - 11) / 5.0) ** 2 <= 1
    spleen = ((z - 7) / 3.0) ** 2 + ((y - 26) / 4.0) ** 2 + ((x - 22) / 3.0) ** 2 <= 1
    return {"liver": liver, "spleen": spleen}


def test_orgseg_rtstruct_rasterises_back_onto_a_non_square_series(tmp_path):
    from pydicom.uid import generate_uid

    masks = _blobs()
    ct = replicas._blank()
    labels = np.zeros(replicas.SHAPE, np.uint8)
    for i, m in enumerate(masks.values(), start=1):
        ct[m] = 100 * i
        labels[m] = i
    uids = {k: generate_uid() for k in ("study", "ct_series", "frame")} | {"patient": "p1"}
    series = tmp_path / "series"
    replicas.write_ct_series(series, ct, uids=uids)
    canon, reorientation = load_ct(str(series))
    assert canon.shape == (16, 40, 32)  # 40 rows, 32 columns
    (url,) = write_dicom_outputs(
        str(tmp_path / "out"),
        ["rtstruct"],
        labels=labels,
        reorientation=reorientation,
        label_ids={"liver": 1, "spleen": 2},
        dicom_url=str(series),
    )
    structure = read_structure_set(url)
    assert structure.referenced_series_uid == uids["ct_series"]
    grid = native_grid(reorientation)
    for organ, truth in masks.items():
        mask, report = rasterize_contours(structure.rois[organ], grid, name=organ)
        assert report.off_grid == 0 and report.contours > 0
        dice = overlap_metrics(mask, truth, spacing_mm=replicas.SPACING_MM).dice
        assert dice >= 0.99, (organ, dice)
    found, problems = index_series(
        [(str(p), p.stat().st_size) for p in sorted(tmp_path.rglob("*.dcm"))]
    )
    assert problems == []
    assert {s.modality for s in found} == {"CT", "RTSTRUCT"}
    assert next(s for s in found if s.modality == "CT").files.__len__() == 16


def _grid() -> Grid:
    return Grid(
        shape=(3, 9, 9),
        spacing_mm=(1.0, 1.0, 1.0),
        origin_mm=(0.0, 0.0, 0.0),
        direction=CANONICAL_DIRECTION,
    )


def _square(a: float, b: float, z: float = 1.0) -> np.ndarray:
    return np.array([[a, a, z], [b, a, z], [b, b, z], [a, b, z]], float)


def test_nested_contours_alternate_fill_and_hole():
    # an island inside a hole inside an organ: 9x9 - hole(5x5 interior) + island(1)
    mask, _ = rasterize_contours([_square(0, 8), _square(1, 7), _square(4, 4.0001)], _grid())
    sl = mask[1]
    assert sl[0, 0] and sl[1, 1] and not sl[3, 3] and sl[4, 4]
    assert int(sl.sum()) == 81 - 25 + 1
    assert not mask[0].any() and not mask[2].any()


def test_a_contour_across_slices_is_an_error_and_off_grid_ones_are_counted():
    slanted = np.array([[0, 0, 0.0], [4, 0, 1.0], [4, 4, 2.0]], float)
    with pytest.raises(DataContractError, match="not on one slice"):
        rasterize_contours([slanted], _grid())
    mask, report = rasterize_contours([_square(1, 3, z=7.0), _square(1, 3, z=1.5)], _grid())
    assert report.off_grid == 2 and not mask.any()


def test_dicom_header_reads_slices_and_refuses_what_is_not_dicom(tmp_path, real_dicom_dir):
    from orgseg.io.dicom_tree import dicom_header

    first = sorted(real_dicom_dir.iterdir())[0]
    assert dicom_header(str(first))["Modality"] == "CT"
    (tmp_path / "README").write_text("not a slice")
    with pytest.raises(DataContractError, match="not a readable DICOM file"):
        dicom_header(str(tmp_path / "README"))
