"""orgseg bulk's discovery, manifest and dry-run on local files (no model needed)."""

from __future__ import annotations

import csv
import json

import numpy as np

from orgseg.core.volume import Volume
from orgseg.inference.bulk import discover_archive, plan_text, write_plan
from orgseg.io import write_bytes, write_volume


def test_discovery_manifest_and_dry_run_cost(tmp_path, real_dicom_dir):
    import shutil

    arch = tmp_path / "arch"
    (arch / "nested").mkdir(parents=True)
    ct = Volume(np.full((8, 16, 16), -1000, np.int16), spacing_mm=(2.0, 1.0, 1.0))
    write_volume(ct, str(arch / "a.nii.gz"))
    write_volume(ct, str(arch / "nested" / "b.nrrd"))
    shutil.copytree(real_dicom_dir, arch / "series")
    (arch / "notes.txt").write_text("x")
    cases = discover_archive(str(arch))
    ids = {c.case_id: c for c in cases}
    assert set(ids) == {"a", "nested__b", "series", "notes.txt"}
    assert ids["series"].is_dicom and ids["series"].size_bytes > 0
    assert ids["notes.txt"].skip_reason

    dest = tmp_path / "out"
    text = plan_text(cases, str(dest), 2, seconds_per_case=90)
    assert "3 to segment" in text and "1 not CT inputs" in text
    assert "0.07 task-hours at 90 s per case (assumed)" in text  # 3 x 90 s
    write_plan(str(dest), cases)
    rows = list(csv.DictReader((dest / "manifest.csv").open()))
    assert {r["case_id"] for r in rows} == set(ids)
    assert {r["status"] for r in rows} == {"pending"}
    assert json.loads((dest / "summary.json").read_text())["pending"] == 4
    # a committed case makes the estimate its own: 40 s per case from now on
    write_bytes(
        str(dest / ".orgseg" / "cases" / "a.json"),
        json.dumps({"status": "done", "error": "", "seconds": 40.0}).encode(),
    )
    text = plan_text(cases, str(dest), 1)
    assert "2 to segment" in text and "1 already committed" in text
    assert "at 40 s per case (median of 1 committed cases)" in text
