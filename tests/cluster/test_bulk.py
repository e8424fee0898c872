"""``orgseg bulk`` on the real Slurm cluster, archive and outputs in the S3 bucket."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from orgseg.cli import main
from orgseg.core.volume import Volume
from orgseg.io import exists, read_bytes, write_bytes, write_volume
from orgseg.io.storage import list_files, sync_up
from orgseg.phantoms import make_phantom

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "jobs" / "profiles"
pytestmark = [pytest.mark.slow, pytest.mark.nnunet, pytest.mark.slurm, pytest.mark.s3]

GOOD = ("ph_a", "ph_b", "ph_c", "ph_d", "dicom__real", "mixed__")  # mixed: 2 series
BROKEN = {
    "truncated": "cannot read the image",
    "missing_slice": "slice",
    "flat": "single slice",
    "mr_like": "air",
    "notes.txt": "not an image file",
}


def _make_archive(tmp: Path, bucket: str, real_dicom_dir: Path) -> str:
    import pydicom

    local = tmp / "archive"
    local.mkdir()
    for i, name in enumerate(("ph_a", "ph_b", "ph_c", "ph_d")):
        ph = make_phantom(shape=(48, 64, 64), spacing_mm=(8.0, 7.5, 7.5), seed=200 + i)
        write_volume(Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), str(local / f"{name}.nii.gz"))
    shutil.copytree(real_dicom_dir, local / "dicom" / "real")
    # two series in one folder (the bundled series carries no series UID: give each one)
    from pydicom.uid import generate_uid

    mixed = local / "mixed"
    mixed.mkdir()
    for prefix in ("a", "b"):
        series = generate_uid()
        for f in sorted(real_dicom_dir.iterdir()):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = series
            ds.SOPInstanceUID = generate_uid()
            ds.save_as(mixed / f"{prefix}_{f.name}")
    # broken inputs
    data = (local / "ph_a.nii.gz").read_bytes()
    (local / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    gap = local / "missing_slice"
    shutil.copytree(real_dicom_dir, gap)
    files = sorted(gap.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    files[len(files) // 2].unlink()
    write_volume(
        Volume(np.zeros((1, 64, 64), np.int16), spacing_mm=(1, 1, 1)), str(local / "flat.nii.gz")
    )
    mr = np.random.default_rng(0).integers(0, 1000, (30, 40, 40)).astype(np.int16)
    write_volume(Volume(mr, spacing_mm=(3.0, 1.0, 1.0)), str(local / "mr_like.nii.gz"))
    (local / "notes.txt").write_text("not a scan\n")
    sync_up(str(local), f"{bucket}/archive")
    return f"{bucket}/archive"


def _manifest(dest: str) -> dict[str, dict]:
    rows = csv.DictReader(io.StringIO(read_bytes(f"{dest}/manifest.csv").decode()))
    return {r["case_id"]: r for r in rows}


def _bulk(archive, dest, model_dir, tmp, endpoint, *extra) -> int:
    return main(
        [
            "bulk",
            "-i",
            archive,
            "-o",
            dest,
            "--model",
            str(model_dir),
            "--executor",
            "slurm",
            "--jobs-dir",
            str(tmp / "jobs"),
            "--profile",
            str(ROOT / "jobs" / "profiles" / "ci-slurm.yaml"),
            "--wait",
            "--wait-timeout",
            "900",
            "--endpoint-url",
            endpoint,
            *extra,
        ]
    )


def _state(job: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job], capture_output=True, text=True
    )
    return out.stdout


def test_bulk_on_slurm_killed_then_rerun_does_every_case_once(
    bucket, s3_server, slurm_cluster, phantom_model_dir, real_dicom_dir, tmp_path, capsys
):
    from orgseg.config import StorageConfig

    archive = _make_archive(tmp_path, bucket, real_dicom_dir)
    dest = f"{bucket}/out"

    assert (
        main(
            [
                "bulk",
                "-i",
                archive,
                "-o",
                dest,
                "--model",
                str(phantom_model_dir),
                "--dry-run",
                "--endpoint-url",
                s3_server.endpoint,
            ]
        )  # fmt: skip
        == 0
    )
    assert "inputs" in capsys.readouterr().out
    assert not exists(f"{dest}/manifest.csv")  # a dry run writes nothing

    # first run: one task for everything, killed once it has committed a few cases
    from orgseg.config import load_cluster_profile
    from orgseg.inference.bulk import BulkOptions, discover_archive, write_plan
    from orgseg.inference.model import ModelOptions
    from orgseg.orchestrate.bulk_workload import submit_bulk

    cases = discover_archive(archive)
    ids = {c.case_id for c in cases}
    assert len(ids) == len(GOOD) + len(BROKEN) + 1  # the mixed folder gives two cases
    write_plan(dest, cases)
    assert set(_manifest(dest)) == ids  # written before any work
    assert {r["status"] for r in _manifest(dest).values()} == {"pending"}
    jobs = submit_bulk(
        dest,
        model_url=str(phantom_model_dir),
        model_options=ModelOptions(),
        options=BulkOptions(shards=1),
        resources=load_cluster_profile(str(ROOT / "jobs" / "profiles" / "ci-slurm.yaml")).resources(
            "bulk"
        ),
        jobs_dir=str(tmp_path / "jobs0"),
        storage=StorageConfig(endpoint_url=s3_server.endpoint),
    )
    status_dir = f"{dest}/.orgseg/cases"
    t0 = time.time()
    while not (exists(status_dir) and len(list_files(status_dir)) >= 3):
        assert time.time() - t0 < 600, "no case committed"
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=KILL", "--full", jobs[0]], check=True)
    subprocess.run(["scancel", jobs[1]], check=False)  # its finalize job too
    while any(s in _state(jobs[0]) for s in ("RUNNING", "PENDING")):
        time.sleep(0.5)
    before = {u: read_bytes(u) for u in list_files(status_dir)}
    assert 3 <= len(before) < len(ids), "killed mid-run"

    # the same command again, now as two shards after a discovery in two array tasks
    # (merged by its own job): only what is not committed is done
    rc = _bulk(
        archive,
        dest,
        phantom_model_dir,
        tmp_path,
        s3_server.endpoint,
        "--shards",
        "2",
        "--discovery-parts",
        "2",
    )
    out = capsys.readouterr().out
    assert rc == 1  # some cases failed
    submitted = out.split("submitted", 1)[1].splitlines()[0]
    discovery_job, merge_job = submitted.split(": ", 1)[1].split()[:2]  # then shards, final
    assert _state(discovery_job).split() == ["COMPLETED", "COMPLETED"]  # one task per part
    assert _state(merge_job).split() == ["COMPLETED"]
    parts = [json.loads(read_bytes(f"{dest}/.orgseg/discovery/{k}.json")) for k in range(2)]
    assert all(parts), "each part found some of the archive"
    assert {c["case_id"] for p in parts for c in p} == ids  # the merge lost nothing
    after = {u: read_bytes(u) for u in list_files(status_dir)}
    assert len(after) == len(ids)
    assert all(after[u] == b for u, b in before.items())  # committed cases not redone
    manifest = _manifest(dest)
    for case_id, row in manifest.items():
        if case_id.startswith(GOOD):
            assert row["status"] == "done", (case_id, row)
            assert exists(f"{dest}/{case_id}/statistics.json")
    for name, reason in BROKEN.items():
        row = manifest[name.replace(".nii.gz", "")]
        assert row["status"] in ("failed", "skipped") and reason in row["error"], row
        assert f"{row['status'].upper()} {row['case_id']}" in out
    summary = json.loads(read_bytes(f"{dest}/summary.json"))
    assert summary["done"] == len(GOOD) + 1
    assert summary["failed"] + summary["skipped"] == len(BROKEN)
    assert summary["pending"] == 0
    throughput = json.loads(read_bytes(f"{dest}/throughput.json"))
    assert len(throughput) == 2 and all(t["peak_rss_mb"] > 0 for t in throughput)
    table = read_bytes(f"{dest}/organs.csv").decode().splitlines()
    assert table[0] == "case_id,organ,volume_ml,mean_hu"
    assert any(line.startswith("ph_a,liver,") for line in table)
    assert not [f for f in list_files(dest) if ".tmp" in f]
    write_bytes(f"{dest}/.probe", b"")  # the bucket is still writable (no lock left)


def test_bulk_on_slurm_with_a_model_set_name_stages_the_set_from_the_bucket(
    bucket, s3_server, slurm_cluster, ts_weights, tmp_path, monkeypatch, capsys
):
    """``--model totalsegmentator-total`` with ORGSEG_MODELS an s3:// prefix: the set is
    installed there once and every task stages it from the bucket (no node downloads)."""
    monkeypatch.setenv("ORGSEG_MODELS", f"{bucket}/models")
    assert main(["models", "import", "totalsegmentator-total", str(ts_weights)]) == 0
    assert exists(f"{bucket}/models/totalsegmentator-total/orgseg_model_set.json")
    archive, dest = f"{bucket}/set-archive", f"{bucket}/set-out"
    for i in range(2):
        ph = make_phantom(shape=(48, 64, 64), spacing_mm=(8.0, 7.5, 7.5), seed=210 + i)
        write_volume(Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), f"{archive}/ph_{i}.nii.gz")
    rc = _bulk(archive, dest, "totalsegmentator-total", tmp_path, s3_server.endpoint,
               "--classes", "orgseg")  # fmt: skip
    assert rc == 0, capsys.readouterr().out
    assert {r["status"] for r in _manifest(dest).values()} == {"done"}
    stats = json.loads(read_bytes(f"{dest}/ph_0/statistics.json"))
    assert stats["model"] == {"model_set": "totalsegmentator-total", "merge": "overwrite",
                              "classes": "orgseg"}  # fmt: skip
    from orgseg.catalog import ORGANS

    table = read_bytes(f"{dest}/organs.csv").decode().splitlines()[1:]
    organs = {line.split(",")[1] for line in table}
    assert organs and organs <= set(ORGANS)  # TotalSegmentator's classes mapped onto the catalog
    # part 1 predicts the phantom's liver as kidney_right: in the catalog, the kidneys pair
    kidneys = [line.split(",") for line in table if line.startswith("ph_0,kidneys,")]
    assert kidneys and float(kidneys[0][2]) > 0
