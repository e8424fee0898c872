"""orgseg bulk against the real S3 server: discovery's requests, ``--index``, discovery in
parts, and a storage outage during a shard (its cases stay pending, not failed)."""

from __future__ import annotations

import contextlib
import io
import json

import fsspec
import numpy as np
import pytest

from orgseg.cli import main
from orgseg.core.volume import Volume
from orgseg.inference import bulk
from orgseg.inference.archive import discover_archive
from orgseg.inference.bulk_state import committed_all, load_plan, write_plan
from orgseg.io import write_volume
from orgseg.io.storage import filesystem
from orgseg.phantoms import make_phantom
from orgseg.phantoms.dicom import ct_series_files
from tests.fakes import ThresholdModel

pytestmark = [pytest.mark.s3]


def count_requests(fs) -> dict:  # noqa: ANN001
    """Count the requests of the filesystem's S3 client from now on."""
    counter = {"n": 0}
    fs.connect()

    def bump(**_: object) -> None:
        counter["n"] += 1

    fs.s3.meta.events.register("before-send", bump)
    return counter


@pytest.fixture
def s3_archive(bucket: str) -> tuple[str, int, list[str]]:
    """4 single-series folders and one folder with 2 series; with its index rows."""
    fs, _ = filesystem(bucket)
    files, index = {}, ["series_uid,url,size_bytes"]

    def add(path: str, uid: str, n: int) -> None:
        ct = np.full((n, 16, 16), -1000, np.int16)
        for i, raw in enumerate(ct_series_files(ct, series_uid=uid)):
            files[f"{bucket[5:]}/archive/{path}{i:03d}.dcm"] = raw
            index.append(f"{uid},{bucket}/archive/{path}{i:03d}.dcm,{len(raw)}")

    for s in range(4):
        add(f"pat{s}/ct/", f"1.2.826.9.{s + 1}", 12)
    add("pat9/mixed/a", "1.2.826.9.71", 5)
    add("pat9/mixed/b", "1.2.826.9.72", 5)
    fs.pipe(files)
    return f"{bucket}/archive", len(files), index


def test_discovery_on_s3_reads_a_few_headers_per_folder(s3_archive, bucket):
    source, n_files, _ = s3_archive
    fs, _ = filesystem(source)
    counter = count_requests(fs)
    cases = {c.case_id: c for c in discover_archive(source)}
    requests = counter["n"]
    assert set(cases) == {
        "pat0__ct", "pat1__ct", "pat2__ct", "pat3__ct", "pat9__mixed__826.9.71",
        "pat9__mixed__826.9.72",
    }  # fmt: skip
    sizes = {i["name"]: i["size"] for i in fs.find(source, detail=True).values()}
    assert cases["pat0__ct"].size_bytes == sum(
        v for k, v in sizes.items() if "/pat0/ct/" in k
    )  # from the listing, no request per file
    # the listing (is it a folder, does it exist, the keys: 4 requests), 3 probes per
    # single-series folder and every file of the mixed one: 4 x 3 + 10 head reads
    assert requests == 4 + 4 * 3 + 10
    assert requests < 0.5 * n_files


def test_index_and_discovery_parts_give_the_same_plan(s3_archive, bucket, s3_server):
    source, _, index = s3_archive
    fs, _ = filesystem(source)
    single = discover_archive(source)
    # discovery in 3 parts over the 5 top-level prefixes, merged by the command
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["bulk", "-i", source, "-o", f"{bucket}/out", "--model", "unused",
                   "--discovery-parts", "3", "--dry-run",
                   "--endpoint-url", s3_server.endpoint])  # fmt: skip
    assert rc == 0 and "6 to segment" in out.getvalue()
    assert fs.exists(f"{bucket[5:]}/out/.orgseg/discovery/2.json")
    assert load_plan(f"{bucket}/out") == single
    # an index (one row per file) in the bucket replaces discovery: the same series,
    # folders and sizes (named by their series UIDs: the index has no case ids)
    fs.pipe(f"{bucket[5:]}/index.csv", ("\n".join(index) + "\n").encode())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["bulk", "--index", f"{bucket}/index.csv", "-o", f"{bucket}/out2",
                   "--model", "unused", "--dry-run",
                   "--endpoint-url", s3_server.endpoint])  # fmt: skip
    assert rc == 0 and "6 to segment" in out.getvalue()
    from orgseg.inference.archive import cases_from_index

    def key(c):  # noqa: ANN001, ANN202
        return c.series_uid, c.source_url, c.size_bytes

    assert sorted(map(key, cases_from_index(f"{bucket}/index.csv"))) == sorted(map(key, single))


@pytest.fixture
def few_retries():
    """botocore's own retries cut to one attempt, so an outage reaches orgseg at once."""
    import s3fs

    conf = fsspec.config.conf.setdefault("s3", {})
    saved = json.loads(json.dumps(conf))
    conf.setdefault("config_kwargs", {})["retries"] = {"max_attempts": 1, "mode": "standard"}
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    fsspec.config.conf["s3"] = saved
    s3fs.S3FileSystem.clear_instance_cache()


def test_a_storage_outage_leaves_its_cases_pending(bucket, s3_server, few_retries, monkeypatch):
    dest = f"{bucket}/out"
    for i in range(2):
        ph = make_phantom(shape=(24, 32, 32), spacing_mm=(8.0, 10.0, 10.0), seed=400 + i)
        write_volume(Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), f"{bucket}/src/ph{i}.nii.gz")
    write_plan(dest, discover_archive(f"{bucket}/src"))

    class OutageModel(ThresholdModel):
        """The fake model; the S3 server goes down while it predicts the first case."""

        def predict_slabs(self, ct, spacing_mm, *, slab_rows):
            if self.calls == 0:
                s3_server.server.stop()
            yield from super().predict_slabs(ct, spacing_mm, slab_rows=slab_rows)

    model = OutageModel()
    monkeypatch.setattr(bulk, "_load_model", lambda url, opts: model)
    options = bulk.BulkOptions(retries=1, backoff_s=0.1)
    with pytest.raises(bulk.TransientCaseError, match="left uncommitted"):
        bulk.run_shard(dest, 0, model_url="fake", model_options=None, options=options)
    s3_server.restart(down_s=0.5)
    assert committed_all(dest) == {}  # pending, not failed
    bulk.run_shard(dest, 0, model_url="fake", model_options=None, options=options)
    assert {v["status"] for v in committed_all(dest).values()} == {"done"}
    assert len(committed_all(dest)) == 2


def test_a_cluster_profile_is_read_from_s3_like_any_other_url(s3_archive, bucket, s3_server):
    from orgseg.config import load_cluster_profile

    source, _, _ = s3_archive
    fs, _ = filesystem(bucket)
    fs.pipe(
        f"{bucket[5:]}/profiles/batch.yaml",
        b"cluster:\n  executor: awsbatch\n  batch: {job_queue: q1, job_definition: d1}\n"
        b"  stages:\n    bulk: {price_per_task_hour: 0.5}\n",
    )
    profile = load_cluster_profile(f"{bucket}/profiles/batch.yaml")
    assert (profile.executor, profile.batch.job_queue) == ("awsbatch", "q1")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["bulk", "-i", source, "-o", f"{bucket}/out-p", "--model", "unused",
                   "--profile", f"{bucket}/profiles/batch.yaml", "--dry-run",
                   "--endpoint-url", s3_server.endpoint])  # fmt: skip
    assert rc == 0 and "at $0.500 per task hour" in out.getvalue()
