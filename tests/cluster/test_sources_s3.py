"""Public release layouts read from a real S3 endpoint (moto's server): the audit and the
`cases` stage with the data and the run in the bucket."""

from __future__ import annotations

import numpy as np
import pytest

from orgseg.config import RunConfig
from orgseg.io import read_volume
from orgseg.pipeline.cases import load_manual_masks, resolve_registry
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.manifest import build_manifest
from orgseg.pipeline.scan import scan_sources, write_scan

pytestmark = pytest.mark.s3

SOURCES = ("totalsegmentator", "lits", "paediatric", "msd_task09_spleen")


def _upload(public_releases, bucket) -> tuple[RunConfig, dict]:
    from orgseg.io.storage import filesystem

    _, reps = public_releases
    fs, _ = filesystem(bucket)
    for name in SOURCES:
        fs.put(str(reps[name].folder), f"{bucket}/data/{reps[name].folder.name}", recursive=True)
    config = RunConfig(
        run_root=f"{bucket}/run",
        data_root=f"{bucket}/data",
        sources={n: reps[n].folder.name for n in SOURCES},
    )
    return config, {n: reps[n] for n in SOURCES}


def test_scan_and_cases_on_s3(public_releases, bucket, tmp_path):
    config, reps = _upload(public_releases, bucket)
    result = scan_sources(config)
    urls = write_scan(result, f"{bucket}/audit", resolve_registry(config))
    status = {r.case_id: r.status for r in result.rows}
    for rep in reps.values():
        assert all(status[c] == "ok" for c in rep.expected)
        assert all(status[c] == "excluded" for c in rep.broken)
    assert "._spleen_0" not in " ".join(status)
    from orgseg.io import read_bytes

    assert b"lits_29" in read_bytes(urls["cases"])

    manifest = build_manifest(config)
    assert {c.case_id for c in manifest.cases} == {
        cid for rep in reps.values() for cid in rep.expected
    }
    assert {e.case_id for e in manifest.excluded} == {
        cid for rep in reps.values() for cid in rep.broken
    }
    layout = RunLayout.of(config)
    # the DICOM case came from a series folder in the bucket, its RTSTRUCT rasterised
    case = "Pediatric-CT-SEG-0A1C2E40"
    assert manifest.case(case).image_url.startswith("s3://")
    ct = np.asarray(read_volume(layout.cropped_ct(case)).array)
    liver = load_manual_masks(layout, case)["liver"]
    assert set(np.unique(ct[liver]).tolist()) == {990}
    assert int(liver.sum()) == reps["paediatric"].expected[case]["liver"][990]
