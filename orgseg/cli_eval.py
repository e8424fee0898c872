"""``orgseg evaluate``, ``orgseg cv-table`` and ``orgseg chunk-check``: parse and call."""

from __future__ import annotations

import argparse
import sys

from orgseg.defaults import CHUNK_OVERLAP_MM
from orgseg.inference.options import DEFAULTS


def _named(value: str, default_name: str | None = None) -> tuple[str, str]:
    """``NAME=URL`` or ``URL`` -> (name, url); a bare URL is named by its last part."""
    name, sep, url = value.partition("=")
    if sep and name and "/" not in name and ":" not in name:
        return name, url
    if default_name:
        return default_name, value
    from orgseg.io.storage import split_suffix

    return split_suffix(value.rstrip("/").rsplit("/", 1)[-1])[0] or value, value


def _pair(value: str) -> tuple[str, str]:
    a, sep, b = value.partition(":")
    if not sep or not a or not b:
        raise argparse.ArgumentTypeError(f"expected MODEL_A:MODEL_B, got {value!r}")
    return a, b


def cmd_evaluate(args: argparse.Namespace) -> int:
    from orgseg.evaluation.commands import EvaluationRequest, evaluate

    preds = [(*_named(p), "orgseg") for p in args.pred or ()]
    for i, t in enumerate(args.totalseg or ()):
        default = "totalsegmentator" if i == 0 else None
        preds.append((*_named(t, default if "=" not in t else None), "totalsegmentator"))
    request = EvaluationRequest(
        predictions=tuple(preds),
        reference_url=args.ref,
        reference_labelling=args.ref_labels,
        out_url=args.output,
        organs=tuple(args.organs or ()),
        group_by=tuple(
            g for values in args.group_by or () for v in values for g in v.split(",") if g
        ),
        cases_csv=args.cases,
        images_url=args.images,
        pairs=tuple(args.compare) if args.compare else None,
        title=args.title,
        registry_url=args.registry,
    )
    files, failed = evaluate(request)
    n = {(s["model"], s["organ"]) for s in files.summary if s["group"] == "all"}
    sys.stdout.write(
        f"scored {len(n)} (model, organ) pair(s); report: {files.html}\n"
        f"summary: {files.summary_csv}\n"
    )
    if failed:
        sys.stdout.write(f"FAILED: {failed} case(s) could not be scored (see the report)\n")
    return 1 if failed else 0


def cmd_cv_table(args: argparse.Namespace) -> int:
    from orgseg.evaluation.commands import cv_report
    from orgseg.evaluation.tables import fmt_number

    models = [_named(m) for m in args.model]
    rows = cv_report(models, args.output)
    for r in rows:
        sys.stdout.write(
            f"{r['strategy']:<14} {r['organ']:<18} Dice {fmt_number(r['dice_mean'])} "
            f"± {fmt_number(r['dice_sd'])} (n={r['n']}, folds {r['folds']})\n"
        )
    return 0


def cmd_chunk_check(args: argparse.Namespace) -> int:
    from orgseg.evaluation.commands import chunking_report

    rows = chunking_report(
        args.model,
        args.input,
        args.output,
        chunk_mm=args.chunk_mm,
        overlaps_mm=tuple(args.overlaps_mm),
        device=args.device,
        max_cases=args.max_cases,
    )
    worst: dict[str, float] = {}
    for r in rows:
        key = str(r["setting"])
        worst[key] = min(worst.get(key, 1.0), float(r["dice"]))  # type: ignore[arg-type]
    for setting, value in worst.items():
        sys.stdout.write(f"{setting:<28} min Dice vs unchunked {value:.4f}\n")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="per-organ metrics, mean ± sd tables, tests, plots (vs TotalSegmentator too)",
    )
    p.add_argument(
        "--pred",
        action="append",
        metavar="[NAME=]DIR_OR_URL",
        help="predictions with orgseg label ids (a folder of <case>.nii.gz or <case>/); "
        "repeat to compare models",
    )
    p.add_argument(
        "--totalseg",
        action="append",
        metavar="[NAME=]DIR_OR_URL",
        help="TotalSegmentator outputs (total ids, or per-class file folders), mapped to "
        "orgseg organs through the source registry",
    )
    p.add_argument("--ref", required=True, help="reference label maps (folder, file or URL)")
    p.add_argument(
        "--ref-labels",
        default="orgseg",
        help="how the references encode organs: orgseg (default) or a registry source "
        "(e.g. totalsegmentator)",
    )
    p.add_argument("--organs", nargs="+", help="organs to score (default: every one)")
    p.add_argument(
        "--group-by",
        action="append",
        nargs="+",
        metavar="source|size",
        help="also summarise per test subset (source) and/or adult vs paediatric (size)",
    )
    p.add_argument(
        "--cases", help="CSV with case and any of source, size_group (adult|paediatric), age"
    )
    p.add_argument("--images", help="the CTs (folder or URL), to measure size groups")
    p.add_argument(
        "--compare",
        action="append",
        type=_pair,
        metavar="A:B",
        help="model pairs to test (default: every pair)",
    )
    p.add_argument("--registry", help="extra source registry YAML")
    p.add_argument("--title", default="orgseg evaluation")
    p.add_argument("-o", "--output", required=True, help="output folder or URL")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("cv-table", help="cross-validation Dice table from nnU-Net folds")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[STRATEGY=]DIR",
        help="nnU-Net model folder (with fold_*/validation); repeat, e.g. strategy1=... "
        "once per organ, strategy2=...",
    )
    p.add_argument("-o", "--output", required=True, help="output folder or URL")
    p.set_defaults(func=cmd_cv_table)

    p = sub.add_parser("chunk-check", help="chunked vs unchunked Dice per organ (sec. 3.4)")
    p.add_argument("--model", required=True, help="model folder or URL")
    p.add_argument("-i", "--input", required=True, help="CT file or folder of CTs")
    p.add_argument("-o", "--output", required=True, help="output folder or URL")
    p.add_argument(
        "--chunk-mm",
        type=float,
        default=DEFAULTS.chunk_mm,
        help=f"chunk length (default {DEFAULTS.chunk_mm:g})",
    )
    p.add_argument(
        "--overlaps-mm",
        type=float,
        nargs="+",
        default=[0.0, CHUNK_OVERLAP_MM],
        help=f"overlaps to test (default 0 {CHUNK_OVERLAP_MM:g})",
    )
    p.add_argument("--max-cases", type=int, help="at most this many cases")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.set_defaults(func=cmd_chunk_check)
