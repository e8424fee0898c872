"""Chunked inference vs stock nnU-Net prediction: peak RSS, time, agreement.

A real nnU-Net model with 20 output classes (background + the 19 strategy-2 organs; the
phantoms carry 9 of them) and a deliberately small network (a quarter of nnU-Net's
features, 64^3 patch) is trained briefly on phantoms at 6 mm (like TotalSegmentator's
``--fastest`` model; a 3 mm model of the same size did not learn the organs within a CPU
budget of minutes): the network runs on a small grid, while the stock path still brings
all 20 class probabilities back to the full original grid.
Whole-body phantom scans of 512x512xN at 0.8x0.8x1.5 mm are synthesised (N = 300, 600).
Each prediction runs in its own child process (peak RSS is its own):

* (a) stock: nnU-Net's ``nnUNetPredictor`` on the whole scan (its own export path);
* (b) orgseg: the engine with its defaults (``--mode stream``: nnU-Net's whole-scan
  sliding window walked one tile row at a time, tiles that cannot reach the body skipped,
  outside the body background), the scan read as ``orgseg segment`` reads it
  (:func:`orgseg.io.ct_rows`: decompressed once to local disk, read a slab of rows at a
  time); ``--mode blend`` measures the chunk-and-blend path (chunks of ``--chunk-mm``
  overlapping ``--overlap-mm``) instead.

Seconds are the prediction alone (reading the file and loading the model excluded; the
slab reads of (b) are inside its prediction); peak RSS is the whole process. Dice(a, b)
per organ present, and the number of voxels inside the body contour where (a) and (b)
differ.

Targets (issue #4): RSS(b)/RSS(a) <= 0.35 at N=600; RSS(b,600)/RSS(b,300) <= 1.2;
time(b)/time(a) <= 1.10; Dice(a, b) >= 0.999 for every organ. ``min_dice`` is taken with
the body crop off (chunking alone; with it on, voxels stock labels outside the body
contour, such as organs "seen" in the table or air, become background by design and
``min_dice_body_crop`` reports that).

    .venv/bin/python benchmarks/chunked_inference.py [--work DIR] [--slices 300,600]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
from whole_body import make_scan
from whole_body import train_model as _train

from orgseg.core.metrics import dice


def rss_mb() -> float:
    from orgseg.io.memory import peak_rss_mb

    return peak_rss_mb()


def train_model(work: Path) -> Path:
    from orgseg.catalog import STRATEGY2_ORGANS

    return _train(work, STRATEGY2_ORGANS)


def run_child(method: str, scan: str, model_dir: str, out: str, options: dict, queue) -> None:
    import torch

    torch.set_num_threads(2)
    logging.basicConfig(level=logging.WARNING)
    from orgseg.inference.engine import EngineOptions, segment_volume
    from orgseg.inference.model import SegmentationModel
    from orgseg.io import ct_rows, load_ct

    model = SegmentationModel(model_dir)
    if method == "stock":  # nnU-Net holds the whole scan
        ct, _ = load_ct(scan)
        t0 = time.perf_counter()
        labels = model.lut[model.predictor.predict(np.asarray(ct.array), ct.spacing_mm)]
        chunks = 1
        seconds, peak = time.perf_counter() - t0, rss_mb()
    else:  # as ``orgseg segment`` reads it: the scan on local disk, a slab of rows at a time
        with ct_rows(scan) as (ct, _):
            t0 = time.perf_counter()
            seg = segment_volume(model, ct, EngineOptions(**options))
            seconds, peak = time.perf_counter() - t0, rss_mb()
        labels, chunks = seg.labels, seg.describe()
        if seg.body_bits is not None:  # after the measurement: unpacking costs a bool array
            np.save(out.replace(".npy", "_body.npy"), seg.body)
    np.save(out, labels)
    queue.put({"seconds": seconds, "rss_mb": peak, "chunks": chunks})


def measure(method: str, scan: Path, model_dir: Path, out: Path, options: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    args = (method, str(scan), str(model_dir), str(out), options, queue)
    proc = ctx.Process(target=run_child, args=args)
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return {"seconds": float("nan"), "rss_mb": float("nan"), "failed": proc.exitcode}
    return queue.get()


def dice_per_organ(a: np.ndarray, b: np.ndarray, labels: dict[str, int]) -> dict[str, float]:
    out = {}
    for organ, lid in labels.items():
        ma, mb = a == lid, b == lid
        if ma.any() or mb.any():
            out[organ] = dice(ma, mb)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/orgseg-bench-chunked")
    parser.add_argument("--slices", default="300,600")
    parser.add_argument("--mode", choices=("stream", "blend"), default="stream")
    parser.add_argument("--chunk-mm", type=float, default=150.0)
    parser.add_argument("--overlap-mm", type=float, default=50.0)
    args = parser.parse_args()
    from orgseg.cli import set_process_environment

    set_process_environment()  # the children run as an orgseg process does
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_dir = train_model(work)
    print(f"model: {model_dir} ({time.perf_counter() - t0:.0f} s incl. training if not cached)")
    labels = json.loads((model_dir / "orgseg_model.json").read_text())["catalog_ids"]
    options = {"mode": args.mode, "chunk_mm": args.chunk_mm, "overlap_mm": args.overlap_mm}
    rows = {}
    for n in [int(s) for s in args.slices.split(",")]:
        scan = work / f"scan_{n}.nii.gz"
        make_scan(scan, n)
        a = measure("stock", scan, model_dir, work / f"stock_{n}.npy", {})
        b = measure("orgseg", scan, model_dir, work / f"orgseg_{n}.npy", options)
        # the same engine without the body crop: what chunking alone does to the labels
        c = measure(
            "orgseg", scan, model_dir, work / f"nocrop_{n}.npy", {**options, "body_crop": False}
        )
        dice, dice_nocrop = {}, {}
        in_body = outside = "?"
        if not any("failed" in r for r in (a, b, c)):
            sa, sb = np.load(work / f"stock_{n}.npy"), np.load(work / f"orgseg_{n}.npy")
            dice = dice_per_organ(sa, sb, labels)
            dice_nocrop = dice_per_organ(sa, np.load(work / f"nocrop_{n}.npy"), labels)
            body_file = work / f"orgseg_{n}_body.npy"
            if body_file.exists():
                body = np.load(body_file)
                in_body = str(int(((sa != sb) & body).sum()))
                outside = str(int(((sa != 0) & ~body).sum()))
                body_file.unlink()
        rows[n] = (a, b, dice, c, dice_nocrop)
        print(
            f"N={n}: stock {a['seconds']:.1f} s {a['rss_mb']:.0f} MB | orgseg "
            f"{b['seconds']:.1f} s {b['rss_mb']:.0f} MB ({b.get('chunks', '?')}) | orgseg "
            f"without body crop {c['seconds']:.1f} s {c['rss_mb']:.0f} MB"
        )
        print(
            f"    voxels where stock and orgseg differ inside the body: {in_body}; "
            f"voxels stock labels outside the body: {outside}"
        )
        for organ, d in sorted(dice.items()):
            print(
                f"    Dice(stock, orgseg) {organ:<12} {d:.5f}   "
                f"without body crop {dice_nocrop.get(organ, float('nan')):.5f}"
            )
    print()
    print(
        "| N | stock s | stock MB | orgseg s | orgseg MB | RSS ratio | time ratio "
        "| min Dice | min Dice, no body crop |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, (a, b, dice, _, dice_nocrop) in rows.items():
        min_d = min(dice.values()) if dice else float("nan")
        min_n = min(dice_nocrop.values()) if dice_nocrop else float("nan")
        print(
            f"| {n} | {a['seconds']:.1f} | {a['rss_mb']:.0f} | {b['seconds']:.1f} | "
            f"{b['rss_mb']:.0f} | {b['rss_mb'] / a['rss_mb']:.3f} | "
            f"{b['seconds'] / a['seconds']:.3f} | {min_d:.5f} | {min_n:.5f} |"
        )
    ns = sorted(rows)
    big, small = rows[ns[-1]], rows[ns[0]]
    all_dice = [d for r in rows.values() for d in r[2].values()]
    all_nocrop = [d for r in rows.values() for d in r[4].values()]
    print(
        f"rss_ratio={big[1]['rss_mb'] / big[0]['rss_mb']:.3f} "
        f"length_ratio={big[1]['rss_mb'] / small[1]['rss_mb']:.3f} "
        f"time_ratio={big[1]['seconds'] / big[0]['seconds']:.3f} "
        f"min_dice={min(all_nocrop) if all_nocrop else float('nan'):.5f} "
        f"min_dice_body_crop={min(all_dice) if all_dice else float('nan'):.5f}"
    )


if __name__ == "__main__":
    main()
