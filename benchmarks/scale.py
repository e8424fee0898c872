"""`orgseg status` and `train-all --dry-run` on a run root at the paper's scale, in S3.

A synthetic run root (4,082 cases, 26 organs x 5 folds, 184 pseudo-label shards of which
half are committed with every (case, organ) record they write, the manifest, unit markers
and nnU-Net markers as real units write them) in moto's S3 server, the one the tests use.
Every request the server answers is counted by a WSGI middleware in front of moto, so a
client in another process (``--baseline-src``: an older checkout's ``orgseg status``) is
counted the same way.

    .venv/bin/python benchmarks/scale.py [--cases 4082] [--baseline-src /tmp/old-checkout]

Targets (issue #15): status <= 5 s and <= 100 requests. Last line:
``status_s=... status_requests=... dry_run_s=... dry_run_requests=...``
(plus ``baseline_status_s=... baseline_status_requests=...`` with ``--baseline-src``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "orgseg-scale"


class Counter:
    """WSGI middleware: counts the requests moto answers (the S3 API only)."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):  # noqa: ANN001, ANN204
        if not environ.get("PATH_INFO", "").startswith("/moto-api"):
            with self.lock:
                self.n += 1
        return self.app(environ, start_response)


def start_server() -> tuple[str, Counter]:
    import logging

    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    counter = Counter(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, counter, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", counter


def write_run_root(config, *, seed: int = 0) -> dict[str, int]:  # noqa: ANN001
    """The synthetic run root; returns object counts by kind."""
    from orgseg.io.storage import filesystem
    from orgseg.pipeline.datasets import strategy1_dataset
    from orgseg.pipeline.jobs import job
    from orgseg.pipeline.layout import RunLayout
    from orgseg.pipeline.staging import nnunet_root
    from orgseg.pipeline.strategy1 import configuration_name
    from orgseg.pipeline.units import marker_url

    rng = random.Random(seed)
    organs = list(config.strategy1_organs)
    cases = [f"case{i:05d}" for i in range(ARGS.cases)]
    test = sorted(rng.sample(cases, round(0.1 * len(cases))))
    train = sorted(set(cases) - set(test))
    manual = {c: sorted(rng.sample(organs, 2)) for c in cases}
    records = [
        {
            "case_id": c,
            "source": "totalsegmentator",
            "image_url": f"{config.data_root}/ts/{c}/ct.nii.gz",
            "label_url": f"{config.data_root}/ts/{c}/segmentations",
            "image_sha256": "0" * 64,
            "label_sha256": "0" * 64,
            "manual_organs": manual[c],
            "size_group": "adult",
            "median_effective_diameter_mm": 300.0,
            "crop": {"start": [0, 0, 0], "stop": [300, 400, 400], "shape": [300, 512, 512]},
            "spacing_mm": [1.5, 0.8, 0.8],
        }
        for c in cases
    ]
    layout = RunLayout.of(config)
    objects: dict[str, bytes] = {
        layout.manifest(): json.dumps(
            {"seed": 0, "train": train, "test": test, "cases": records}
        ).encode()
    }
    fs, _ = filesystem(config.run_root)
    # the manifest first: the shard counts are worked out from it (jobs/shards.json)
    fs.pipe({filesystem(layout.manifest())[1]: objects[layout.manifest()]})
    marker = lambda s: json.dumps({"wall_s": s, "gpu_s": s}).encode()  # noqa: E731
    for unit in job("cases").units(config):
        objects[marker_url(config, "cases", unit)] = marker(50 * 15.0)
    objects[marker_url(config, "manifest", ())] = marker(60.0)
    conf = configuration_name(config)
    for organ in organs:
        name = strategy1_dataset(config, organ)[1]
        objects[marker_url(config, "strategy1-data", (organ,))] = marker(4000 + rng.random())
        objects[f"{nnunet_root(config)}/preprocessed/{name}/splits_final.json"] = b"[]"
        for fold in config.strategy1_training.folds:
            objects[marker_url(config, "strategy1-train", (organ, fold))] = marker(
                300000 + 1000 * rng.random()
            )
            folder = f"nnUNetTrainer__nnUNetPlans__{conf}"
            objects[
                f"{nnunet_root(config)}/results/{name}/{folder}/fold_{fold}/orgseg_unit.json"
            ] = b"{}"
    shards = job("pseudo-labels").units(config)
    n_pseudo = 0
    for shard, n_shards in shards[: len(shards) // 2]:
        for c in train[shard::n_shards]:  # round-robin, as the shards are cut
            for organ in organs:
                if organ not in manual[c]:
                    objects[layout.pseudo_record(c, organ)] = b'{"voxels": 1}'
                    n_pseudo += 1
        objects[marker_url(config, "pseudo-labels", (shard, n_shards))] = marker(
            len(train) / n_shards * 24 * 20.0
        )
    items = list(objects.items())
    for i in range(0, len(items), 2000):  # concurrent PUTs in batches
        fs.pipe({filesystem(k)[1]: v for k, v in items[i : i + 2000]})
    return {"objects": len(objects), "pseudo_records": n_pseudo, "cases": len(cases)}


def main() -> None:
    import boto3

    from orgseg.config import load_run_config
    from orgseg.io.storage import configure_storage

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    endpoint, counter = start_server()
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    data = yaml.safe_load((ROOT / "jobs" / "reference.yaml").read_text())
    data.update(run_root=f"s3://{BUCKET}/run", data_root=f"s3://{BUCKET}/data")
    data["storage"] = {"endpoint_url": endpoint}
    data.pop("exclude", None)
    data["cluster"]["jobs_dir"] = tempfile.mkdtemp(prefix="orgseg-scale-")
    cfg = Path(data["cluster"]["jobs_dir"]) / "run.yaml"
    cfg.write_text(yaml.safe_dump(data))
    config = load_run_config(cfg.read_text())
    configure_storage(config.storage)
    t0 = time.perf_counter()
    made = write_run_root(config)
    print(f"run root: {made} written in {time.perf_counter() - t0:.0f} s", flush=True)

    from orgseg.orchestrate.plan import plan, plan_text
    from orgseg.orchestrate.runner import status, status_text

    configure_storage(config.storage)  # fresh clients: nothing cached from the writes
    counter.n = 0
    t0 = time.perf_counter()
    rows = status(config)
    status_s, status_requests = time.perf_counter() - t0, counter.n
    print(status_text(rows))
    counter.n = 0
    t0 = time.perf_counter()
    text = plan_text(config, *plan(config))
    dry_s, dry_requests = time.perf_counter() - t0, counter.n
    print(text)
    figures = (
        f"status_s={status_s:.2f} status_requests={status_requests} "
        f"dry_run_s={dry_s:.2f} dry_run_requests={dry_requests}"
    )
    if ARGS.baseline_src:
        # the older config format: sources as names, one epoch_seconds instead of rates
        old = {k: v for k, v in data.items() if k not in ("sources", "exclude")}
        old["cluster"] = {k: v for k, v in data["cluster"].items() if k != "rates"}
        old["cluster"]["epoch_seconds"] = data["cluster"]["rates"]["epoch_s"]
        cfg = cfg.with_name("run-baseline.yaml")
        cfg.write_text(yaml.safe_dump(old))
        env = {**os.environ, "PYTHONPATH": ARGS.baseline_src}
        counter.n = 0
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "orgseg", "status", "-c", str(cfg)],
            env=env,
            check=False,
            cwd=ARGS.baseline_src,
            stdout=subprocess.DEVNULL,
        )
        figures += (
            f" baseline_status_s={time.perf_counter() - t0:.2f} "
            f"baseline_status_requests={counter.n}"
        )
    print(figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=4082)
    parser.add_argument("--baseline-src", help="an older checkout whose status to measure too")
    ARGS = parser.parse_args()
    main()
