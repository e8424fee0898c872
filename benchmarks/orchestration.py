"""Scheduling latency of orgseg's Slurm path: N no-op units on the running cluster.

Each unit goes the way training units go (``orchestrate.submit_array``: submitit, one
array task per unit, orgseg's sbatch parameters); the task records when it started and
commits a marker file (written to a temporary name, then renamed). Reported: median and
maximum submit-to-start and submit-to-committed latency of an N-unit array (on the 2-CPU CI
node most of it is queueing: two tasks run at once), the same for single units submitted
one at a time on the idle cluster, and a raw ``sbatch --wrap`` job for comparison.
Target (issue #5): <= 2 s per unit.

    make slurm-up && .venv/bin/python benchmarks/orchestration.py [--units 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


class NoOp:
    """A unit that does nothing but record its start and commit a marker."""

    def __init__(self, out: str, i: int) -> None:
        self.out, self.i = out, i

    def __call__(self) -> int:
        started = time.time()
        marker = Path(self.out) / f"{self.i}.done"
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(repr(started))
        os.replace(tmp, marker)
        return self.i


def main() -> None:
    from orgseg.config import StageResources
    from orgseg.orchestrate.slurm import submit_array

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="orgseg-bench-orch-"))
    out = work / "out"
    out.mkdir()
    resources = StageResources(cpus_per_task=1, mem_gb=0.5, timeout_min=5)

    t_submit = time.time()
    submit_array(
        [NoOp(str(out), i) for i in range(args.units)],
        resources,
        name="bench",
        folder=str(work / "jobs"),
    )
    submit_s = time.time() - t_submit
    deadline = time.time() + 600
    while len(list(out.glob("*.done"))) < args.units and time.time() < deadline:
        time.sleep(0.05)
    starts, commits = [], []
    for f in out.glob("*.done"):
        starts.append(float(f.read_text()) - t_submit)
        commits.append(f.stat().st_mtime - t_submit)

    # one unit at a time on an idle cluster: the latency a unit pays, without queueing
    single_start, single_commit = [], []
    for i in range(5):
        one = work / f"one{i}"
        one.mkdir()
        t0 = time.time()
        submit_array([NoOp(str(one), 0)], resources, name="bench1", folder=str(work / "jobs1"))
        marker = one / "0.done"
        while not marker.exists() and time.time() < t0 + 120:
            time.sleep(0.02)
        single_start.append(float(marker.read_text()) - t0)
        single_commit.append(marker.stat().st_mtime - t0)

    raw = []
    for i in range(5):
        marker = work / f"raw{i}"
        t0 = time.time()
        subprocess.run(
            ["sbatch", "--parsable", "-o", "/dev/null", "--wrap", f"touch {marker}"],
            check=True,
            capture_output=True,
        )
        while not marker.exists() and time.time() < t0 + 120:
            time.sleep(0.05)
        raw.append(marker.stat().st_mtime - t0)

    print(
        f"units: {len(commits)}/{args.units} committed; submitting the array took {submit_s:.2f} s"
    )
    print(f"submit-to-start      median {statistics.median(starts):.2f} s  max {max(starts):.2f} s")
    print(
        f"submit-to-committed  median {statistics.median(commits):.2f} s  "
        f"max {max(commits):.2f} s  (per unit: {max(commits) / len(commits):.2f} s)"
    )
    print(
        f"one unit at a time   submit-to-start median {statistics.median(single_start):.2f} s, "
        f"submit-to-committed median {statistics.median(single_commit):.2f} s (5 units)"
    )
    print(f"raw sbatch --wrap     median {statistics.median(raw):.2f} s (5 jobs, one by one)")
    print(
        f"unit_start_s={statistics.median(single_start):.2f} "
        f"unit_committed_s={statistics.median(single_commit):.2f} "
        f"array_per_unit_s={max(commits) / len(commits):.2f} "
        f"raw_sbatch_s={statistics.median(raw):.2f}"
    )


if __name__ == "__main__":
    main()
