"""Bulk segmentation: one task over 10 cases vs 10 separate ``orgseg segment`` runs.

A real (briefly trained) phantom nnU-Net model, 10 phantom CTs. Measured, each command in
its own process on this machine:

* 10 x ``orgseg segment -i case -o out --model M`` (each run starts python, imports
  torch and nnU-Net and loads the model);
* ``orgseg bulk -i archive -o out --model M`` (one task: the model loaded once);
* the same with ``--workers 2`` (two cases at once, each worker loads the model once).

Printed: total seconds, the ratio bulk/separate (target <= 0.6), peak RSS (the largest
process), cases per hour. ``make bench-bulk`` or ``.venv/bin/python benchmarks/bulk.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

WRAP = (
    "import resource, sys\n"
    "from orgseg.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
    " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024\n"
    "print(f'PEAK_RSS_MB={peak:.0f}', file=sys.stderr)\n"
)


def run(args: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", WRAP, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t0
    peak = [line for line in out.stderr.splitlines() if line.startswith("PEAK_RSS_MB=")]
    if not peak:
        raise SystemExit(f"command failed: {args}\n{out.stderr[-2000:]}")
    return seconds, float(peak[-1].split("=")[1])


def main() -> None:
    from orgseg.core.volume import Volume
    from orgseg.io import write_volume
    from orgseg.phantoms import make_phantom
    from orgseg.pipeline.phantom_model import PhantomModelConfig, train_phantom_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/orgseg-bench-bulk")
    parser.add_argument("--cases", type=int, default=10)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    config = PhantomModelConfig(organs=("heart", "liver", "lungs", "vertebrae"))
    model = train_phantom_model(work / "model_work", config)
    archive = work / "archive"
    if not archive.exists():
        archive.mkdir()
        for i in range(args.cases):
            ph = make_phantom(shape=(120, 160, 160), spacing_mm=(3.0, 3.0, 3.0), seed=300 + i)
            write_volume(
                Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), str(archive / f"c{i:02d}.nii.gz")
            )
    cases = sorted(archive.glob("*.nii.gz"))

    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    separate_s, separate_rss = 0.0, 0.0
    for case in cases:
        s, rss = run(
            ["segment", "-i", str(case), "-o", str(out / "separate"), "--model", str(model)]
        )
        separate_s += s
        separate_rss = max(separate_rss, rss)
    results = {}
    for workers in (1, 2):
        dest = out / f"bulk_w{workers}"
        s, rss = run(
            [
                "bulk",
                "-i",
                str(archive),
                "-o",
                str(dest),
                "--model",
                str(model),
                "--workers",
                str(workers),
            ]
        )
        done = json.loads((dest / "summary.json").read_text())["done"]
        results[workers] = (s, rss, done)
    n = len(cases)
    print(f"{n} separate `orgseg segment` runs: {separate_s:.1f} s, peak RSS {separate_rss:.0f} MB")
    for workers, (s, rss, done) in results.items():
        print(
            f"orgseg bulk --workers {workers}: {s:.1f} s ({done}/{n} done), peak RSS {rss:.0f} MB, "
            f"{3600 * n / s:.0f} cases/h, ratio to separate {s / separate_s:.2f}"
        )
    print(
        f"time_ratio={results[1][0] / separate_s:.2f} "
        f"throughput_w1={3600 * n / results[1][0]:.0f} "
        f"throughput_w2={3600 * n / results[2][0]:.0f} "
        f"rss_w1={results[1][1]:.0f} rss_w2={results[2][1]:.0f}"
    )


if __name__ == "__main__":
    main()
