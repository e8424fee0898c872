"""orgseg bulk at archive scale, on local files: discovery, index, byte-balanced shards,
batched bookkeeping, the Parquet organ table, and which failures are verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orgseg.core.volume import Volume
from orgseg.errors import DataContractError, JobError, StorageError
from orgseg.inference import archive, bulk
from orgseg.inference.archive import BulkCase, balanced_shards, cases_from_index, discover_archive
from orgseg.inference.bulk_state import (
    committed_all,
    finalize,
    merge_discovery,
    plan_text,
    status_url,
    write_discovery_part,
    write_plan,
)
from orgseg.io import read_volume, write_bytes, write_volume
from orgseg.phantoms import make_phantom
from orgseg.phantoms.dicom import ct_series_files
from tests.fakes import ThresholdModel as FakeModel


def _series(folder: Path, uid: str, n: int = 3, prefix: str = "", side: int = 8) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    ct = np.full((n, side, side), -1000, np.int16)
    size = 0
    for i, raw in enumerate(ct_series_files(ct, series_uid=uid)):
        (folder / f"{prefix}{i:03d}").write_bytes(raw)  # no suffix, as many archives
        size += len(raw)
    return size


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    root = tmp_path / "arch"
    _series(root / "p1" / "s1", "1.2.3.1", n=10)
    _series(root / "p2" / "mixed", "1.2.3.2", prefix="a")
    _series(root / "p2" / "mixed", "1.2.3.3", prefix="b")
    (root / "p2" / "mixed" / "README").write_text("scanner notes")
    ct = Volume(np.full((8, 16, 16), -1000, np.int16), spacing_mm=(2.0, 1.0, 1.0))
    write_volume(ct, str(root / "p3" / "img.nii.gz"))
    (root / "notes.txt").write_text("x")
    return root


def test_discovery_groups_series_by_header_and_sizes_from_the_listing(archive_dir, monkeypatch):
    reads = []
    real = archive.read_heads
    monkeypatch.setattr(
        archive, "read_heads", lambda urls, n: reads.append(len(urls)) or real(urls, n)
    )
    cases = {c.case_id: c for c in discover_archive(str(archive_dir))}
    assert set(cases) == {
        "p1__s1",
        "p2__mixed__1.2.3.2",
        "p2__mixed__1.2.3.3",
        "p3__img",
        "notes.txt",
    }
    s1 = cases["p1__s1"]
    assert s1.is_dicom and s1.series_uid == "1.2.3.1"
    assert s1.size_bytes == sum(f.stat().st_size for f in (archive_dir / "p1" / "s1").iterdir())
    assert cases["p2__mixed__1.2.3.3"].source_url == str(archive_dir / "p2" / "mixed")
    assert cases["notes.txt"].skip_reason and not cases["p3__img"].is_dicom
    # one batched head read of each folder's probes (first, middle, last): 3 of the 10
    # slices of p1/s1, 3 in the mixed folder (README, a002, b002: they disagree), the
    # notes; then the rest of the mixed folder (the README is found not DICOM and
    # ignored); none for the NIfTI
    assert reads == [7, 4]


def test_a_scout_among_a_series_is_found_by_its_size(tmp_path):
    folder = tmp_path / "a" / "study"
    _series(folder, "1.2.5.1", n=10, prefix="im1_", side=32)
    _series(folder, "1.2.5.9", n=1, prefix="im1_0015_", side=96)  # third of 11 by name
    cases = discover_archive(str(tmp_path / "a"))
    assert sorted(c.series_uid for c in cases) == ["1.2.5.1", "1.2.5.9"]


def test_a_header_past_the_first_block_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "HEAD_BYTES", 200)  # shorter than any header
    _series(tmp_path / "a" / "s", "9.9.1", n=2)
    (case,) = discover_archive(str(tmp_path / "a"))
    assert case.series_uid == "9.9.1" and case.is_dicom


def test_discovery_parts_merge_to_the_single_pass(archive_dir, tmp_path):
    dest = str(tmp_path / "out")
    for k in range(3):
        write_discovery_part(dest, str(archive_dir), k, 3)
    merged = merge_discovery(dest, 3)
    assert merged == discover_archive(str(archive_dir))
    assert (tmp_path / "out" / "manifest.csv").exists()
    (tmp_path / "out" / ".orgseg" / "discovery" / "1.json").unlink()
    with pytest.raises(JobError, match="discovery parts not committed"):
        merge_discovery(dest, 3)


def test_index_csv_and_parquet_give_the_discovered_cases(archive_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for f in sorted((archive_dir / "p1" / "s1").iterdir()):
        rows.append(("1.2.3.1", str(f), f.stat().st_size, "first"))
    img = archive_dir / "p3" / "img.nii.gz"
    rows.append(("", str(img), img.stat().st_size, ""))
    csv_path = tmp_path / "index.csv"
    csv_path.write_text(
        "series_uid,url,size_bytes,case_id\n" + "".join(f"{u},{p},{s},{c}\n" for u, p, s, c in rows)
    )
    cases = {c.case_id: c for c in cases_from_index(str(csv_path))}
    assert set(cases) == {"first", "img"}
    found = {c.series_uid: c for c in discover_archive(str(archive_dir))}["1.2.3.1"]
    assert (cases["first"].source_url, cases["first"].size_bytes) == (
        found.source_url,
        found.size_bytes,
    )
    table = pa.table(
        {"series_uid": [r[0] for r in rows[:-1]], "url": [r[1] for r in rows[:-1]]}
    )  # no sizes, no case ids: the series UID names the case
    pq.write_table(table, tmp_path / "index.parquet")
    (case,) = cases_from_index(str(tmp_path / "index.parquet"))
    assert case.case_id == "1.2.3.1" and case.source_url == found.source_url
    (tmp_path / "bad.csv").write_text("uid,path\n1,/x\n")
    with pytest.raises(DataContractError, match="missing"):
        cases_from_index(str(tmp_path / "bad.csv"))


def test_shards_are_balanced_by_bytes():
    sizes = [100, 90, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    cases = [BulkCase(f"c{i:02d}", f"/x/{i}", size_bytes=s) for i, s in enumerate(sizes)]
    shards = balanced_shards(cases, 2)
    assert sorted(c.case_id for s in shards for c in s) == [c.case_id for c in cases]
    loads = [sum(c.size_bytes for c in s) for s in shards]
    assert max(loads) - min(loads) <= 10  # round-robin by count would be 190 vs 100
    assert balanced_shards(list(reversed(cases)), 2) == shards  # one plan, one split


@pytest.fixture
def phantom_archive(tmp_path: Path) -> tuple[str, str]:
    src = tmp_path / "src"
    for i in range(3):
        ph = make_phantom(shape=(24, 32, 32), spacing_mm=(8.0, 10.0, 10.0), seed=300 + i)
        write_volume(Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), str(src / f"ph{i}.nii.gz"))
    (src / "flat.nii.gz").write_bytes((src / "ph0.nii.gz").read_bytes()[:200])  # truncated
    dest = str(tmp_path / "out")
    write_plan(dest, discover_archive(str(src)))
    return str(src), dest


def _run(dest: str, model: FakeModel, monkeypatch, **options) -> dict:
    monkeypatch.setattr(bulk, "_load_model", lambda url, opts: model)
    opts = bulk.BulkOptions(backoff_s=0.0, **options)
    return bulk.run_shard(dest, 0, model_url="fake", model_options=None, options=opts)


def test_input_faults_fail_the_case_and_the_rest_is_done(phantom_archive, monkeypatch):
    _, dest = phantom_archive
    record = _run(dest, FakeModel(), monkeypatch)
    states = committed_all(dest)
    assert {k: v["status"] for k, v in states.items()} == {
        "ph0": "done", "ph1": "done", "ph2": "done", "flat": "failed"
    }  # fmt: skip
    assert "cannot read" in states["flat"]["error"].lower()
    assert record["done"] == 3 and record["failed"] == 1 and record["median_case_s"] > 0


def test_a_device_error_leaves_the_cases_pending_and_stops_the_task(phantom_archive, monkeypatch):
    _, dest = phantom_archive
    model = FakeModel(RuntimeError("CUDA error: out of memory"))
    with pytest.raises(bulk.TransientCaseError, match="left uncommitted"):
        _run(dest, model, monkeypatch, retries=2)
    assert model.calls == 3  # the first attempt and two retries, then the task stops
    # the truncated file sorts first and failed on its own data; no good case is failed
    assert {k: v["status"] for k, v in committed_all(dest).items()} == {"flat": "failed"}
    # the node recovers: a rerun does the pending cases, not the committed failure
    _run(dest, FakeModel(), monkeypatch)
    assert sorted(committed_all(dest)) == ["flat", "ph0", "ph1", "ph2"]


def test_a_storage_outage_is_retried_and_a_short_one_costs_nothing(phantom_archive, monkeypatch):
    _, dest = phantom_archive
    real = bulk._load
    outage = {"left": 2}

    def flaky(case):  # a fake outage: the first two reads time out
        if outage["left"] > 0:
            outage["left"] -= 1
            raise StorageError("read timed out (endpoint unreachable)")
        return real(case)

    monkeypatch.setattr(bulk, "_load", flaky)
    _run(dest, FakeModel(), monkeypatch, retries=3)
    assert {v["status"] for k, v in committed_all(dest).items() if k != "flat"} == {"done"}


def test_cuda_on_a_node_without_a_gpu_stops_before_any_case(phantom_archive, monkeypatch):
    from types import SimpleNamespace

    _, dest = phantom_archive
    monkeypatch.setattr(bulk, "_load_model", lambda url, opts: FakeModel())
    with pytest.raises(JobError, match="without a working GPU"):
        bulk.run_shard(
            dest, 0, model_url="fake", model_options=SimpleNamespace(device="cuda"),
            options=bulk.BulkOptions(),
        )  # fmt: skip
    assert committed_all(dest) == {}


def test_retry_failed_redoes_committed_failures(phantom_archive, monkeypatch):
    _, dest = phantom_archive
    write_bytes(status_url(dest, "ph1"), json.dumps({"status": "failed", "error": "x"}).encode())
    _run(dest, FakeModel(), monkeypatch)
    assert committed_all(dest)["ph1"]["status"] == "failed"  # a plain rerun keeps it
    _run(dest, FakeModel(), monkeypatch, retry_failed=True)
    assert committed_all(dest)["ph1"]["status"] == "done"


def test_finalize_writes_a_partitioned_parquet_organ_table(phantom_archive, monkeypatch):
    import pyarrow.dataset as ds

    _, dest = phantom_archive
    _run(dest, FakeModel(), monkeypatch)
    counts = finalize(dest)
    assert counts["done"] == 3 and counts["failed"] == 1
    part = Path(dest) / "organs.parquet" / "organ=liver" / "part-0.parquet"
    assert part.exists()
    table = ds.dataset(str(Path(dest) / "organs.parquet"), partitioning="hive").to_table(
        filter=ds.field("organ") == "liver"
    )
    assert sorted(table.column("case_id").to_pylist()) == ["ph0", "ph1", "ph2"]
    csv_rows = (Path(dest) / "organs.csv").read_text().splitlines()[1:]
    assert len(csv_rows) == 3
    by_case = dict(zip(table.column("case_id").to_pylist(), table.column("volume_ml").to_pylist()))
    for row in csv_rows:
        cid, organ, volume, _ = row.split(",")
        assert organ == "liver" and float(volume) == pytest.approx(by_case[cid])
    summary = json.loads((Path(dest) / "summary.json").read_text())
    assert summary["throughput"][0]["cases"] == 4


def test_plan_and_summary_give_the_cost_per_ct(phantom_archive, monkeypatch):
    _, dest = phantom_archive
    cases = bulk.load_plan(dest)
    text = plan_text(cases, dest, 2, seconds_per_case=36.0, price_per_task_hour=0.5)
    # 4 inputs to do at 36 s: 100 cases an hour, 0.04 task-hours, $0.005 per CT
    assert "100.0 cases per hour per task" in text and "0.04 task-hours for 4 cases" in text
    assert "$0.0050 per CT" in text
    _run(dest, FakeModel(), monkeypatch)
    finalize(dest)
    lines = bulk.summary_lines(dest, price_per_task_hour=0.5)
    assert "cases per hour per task" in lines[1] and "measured" in lines[1]
    assert any(line.startswith("FAILED flat") for line in lines)


def test_segment_finds_the_cases_bulk_finds_and_reads_each_series_of_a_folder(tmp_path):
    """One discovery: a folder holding two DICOM series is two cases for ``segment`` as
    for ``bulk`` (it used to fail asking for a flag segment does not have)."""
    from orgseg.inference.batch import discover_inputs, segment_batch
    from orgseg.inference.engine import EngineOptions
    from orgseg.inference.outputs import OutputOptions

    archive = tmp_path / "archive"
    folder = archive / "pat1" / "ct"
    folder.mkdir(parents=True)

    def body(n: int) -> np.ndarray:  # a soft-tissue block in air
        ct = np.full((n, 24, 24), -1000, np.int16)
        ct[:, 4:20, 4:20] = 40
        return ct

    for uid, n, prefix in (("1.2.826.0.1.3680043.10.1.1", 4, "a"),
                           ("1.2.826.0.1.3680043.10.1.2", 6, "b")):  # fmt: skip
        for i, raw in enumerate(ct_series_files(body(n), series_uid=uid)):
            (folder / f"{prefix}{i:03d}").write_bytes(raw)
    (folder / "README.txt").write_text("not a slice")
    write_volume(Volume(body(5), spacing_mm=(2.0, 1.0, 1.0)), str(archive / "pat2.nii.gz"))
    cases = discover_inputs(str(archive))
    assert cases == [c for c in discover_archive(str(archive)) if not c.skip_reason]
    assert len(cases) == 3 and sum(c.is_dicom for c in cases) == 2
    engine, outputs = EngineOptions(body_crop=False), OutputOptions()
    summary = segment_batch(cases, str(tmp_path / "out"), FakeModel(), engine=engine,
                            outputs=outputs)  # fmt: skip
    assert summary.failed == [] and sorted(summary.done) == sorted(c.case_id for c in cases)
    slices = {
        c.series_uid: read_volume(str(tmp_path / "out" / c.case_id / "liver.nii.gz")).array.shape[0]
        for c in cases
    }
    assert slices == {"1.2.826.0.1.3680043.10.1.1": 4, "1.2.826.0.1.3680043.10.1.2": 6, "": 5}
