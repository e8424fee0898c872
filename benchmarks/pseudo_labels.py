"""Pseudo-labelling one shard: the previous path against the streamed one.

The same strategy-1 phantom models (one binary nnU-Net per organ, trained briefly at 3 mm
on phantoms) and the same cropped phantom cases (``--cases`` of 320x320x240 voxels at
1.5x1.2x1.2 mm), each path in its own process (spawned from a small parent; peak RSS is
the process's own VmHWM):

* ``previous``: what ``pipeline/pseudo.py`` did before: per organ, the ensemble loaded
  once, then per case the cropped CT read again (gzip NIfTI), nnU-Net's stock
  ``predict_single_npy_array`` on the whole scan, the mask written;
* ``streamed``: today's :func:`orgseg.pipeline.organ_masks.predict_organ_masks`: each CT
  read and body-contoured once, each ensemble loaded once, every prediction through the
  streamed engine, each mask committed with its record last.

Seconds are each process's whole shard (model loads, reads, predictions, writes); the
masks are then compared inside the body contour.

    .venv/bin/python benchmarks/pseudo_labels.py [--work DIR] [--cases 6]

Targets (issue #16): time_ratio <= 0.6, rss_ratio <= 0.5, 0 voxels differing inside the
body.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

ORGANS = ("liver", "lungs", "spleen")
SHAPE = (240, 320, 320)
SPACING_MM = (1.5, 1.2, 1.2)
MODEL_SPACING_MM = (3.0, 3.0, 3.0)


def train_models(work: Path) -> dict[str, Path]:
    from orgseg.pipeline.phantom_model import PhantomModelConfig, train_phantom_model

    out = {}
    for i, organ in enumerate(ORGANS):
        config = PhantomModelConfig(
            organs=(organ,),
            n_cases=5,
            shapes=((120, 128, 128),),
            spacing_mm=MODEL_SPACING_MM,
            features_scale=0.25,
            patch_size=(64, 64, 64),
            dataset_id=970 + i,
            training=dataclasses.replace(PhantomModelConfig().training, epochs=3),
        )
        out[organ] = train_phantom_model(work / f"model_{organ}", config)
    return out


def make_cases(
    work: Path, n: int, shape: tuple = SHAPE, spacing_mm: tuple = SPACING_MM
) -> list[str]:
    from orgseg.core.body import body_mask
    from orgseg.core.crop import bounding_box, crop_volume
    from orgseg.core.volume import Volume
    from orgseg.io import write_volume
    from orgseg.phantoms import make_phantom

    urls = []
    tag = "x".join(map(str, shape))
    for i in range(n):
        url = str(work / f"cases_{tag}" / f"case{i}_ct.nii.gz")
        urls.append(url)
        if Path(url).exists():
            continue
        ph = make_phantom(shape=shape, spacing_mm=spacing_mm, seed=100 + i)
        ct = Volume(np.asarray(ph.ct_hu).astype(np.int16), spacing_mm=ph.spacing_mm)
        box = bounding_box(body_mask(ct.array, spacing_mm=ct.spacing_mm), spacing_mm=ct.spacing_mm)
        write_volume(crop_volume(ct, box), url)  # as the cases stage stores it
    return urls


def setup(work: Path, n_cases: int, shape: tuple, spacing_mm: tuple) -> None:
    models = {o: str(p) for o, p in train_models(work).items()}
    cases = make_cases(work, n_cases, shape, spacing_mm)
    (work / "setup.json").write_text(json.dumps({"models": models, "cases": cases}))


def run_previous(models: dict[str, str], cases: list[str], out: str) -> None:
    from orgseg.io import read_volume, write_volume
    from orgseg.nnunet.predict import Predictor

    for organ, model_dir in models.items():
        predictor = Predictor(model_dir)
        for i, url in enumerate(cases):
            ct = read_volume(url)
            seg = predictor.predict(np.asarray(ct.array), ct.spacing_mm)
            write_volume(ct.with_array((seg == 1).astype(np.uint8)), f"{out}/{i}_{organ}.nii.gz")


def run_streamed(models: dict[str, str], cases: list[str], out: str, tile_batch: int) -> None:
    from orgseg.config import RunConfig
    from orgseg.inference.model import SegmentationModel
    from orgseg.io import read_volume
    from orgseg.pipeline.organ_masks import MaskTargets, case_cache, predict_organ_masks

    config = RunConfig(run_root=out, data_root=out, strategy1_organs=ORGANS, strategy2_organs=())
    config = dataclasses.replace(
        config, inference=dataclasses.replace(config.inference, tile_batch=tile_batch)
    )
    ids = {str(i): url for i, url in enumerate(cases)}
    targets = MaskTargets(
        mask=lambda c, o: f"{out}/{c}_{o}.nii.gz", record=lambda c, o: f"{out}/{c}_{o}.json"
    )
    with case_cache(lambda c: (read_volume(ids[c]), None), body_crop=True) as cache:
        predict_organ_masks(
            config,
            {o: list(ids) for o in models},
            cache,
            targets,
            load_model=lambda organ: SegmentationModel(models[organ]),
        )
        # the body contours the streamed masks were cropped to, for the comparison
        for c in ids:
            np.save(f"{out}/{c}_body.npy", cache.cached(c).body.bits)


def child(method: str, models: dict, cases: list, out: str, tile_batch: int, queue) -> None:  # noqa: ANN001
    import torch

    torch.set_num_threads(2)
    logging.basicConfig(level=logging.WARNING)
    from orgseg.io.memory import peak_rss_mb

    Path(out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if method == "previous":
        run_previous(models, cases, out)
    else:
        run_streamed(models, cases, out, tile_batch)
    queue.put({"seconds": time.perf_counter() - t0, "rss_mb": peak_rss_mb()})


def measure(method: str, models: dict, cases: list, out: Path, tile_batch: int = 1) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(method, models, cases, str(out), tile_batch, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"{method} failed with exit code {proc.exitcode}")
    return queue.get()


def main() -> None:
    from orgseg.cli import set_process_environment
    from orgseg.inference.options import PIPELINE_DEFAULTS

    set_process_environment()  # both children run as an orgseg job process does

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/orgseg-bench-pseudo")
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--shape", default="240,320,320", help="phantom z,y,x before the body crop")
    parser.add_argument("--spacing-mm", default="1.5,1.2,1.2", help="phantom spacing z,y,x")
    parser.add_argument(
        "--tile-batch", type=int, default=PIPELINE_DEFAULTS.tile_batch,
        help="the streamed path's tiles per forward pass (default: the run config's)",
    )  # fmt: skip
    parser.add_argument("--only-streamed", action="store_true", help="reuse the previous run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tile_batch = args.tile_batch
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # models and phantoms made in a child (not daemonic: nnU-Net's preprocessing starts
    # its own workers), so the parent stays small
    shape = tuple(int(v) for v in args.shape.split(","))
    spacing = tuple(float(v) for v in args.spacing_mm.split(","))
    proc = mp.get_context("spawn").Process(target=setup, args=(work, args.cases, shape, spacing))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"setup failed with exit code {proc.exitcode}")
    made = json.loads((work / "setup.json").read_text())
    models, cases = made["models"], made["cases"]
    from orgseg.core.body import PackedMask
    from orgseg.io import read_volume

    previous_json = work / "previous" / "measured.json"
    if args.only_streamed and previous_json.exists():
        a = json.loads(previous_json.read_text())
    else:
        a = measure("previous", models, cases, work / "previous")
        previous_json.write_text(json.dumps(a))
    b = measure("streamed", models, cases, work / "streamed", tile_batch)
    differing = outside = voxels = 0
    for i, url in enumerate(cases):
        shape = read_volume(url).shape
        body = PackedMask(np.load(work / "streamed" / f"{i}_body.npy"), shape).unpack()
        for organ in ORGANS:
            ma = np.asarray(read_volume(str(work / "previous" / f"{i}_{organ}.nii.gz")).array)
            mb = np.asarray(read_volume(str(work / "streamed" / f"{i}_{organ}.nii.gz")).array)
            differing += int(((ma != mb) & body).sum())
            outside += int(((ma != 0) & ~body).sum())
            voxels += int(ma.sum())
    print(f"{len(cases)} cases of {shape[2]}x{shape[1]}x{shape[0]} at {spacing} mm "
          "(cropped to the body), "
          f"{len(ORGANS)} organ models, {len(cases) * len(ORGANS)} masks")  # fmt: skip
    print(f"previous: {a['seconds']:.1f} s, peak RSS {a['rss_mb']:.0f} MB")
    print(f"streamed: {b['seconds']:.1f} s, peak RSS {b['rss_mb']:.0f} MB "
          f"({tile_batch} tiles per forward pass)")  # fmt: skip
    print(f"mask voxels (previous) {voxels}; outside the body (background by design) {outside}")
    print(json.dumps({"previous": a, "streamed": b}))
    print(
        f"time_ratio={b['seconds'] / a['seconds']:.3f} rss_ratio={b['rss_mb'] / a['rss_mb']:.3f} "
        f"voxels_differing_inside_body={differing}"
    )


if __name__ == "__main__":
    main()
