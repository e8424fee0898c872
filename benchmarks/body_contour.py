"""Body contour: orgseg vs a plain SimpleITK implementation of the reference algorithm.

The input is the bundled real CT (tests/data/totalseg_example, 3 mm, table visible)
resampled up to 512x512x300 voxels. Each method runs in its own child process (so peak
RSS is its own), on the same input file, in the same run. Reported:

* seconds of the algorithm alone (file reading excluded, measured separately),
* peak RSS of the process and its increase over the loaded input,
* mask quality: table/cushion voxels kept, organ voxels (TotalSegmentator labels) missed,
  and enclosed holes left in axial slices.

Targets (issue #2): time(orgseg) <= 0.2 x time(reference), RSS(orgseg) <= RSS(reference),
mask at least as good (table removed, body filled).

Then the whole processes, as a user runs them (issue #16): ``orgseg body-mask -i CT -o
MASK`` (start-up, reading, checks, contour, patient size, writing) against the reference
script's whole process (SimpleITK read, the algorithm, the mask written), wall seconds
of each, the median of ``--process-runs`` runs taken in turn (this VM's timings of one
process vary by 2x from run to run); target process_time_ratio <= 0.2.

    .venv/bin/python benchmarks/body_contour.py [--slices 300] [--size 512] [--process-runs 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "totalseg_example"


def rss_mb() -> float:
    from orgseg.io.memory import peak_rss_mb

    return peak_rss_mb()


def current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def make_input(size: int, slices: int, folder: Path) -> tuple[Path, Path]:
    """Resample the real CT and its labels up to size x size x slices."""
    ct = sitk.ReadImage(str(DATA / "example_ct_sm.nii.gz"))
    seg = sitk.ReadImage(str(DATA / "example_seg.nii.gz"))
    old_size = np.array(ct.GetSize(), float)
    old_spacing = np.array(ct.GetSpacing())
    new_size = [size, size, slices]
    new_spacing = old_size * old_spacing / np.array(new_size, float)
    out = []
    for image, interp, name in (
        (ct, sitk.sitkLinear, "ct"),
        (seg, sitk.sitkNearestNeighbor, "seg"),
    ):
        res = sitk.Resample(
            image,
            new_size,
            sitk.Transform(),
            interp,
            image.GetOrigin(),
            tuple(new_spacing),
            image.GetDirection(),
            -1024 if name == "ct" else 0,
            image.GetPixelID(),
        )
        path = folder / f"{name}.nii.gz"
        sitk.WriteImage(res, str(path), useCompression=False)
        out.append(path)
    return out[0], out[1]


def reference_mask(image: sitk.Image) -> sitk.Image:
    """The reference algorithm, plainly in SimpleITK."""
    mask = sitk.BinaryThreshold(image, -300, 2000, 1, 0)
    mask = sitk.BinaryMorphologicalClosing(mask, [1, 1, 1])
    size = list(mask.GetSize())
    filled = [sitk.BinaryFillhole(mask[:, :, z]) for z in range(size[2])]
    mask2 = sitk.JoinSeries(filled)
    mask2.CopyInformation(mask)
    cc = sitk.ConnectedComponent(mask2)
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    min_size = int(np.floor(10.0 / voxel_mm3)) + 1  # components <= 10 mm^3 removed
    relabelled = sitk.RelabelComponent(cc, minimumObjectSize=min_size, sortByObjectSize=True)
    return relabelled == 1


def run_method(method: str, ct_path: str, out_path: str, queue: mp.Queue) -> None:
    from orgseg.core.body import body_mask
    from orgseg.core.orientation import to_canonical
    from orgseg.io import read_volume

    t0 = time.perf_counter()
    if method == "reference":
        image = sitk.ReadImage(ct_path)
        read_s = time.perf_counter() - t0
        base = current_rss_mb()
        t1 = time.perf_counter()
        mask = sitk.GetArrayFromImage(reference_mask(image)).astype(bool)
        algo_s = time.perf_counter() - t1
        # back to the canonical frame for scoring
        from orgseg.io.volumes import _from_sitk

        vol = _from_sitk(image, ct_path)
        canon, rec = to_canonical(vol.with_array(mask))
        mask = np.ascontiguousarray(canon.array)
    else:
        vol = read_volume(ct_path)
        read_s = time.perf_counter() - t0
        canon, _ = to_canonical(vol)
        base = current_rss_mb()
        t1 = time.perf_counter()
        mask = body_mask(canon.array, spacing_mm=canon.spacing_mm)
        algo_s = time.perf_counter() - t1
    peak = rss_mb()
    np.save(out_path, mask)
    queue.put(
        {
            "method": method,
            "read_s": read_s,
            "algo_s": algo_s,
            "peak_rss_mb": peak,
            "input_rss_mb": base,
        }
    )


def score(
    mask: np.ndarray, seg: np.ndarray, ct: np.ndarray, spacing_y: float, ny_orig: int
) -> dict:
    from scipy import ndimage

    # rows below the patient in the original 3 mm grid: cushion from row 93, table from 97
    rows_per_orig = ct.shape[1] / ny_orig
    cushion_row = int(93 * rows_per_orig)
    table_row = int(97 * rows_per_orig)
    dense = ct > -300
    table = dense[:, table_row:, :]
    holes = 0
    for z in range(0, mask.shape[0], 10):
        holes += int(ndimage.binary_fill_holes(mask[z]).sum() - mask[z].sum())
    return {
        "table_voxels_kept": int(mask[:, table_row:, :][table].sum()),
        # foam-density voxels (-600..-150 HU) kept under the patient's back
        "cushion_voxels_kept": int(
            (
                mask[:, cushion_row:, :]
                & (ct[:, cushion_row:, :] > -600)
                & (ct[:, cushion_row:, :] < -150)
            ).sum()
        ),
        "organ_voxels_missed": int((~mask & (seg > 0)).sum()),
        "hole_voxels_in_every_10th_slice": holes,
        "mask_voxels": int(mask.sum()),
    }


def reference_process(ct_path: str, out_path: str) -> None:
    """The reference script as a user would run it: read, the algorithm, write."""
    image = sitk.ReadImage(ct_path)
    sitk.WriteImage(sitk.Cast(reference_mask(image), sitk.sitkUInt8), out_path, True)


def whole_process_s(args: list[str]) -> float:
    import subprocess
    import sys

    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def process_seconds(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Each command run ``runs`` times, the commands interleaved (so a noisy spell on
    the machine falls on both), wall seconds of every run."""
    out: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            out[name].append(whole_process_s(args))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument(
        "--process-runs", type=int, default=5, help="runs of each whole process (median)"
    )
    parser.add_argument(
        "--reference-process", nargs=2, metavar=("CT", "MASK"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.reference_process:
        reference_process(*args.reference_process)
        return
    from orgseg.cli import set_process_environment

    set_process_environment()  # the children run as an orgseg process does
    from orgseg.core.orientation import to_canonical
    from orgseg.io import read_volume

    with tempfile.TemporaryDirectory(prefix="orgseg-bench-") as tmp:
        folder = Path(tmp)
        ct_path, seg_path = make_input(args.size, args.slices, folder)
        ctx = mp.get_context("spawn")
        results = {}
        for method in ("reference", "orgseg"):
            queue = ctx.Queue()
            out = str(folder / f"{method}.npy")
            proc = ctx.Process(target=run_method, args=(method, str(ct_path), out, queue))
            proc.start()
            results[method] = queue.get()
            proc.join()
            results[method]["mask"] = out
        runs = process_seconds(
            {
                "reference": [
                    __file__,
                    "--reference-process",
                    str(ct_path),
                    str(folder / "ref_mask.nii.gz"),
                ],
                "orgseg": [
                    "-m",
                    "orgseg",
                    "body-mask",
                    "-i",
                    str(ct_path),
                    "-o",
                    str(folder / "mask.nii.gz"),
                ],
            },
            args.process_runs,
        )
        process_s = {name: float(np.median(seconds)) for name, seconds in runs.items()}
        ct, _ = to_canonical(read_volume(str(ct_path)))
        seg, _ = to_canonical(read_volume(str(seg_path)))
        for r in results.values():
            mask = np.load(r.pop("mask"))
            r.update(
                score(mask, np.asarray(seg.array), np.asarray(ct.array), ct.spacing_mm[1], 101)
            )

    print(f"input: {args.size}x{args.size}x{args.slices} voxels (real CT resampled up)")
    header = (
        f"{'method':10s} {'algo s':>8s} {'read s':>7s} {'peak RSS MB':>12s} {'over input MB':>14s} "
        f"{'table kept':>10s} {'cushion kept':>12s} {'organ missed':>12s} {'holes':>6s}"
    )
    print(header)
    for method, r in results.items():
        print(
            f"{method:10s} {r['algo_s']:8.2f} {r['read_s']:7.2f} {r['peak_rss_mb']:12.0f} "
            f"{r['peak_rss_mb'] - r['input_rss_mb']:14.0f} {r['table_voxels_kept']:10d} "
            f"{r['cushion_voxels_kept']:12d} {r['organ_voxels_missed']:12d} "
            f"{r['hole_voxels_in_every_10th_slice']:6d}"
        )
    for name, seconds in runs.items():
        print(f"whole process, {name}: " + " ".join(f"{s:.2f}" for s in seconds) + " s")
    print(
        f"whole process (median of {args.process_runs}): reference script "
        f"{process_s['reference']:.2f} s, orgseg body-mask {process_s['orgseg']:.2f} s"
    )
    ref, ours = results["reference"], results["orgseg"]
    time_ratio = ours["algo_s"] / ref["algo_s"]
    rss_ratio = ours["peak_rss_mb"] / ref["peak_rss_mb"]
    print(json.dumps(results))
    print(
        f"time_ratio={time_ratio:.3f} rss_ratio={rss_ratio:.3f} "
        f"table_kept={ours['table_voxels_kept']} vs {ref['table_voxels_kept']} "
        f"cushion_kept={ours['cushion_voxels_kept']} vs {ref['cushion_voxels_kept']} "
        f"organ_missed={ours['organ_voxels_missed']} vs {ref['organ_voxels_missed']} "
        f"process_time_ratio={process_s['orgseg'] / process_s['reference']:.3f}"
    )


if __name__ == "__main__":
    main()
