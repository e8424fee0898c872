"""``orgseg bulk --dry-run`` discovery on an S3 archive: milliseconds and requests per file.

An archive of ``--series`` DICOM series x ``--slices`` slices of 128x128 (20 x 100: 2,000
files) is written to a local S3 server (moto's, as the tests use); then ``orgseg bulk
--dry-run`` runs on it in this process, with every S3 request counted (a hook on each
client's ``before-send`` event). Seconds are the command's own (imports excluded).

Then a synthetic archive of ``--big`` series (100,000) with no pixel data (one file per
series holding only its header: the listing and the header bytes are all discovery
reads) in an in-memory filesystem: discovery seconds, the same series as a Parquet
index (``--index``), and ``finalize`` over as many committed statuses.

    .venv/bin/python benchmarks/bulk_discovery.py [--series 20] [--slices 100] [--big 100000]

Targets (issue #17): ms_per_file <= 1.0, requests_per_file <= 1.1 (before: 10.8 and 3.1).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import time

import numpy as np


def count_requests() -> dict:
    """Count every request of every aiobotocore client made from now on."""
    import aiobotocore.session as aio

    counter = {"n": 0}
    original = aio.AioSession.create_client

    def bump(**_: object) -> None:
        counter["n"] += 1

    def create_client(self, *args, **kwargs):  # noqa: ANN001, ANN202
        context = original(self, *args, **kwargs)

        class Counted:
            async def __aenter__(self):  # noqa: ANN204
                client = await context.__aenter__()
                client.meta.events.register("before-send", bump)
                return client

            async def __aexit__(self, *exc):  # noqa: ANN002, ANN204
                return await context.__aexit__(*exc)

        return Counted()

    aio.AioSession.create_client = create_client
    return counter


def s3_archive(series: int, slices: int) -> tuple[str, int, int]:
    from moto.server import ThreadedMotoServer

    from orgseg.config import StorageConfig
    from orgseg.io.storage import configure_storage, filesystem
    from orgseg.phantoms.dicom import ct_series_files

    for k, v in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        os.environ.setdefault(k, v)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    configure_storage(StorageConfig(endpoint_url=endpoint))
    fs, _ = filesystem("s3://bench")
    rng = np.random.default_rng(0)
    n_bytes = 0
    for s in range(series):
        ct = rng.integers(-1000, 1000, (slices, 128, 128)).astype(np.int16)
        files = ct_series_files(ct, series_uid=f"1.2.826.0.1.{s + 1}")
        fs.pipe(
            {f"bench/archive/patient{s:03d}/ct/{i:04d}.dcm": raw for i, raw in enumerate(files)}
        )
        n_bytes += sum(len(raw) for raw in files)
    return endpoint, series * slices, n_bytes


def dry_run(endpoint: str, files: int, counter: dict) -> dict:
    from orgseg.cli import main

    counter["n"] = 0
    t0 = time.perf_counter()
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        rc = main(["bulk", "-i", "s3://bench/archive", "-o", "s3://bench/out", "--model", "none",
                   "--dry-run", "--endpoint-url", endpoint])  # fmt: skip
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"orgseg bulk --dry-run exited {rc}")
    return {"seconds": seconds, "requests": counter["n"], "files": files, "plan": out.getvalue()}


UID_ROOT = "1.2.826.0.1."


def big_archive(n_series: int) -> dict:
    """Discovery, --index and finalize over ``n_series`` header-only series (memory://)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from orgseg.inference.archive import cases_from_index, discover_archive
    from orgseg.inference.bulk_state import finalize, status_url, write_plan
    from orgseg.io.storage import filesystem
    from orgseg.phantoms.dicom import ct_series_files

    fs, _ = filesystem("memory://big")
    # one header-only file per series: a template whose fixed-length UID is replaced
    template = ct_series_files(np.zeros((1, 1, 1), np.int16), series_uid=f"{UID_ROOT}{100000}")[0]
    at = template.index(f"{UID_ROOT}{100000}".encode())
    n = len(UID_ROOT) + 6
    files = {
        f"/big/archive/p{s // 1000:03d}/s{s:06d}/0.dcm": template[:at]
        + f"{UID_ROOT}{100000 + s}".encode()
        + template[at + n :]
        for s in range(n_series)
    }
    fs.pipe(files)
    t0 = time.perf_counter()
    cases = discover_archive("memory://big/archive")
    discovery_s = time.perf_counter() - t0
    index = pa.table({
        "series_uid": [f"{UID_ROOT}{100000 + s}" for s in range(n_series)],
        "url": [f"memory://big/archive/p{s // 1000:03d}/s{s:06d}/0.dcm" for s in range(n_series)],
        "size_bytes": [len(template)] * n_series,
    })  # fmt: skip
    buf = io.BytesIO()
    pq.write_table(index, buf)
    fs.pipe("/big/index.parquet", buf.getvalue())
    t0 = time.perf_counter()
    indexed = cases_from_index("memory://big/index.parquet")
    index_s = time.perf_counter() - t0
    dest = "memory://big/out"
    write_plan(dest, indexed)
    done = json.dumps({"status": "done", "error": "", "seconds": 20.0}).encode()
    stats = json.dumps({"organs": {"liver": {"volume_ml": 1500.0, "mean_hu": 60.0}}}).encode()
    fs.pipe({status_url(dest, c.case_id)[len("memory://") :]: done for c in indexed})
    fs.pipe({f"/big/out/{c.case_id}/statistics.json": stats for c in indexed})
    t0 = time.perf_counter()
    counts = finalize(dest)
    finalize_s = time.perf_counter() - t0
    return {"series": n_series, "discovered": len(cases), "indexed": len(indexed),
            "discovery_s": discovery_s, "index_s": index_s, "finalize_s": finalize_s,
            "done": counts["done"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import orgseg.cli  # noqa: F401 - imports are not discovery time
    import orgseg.inference.bulk  # noqa: F401

    endpoint, files, n_bytes = s3_archive(args.series, args.slices)
    counter = count_requests()
    r = dry_run(endpoint, files, counter)
    print(f"archive: {args.series} series x {args.slices} slices of 128x128 "
          f"({files} files, {n_bytes / 1e6:.1f} MB) on a local S3 server")  # fmt: skip
    print(f"orgseg bulk --dry-run: {r['seconds']:.2f} s, {r['requests']} S3 requests")
    print(r["plan"].rstrip())
    big = big_archive(args.big) if args.big else {}
    if big:
        print(f"{big['series']} header-only series (memory://): discovery "
              f"{big['discovery_s']:.1f} s ({big['discovered']} cases), --index (Parquet) "
              f"{big['index_s']:.1f} s, finalize over {big['done']} committed cases "
              f"{big['finalize_s']:.1f} s")  # fmt: skip
    print(json.dumps({"s3": {k: v for k, v in r.items() if k != "plan"}, "big": big}))
    print(
        f"ms_per_file={1000 * r['seconds'] / files:.3f} "
        f"requests_per_file={r['requests'] / files:.3f} "
        f"big_discovery_s={big.get('discovery_s', 0):.1f} big_index_s={big.get('index_s', 0):.1f} "
        f"big_finalize_s={big.get('finalize_s', 0):.1f}"
    )


if __name__ == "__main__":
    main()
