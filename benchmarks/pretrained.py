"""TotalSegmentator 2.18.0's CLI vs ``orgseg segment --model totalsegmentator-total`` on
the same five-part model set: wall time, peak RSS, per-class Dice.

The set is TotalSegmentator's ``total`` release layout (five ``Dataset29N_...`` folders,
``nnUNetTrainerNoMirroring``, pre-``architecture`` plans, its class names per part) built
from a phantom nnU-Net model trained here (weights cannot be downloaded here): 6 mm, a
quarter of nnU-Net's features, the organs the phantoms carry; part i predicts every fifth
organ, so each part contributes classes to the merge. The real parts are 1.5 mm networks
of about 25 classes each, so both tools spend more on real weights; the memory that grows
with the scan (probabilities on the scan's grid, resampled copies of the CT) is what this
measures.

The scan is a 512x512xN whole-body phantom at 0.8x0.8x1.5 mm (as
``chunked_inference.py`` builds one). Each tool runs as a fresh process on 2 threads:
TotalSegmentator offline (``TOTALSEG_WEIGHTS_PATH`` at the parts, usage statistics off)
with ``--ml -d cpu``; orgseg with ``--ml``. Seconds are the whole process (reading,
loading, writing included); peak memory is the largest proportional set size (PSS)
summed over the process and its children, sampled at 20 Hz (a plain RSS sum counts the
pages forked workers share once per worker). Dice is per class present in either output, inside the
body contour.

Targets (issue #29): rss_ratio (orgseg / TotalSegmentator) <= 0.25, time_ratio <= 0.5,
min_dice >= 0.99.

    make peer-tools && .venv/bin/python benchmarks/pretrained.py [--work DIR] [--slices 600]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from whole_body import make_scan
from whole_body import train_model as _train

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the release-layout builders live with the tests


def train_model(work: Path) -> Path:
    from orgseg.phantoms import make_phantom

    return _train(work, sorted(make_phantom(shape=(48, 64, 64)).label_ids))


def build_set(model_dir: Path, work: Path) -> tuple[Path, Path]:
    """(TotalSegmentator's weights folder, orgseg's models folder) holding the parts."""
    import json

    from orgseg.models.registry import model_registry
    from orgseg.models.store import import_set
    from tests.models.layouts import totalsegmentator_parts

    weights, models = work / "weights", work / "models"
    if not weights.exists():
        n = len(json.loads((model_dir / "dataset.json").read_text())["labels"]) - 1
        keep = [{c for c in range(1, n + 1) if (c - 1) % 5 == i} for i in range(5)]
        entry = model_registry()["totalsegmentator-total"]
        totalsegmentator_parts(model_dir, weights, entry, keep=keep)
    if not (models / "totalsegmentator-total").exists():
        import_set(model_registry(), "totalsegmentator-total", weights, str(models),
                   allow_missing=False)  # fmt: skip
    return weights, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/orgseg-bench-pretrained")
    parser.add_argument("--slices", type=int, default=600)
    args = parser.parse_args()
    from orgseg.cli import set_process_environment

    set_process_environment()
    logging.basicConfig(level=logging.WARNING)
    from orgseg.core.body import body_mask
    from orgseg.core.metrics import dice
    from orgseg.io import read_volume
    from orgseg.models.registry import model_registry
    from tests.models.peers import measure, run_totalsegmentator

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_dir = train_model(work)
    weights, models = build_set(model_dir, work)
    scan = work / f"scan_{args.slices}.nii.gz"
    make_scan(scan, args.slices)
    print(f"model set and scan ready ({time.perf_counter() - t0:.0f} s incl. training if new)")

    ts_out = work / "totalsegmentator.nii.gz"
    ts = run_totalsegmentator(scan, ts_out, weights, work / "tshome")
    print(f"TotalSegmentator: {ts.seconds:.1f} s, peak RSS {ts.peak_rss_mb:.0f} MB")
    env = {**os.environ, "ORGSEG_MODELS": str(models), "OMP_NUM_THREADS": "2"}
    ours_dir = work / "orgseg"
    orgseg = str(REPO / ".venv" / "bin" / "orgseg")
    cmd = [orgseg, "segment", "-i", str(scan), "-o", str(ours_dir),
           "--model", "totalsegmentator-total", "--ml", "--threads", "2"]  # fmt: skip
    og = measure(cmd, env=env)
    print(f"orgseg: {og.seconds:.1f} s, peak RSS {og.peak_rss_mb:.0f} MB")

    ct = read_volume(str(scan))
    body = body_mask(np.asarray(ct.array), spacing_mm=ct.spacing_mm)
    theirs = np.asarray(read_volume(str(ts_out)).array)[body]
    ours = np.asarray(
        read_volume(str(ours_dir / scan.name.split(".")[0] / "segmentation.nii.gz")).array
    )[body]
    names = model_registry()["totalsegmentator-total"].classes
    ids = sorted((set(np.unique(theirs).tolist()) | set(np.unique(ours).tolist())) - {0})
    per_class = {names[i - 1]: dice(ours == i, theirs == i) for i in ids}
    print()
    print("| class | id | Dice (inside the body) |")
    print("|---|---|---|")
    for i, (name, d) in zip(ids, per_class.items(), strict=True):
        print(f"| {name} | {i} | {d:.5f} |")
    print()
    print("| tool | seconds | peak RSS MB |")
    print("|---|---|---|")
    print(f"| TotalSegmentator 2.18.0 | {ts.seconds:.1f} | {ts.peak_rss_mb:.0f} |")
    print(f"| orgseg | {og.seconds:.1f} | {og.peak_rss_mb:.0f} |")
    print(
        f"rss_ratio={og.peak_rss_mb / ts.peak_rss_mb:.3f} "
        f"time_ratio={og.seconds / ts.seconds:.3f} "
        f"min_dice={min(per_class.values()) if per_class else float('nan'):.5f} "
        f"classes={len(per_class)} ts_s={ts.seconds:.1f} orgseg_s={og.seconds:.1f} "
        f"ts_rss_mb={ts.peak_rss_mb:.0f} orgseg_rss_mb={og.peak_rss_mb:.0f}"
    )


if __name__ == "__main__":
    main()
