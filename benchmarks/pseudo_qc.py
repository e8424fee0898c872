"""Pseudo-label QC against phantom truth, and strategy 2 under each fusion policy.

A phantom set with full ground truth (3 sources x ``--cases``, each source labelling a
few organs). Strategy 1 is trained as the run config says, except one organ
(``--weak``, spleen) whose folds get a tiny budget on purpose, so many of its
pseudo-labels are poor. Then pseudo-labels and job ``pseudo-qc``, and each
pseudo-label's Dice against the phantom truth (cropped as the case was):

* ``flag_recall``: share of masks with Dice < 0.8 that QC flagged;
* ``false_flag_rate``: share of masks with Dice >= 0.9 that QC flagged.

Then the run root is copied three times and strategy 2 trained on each with
``fusion.untrusted`` = ignore / drop-case / keep (same budget and seed), each scored on
the held-out cases against the phantom truth: a table of Dice per organ.

    .venv/bin/python benchmarks/pseudo_qc.py [--work DIR] [--cases 7] [--seed 3] [--fresh]

Targets (issue #18): flag_recall >= 0.8, false_flag_rate <= 0.1, and the default
policy's held-out mean Dice (and the weak organ's) not below keep's.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

ORGANS = ("kidneys", "liver", "lungs", "spleen")
POLICIES = ("ignore", "drop-case", "keep")


def base_config(work: Path):
    from orgseg.config import EvaluationConfig, NnunetConfig, RunConfig, SplitConfig, TrainingConfig

    def training(epochs: int, iters: int) -> TrainingConfig:
        return TrainingConfig(
            epochs=epochs, iterations_per_epoch=iters, val_iterations_per_epoch=3,
            folds=(0, 1), save_every_epochs=1, initial_lr=0.1, momentum=0.9,
        )  # fmt: skip

    return RunConfig(
        run_root=str(work / "run"),
        data_root=str(work / "data"),
        strategy1_organs=ORGANS,
        strategy2_organs=ORGANS,
        split=SplitConfig(test_fraction=0.15, n_folds=5),
        nnunet=NnunetConfig(features_scale=0.25, num_processes=1),
        strategy1_training=training(4, 20),
        strategy2_training=dataclasses.replace(training(8, 25), folds=(0,)),
        evaluation=EvaluationConfig(
            ground_truth_dir=str(work / "data" / "ground_truth"), chunking_cases=0
        ),  # fmt: skip
    )


def truth_dice(config) -> list[dict]:
    """Each pseudo-label's Dice against the phantom truth on the case's cropped grid."""
    from orgseg.catalog import label_ids
    from orgseg.core.crop import crop
    from orgseg.core.metrics import dice
    from orgseg.core.orientation import to_canonical
    from orgseg.io import read_volume
    from orgseg.pipeline.cases import load_manifest
    from orgseg.pipeline.layout import RunLayout

    layout = RunLayout.of(config)
    manifest = load_manifest(config)
    ids = label_ids(ORGANS)
    out = []
    for case_id in manifest.train:
        case = manifest.case(case_id)
        truth, _ = to_canonical(
            read_volume(f"{config.evaluation.ground_truth_dir}/{case_id}.nii.gz")
        )
        truth_crop = crop(np.asarray(truth.array), case.crop_box)
        for organ in ORGANS:
            if organ in case.manual_organs:
                continue
            mask = np.asarray(read_volume(layout.pseudo_mask(case_id, organ)).array) > 0
            out.append({"case_id": case_id, "organ": organ,
                        "dice": float(dice(mask, truth_crop == ids[organ]))})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-pseudo-qc"))
    parser.add_argument("--cases", type=int, default=7, help="cases per source")
    parser.add_argument("--weak", default="spleen")
    parser.add_argument("--fresh", action="store_true", help="delete --work first")
    parser.add_argument(
        "--seed", type=int, default=3,
        help="the phantom set's seed: another seed is an independent replicate (other "
        "cases, other strategy-1 models and pseudo-labels, other held-out cases)",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from orgseg.orchestrate.runner import train_all
    from orgseg.pipeline.jobs import JOB_NAMES
    from orgseg.pipeline.phantom_set import PhantomSetConfig, write_phantom_set
    from orgseg.pipeline.pseudo_qc import summary_text
    from orgseg.pipeline.units import run_job

    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    config = base_config(args.work)
    t0 = time.perf_counter()
    if not (args.work / "data" / "sources.yaml").exists():
        write_phantom_set(config.data_root, PhantomSetConfig(
            n_sources=3, n_cases=args.cases, seed=args.seed, organs=ORGANS))  # fmt: skip
    for job_name in JOB_NAMES[: JOB_NAMES.index("strategy1-data") + 1]:
        run_job(config, job_name)
    weak = dataclasses.replace(
        config,
        strategy1_training=dataclasses.replace(
            config.strategy1_training, epochs=1, iterations_per_epoch=2
        ),
    )
    run_job(weak, "strategy1-train", [f"{args.weak}_{f}" for f in weak.strategy1_training.folds])
    for job_name in ("strategy1-train", "pseudo-labels", "pseudo-qc", "cv-dice"):
        run_job(config, job_name)
    s1_s = time.perf_counter() - t0
    print("\n".join(summary_text(config)))

    # QC against the truth
    with open(Path(config.run_root) / "qc" / "qc.csv") as f:
        qc = {(r["case_id"], r["organ"]): r for r in csv.DictReader(f)}
    scored = truth_dice(config)
    poor = [s for s in scored if s["dice"] < 0.8]
    good = [s for s in scored if s["dice"] >= 0.9]
    flagged = lambda s: qc[(s["case_id"], s["organ"])]["flagged"] == "1"  # noqa: E731
    recall = sum(map(flagged, poor)) / len(poor) if poor else float("nan")
    false_rate = sum(map(flagged, good)) / len(good) if good else float("nan")
    print(f"\npseudo-labels: {len(scored)}; Dice < 0.8: {len(poor)}, >= 0.9: {len(good)}")
    for organ in ORGANS:
        mine = [s for s in scored if s["organ"] == organ]
        if mine:
            print(f"  {organ:<9} masks {len(mine):>3}  median Dice "
                  f"{np.median([s['dice'] for s in mine]):.3f}  flagged "
                  f"{sum(map(flagged, mine))}")  # fmt: skip
    missed = [s for s in poor if not flagged(s)]
    wrong = [s for s in good if flagged(s)]
    for s in missed[:5]:
        print(f"  missed: {s['case_id']}/{s['organ']} Dice {s['dice']:.3f}")
    for s in wrong[:5]:
        r = qc[(s["case_id"], s["organ"])]
        print(f"  false flag: {s['case_id']}/{s['organ']} Dice {s['dice']:.3f}: {r['reasons']}")

    # strategy 2 under each policy, from copies of the run root
    dice: dict[str, dict[str, float]] = {}
    for policy in POLICIES:
        root = args.work / f"run_{policy}"
        if not root.exists():
            shutil.copytree(config.run_root, root, symlinks=True)
        variant = dataclasses.replace(
            config, run_root=str(root), fusion=dataclasses.replace(config.fusion, untrusted=policy)
        )
        t = time.perf_counter()
        train_all(variant)
        summary = json.loads((root / "evaluation" / "summary.json").read_text())
        dice[policy] = {o: r["dice"] for o, r in summary["strategy2"].items()}
        records = [json.loads(p.read_text()) for p in (root / "fused").glob("*.json")]
        print(f"strategy 2, {policy}: {time.perf_counter() - t:.0f} s; "
              f"{sum(bool(r['dropped']) for r in records)} of {len(records)} cases left out, "
              f"{sum(r['ignored_voxels'] for r in records)} voxels ignored")  # fmt: skip
    print("\nheld-out strategy-2 Dice vs phantom truth")
    print("| organ | " + " | ".join(POLICIES) + " |")
    print("|---|" + "---|" * len(POLICIES))
    for organ in ORGANS:
        cells = [f"{dice[p].get(organ, float('nan')):.3f}" for p in POLICIES]
        print(f"| {organ} | " + " | ".join(cells) + " |")
    mean = {p: float(np.nanmean([dice[p].get(o, np.nan) for o in ORGANS])) for p in POLICIES}
    print("| mean | " + " | ".join(f"{mean[p]:.3f}" for p in POLICIES) + " |")
    default = config.fusion.untrusted
    print(
        f"\nstrategy 1 + QC: {s1_s:.0f} s; total {time.perf_counter() - t0:.0f} s; "
        f"default policy: {default}"
    )
    print(
        f"flag_recall={recall:.3f} false_flag_rate={false_rate:.3f} "
        f"s2_dice_default={mean[default]:.3f} s2_dice_keep={mean['keep']:.3f} "
        f"weak_organ_dice_default={dice[default].get(args.weak, float('nan')):.3f} "
        f"weak_organ_dice_keep={dice['keep'].get(args.weak, float('nan')):.3f}"
    )


if __name__ == "__main__":
    main()
