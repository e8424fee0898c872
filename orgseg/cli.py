"""The ``orgseg`` command line: parse, set up logging, call one function. No logic here."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from orgseg import __version__
from orgseg.errors import OrgsegError
from orgseg.inference.options import DEFAULT_TILE_STEP, DEFAULTS

log = logging.getLogger("orgseg")


def _label_pairs(values: Sequence[str] | None) -> dict[str, int] | None:
    if not values:
        return None
    out = {}
    for v in values:
        name, sep, lid = v.partition("=")
        if not sep or not lid.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected NAME=ID (e.g. liver=5), got {v!r}")
        out[name] = int(lid)
    return out


def cmd_body_mask(args: argparse.Namespace) -> int:
    from orgseg.pipeline.body_mask import run_body_mask

    result = run_body_mask(
        args.input,
        args.output,
        crop_url=args.crop_out,
        margin_mm=args.margin_mm,
        series_uid=args.series_uid,
    )
    sys.stdout.write(result.to_json() + "\n")
    return 0


def cmd_phantoms(args: argparse.Namespace) -> int:
    from orgseg.pipeline.phantom_set import PhantomSetConfig, write_phantom_set

    config = PhantomSetConfig(
        n_sources=args.sources, n_cases=args.cases, size=args.size, seed=args.seed
    )
    registry = write_phantom_set(args.output, config)
    sys.stdout.write(
        f"wrote {args.sources * args.cases} phantom cases from "
        f"{len(registry.names())} sources to {args.output}\n"
    )
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from orgseg.pipeline.metrics import run_metrics

    out = run_metrics(args.pred, args.ref, args.output, labels=_label_pairs(args.labels))
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


def _terminal_progress(label: str):  # noqa: ANN202
    """A one-line progress report on a terminal (nothing when stderr is not one)."""
    if not sys.stderr.isatty():
        return None

    def report(done: int, total: int, item: str) -> None:
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r{label}: {done}/{total} {item[:40]:<40}{end}")
        sys.stderr.flush()

    return report


def cmd_sources(args: argparse.Namespace) -> int:
    from orgseg.sources.registry import registry_with

    if args.action == "scan":
        return _sources_scan(args)
    registry = registry_with(*([args.registry] if args.registry else []))
    for name in registry.names():
        source = registry[name]
        sys.stdout.write(f"{name:22s} {source.format:16s} {', '.join(source.organs)}\n")
    return 0


def _sources_scan(args: argparse.Namespace) -> int:
    from orgseg.pipeline.cases import resolve_registry
    from orgseg.pipeline.scan import scan_sources, summary_text, write_scan

    if not args.config or not args.output:
        raise argparse.ArgumentTypeError("orgseg sources scan needs -c CONFIG and -o DIR")
    config = _load_config(args.config)
    result = scan_sources(config, full=args.full, progress=_terminal_progress("scan"))
    urls = write_scan(result, args.output, resolve_registry(config))
    sys.stdout.write(summary_text(result) + "\n")
    sys.stdout.write(
        f"wrote {', '.join(sorted(u.rsplit('/', 1)[-1] for u in urls.values()))} to {args.output}\n"
    )
    return 1 if any(r.status == "excluded" for r in result.rows) else 0


def _load_config(path: str):  # noqa: ANN202
    from orgseg.config import load_run_config
    from orgseg.io import read_bytes
    from orgseg.io.storage import configure_storage
    from orgseg.pipeline.jobs import check_config

    config = check_config(load_run_config(read_bytes(path).decode(), where=path))
    configure_storage(config.storage)  # the endpoint for s3:// run roots
    return config


def cmd_demo(args: argparse.Namespace) -> int:
    from orgseg.orchestrate.demo import run_demo
    from orgseg.pipeline.phantom_set import PhantomSetConfig

    config = _load_config(args.config)
    result = run_demo(
        config, PhantomSetConfig(n_sources=args.sources, n_cases=args.cases, seed=args.seed)
    )
    qc = "\n".join(result.qc)
    sys.stdout.write(
        f"\nPseudo-label QC ({config.run_root}/qc/: qc.csv, summary.csv, sheets/):\n{qc}\n"
        f"\nHeld-out test cases, Dice vs phantom ground truth:\n{result.report}\n"
        f"wall time: {result.wall_s:.0f} s; everything is under {config.run_root}/\n"
        f"report (tables per source and size, tests, plots, CV and chunking tables): "
        f"{config.run_root}/evaluation/report.html\n"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from orgseg.pipeline.units import run_job

    for line in run_job(_load_config(args.config), args.job, args.unit or (), force=args.force):
        sys.stdout.write(line + "\n")
    return 0


def cmd_batch_unit(args: argparse.Namespace) -> int:
    from orgseg.orchestrate.awsbatch import run_array_child

    sys.stdout.write(
        run_array_child(args.config, args.units, index=args.index, endpoint_url=args.endpoint_url)
        + "\n"
    )
    return 0


def _with_executor(config, executor: str | None):
    import dataclasses

    if executor is None:
        return config
    return dataclasses.replace(
        config, cluster=dataclasses.replace(config.cluster, executor=executor)
    )


def cmd_train_all(args: argparse.Namespace) -> int:
    from orgseg.orchestrate import plan, runner
    from orgseg.orchestrate.executors import run_executor

    config = _with_executor(_load_config(args.config), args.executor)
    if args.dry_run:
        sys.stdout.write(plan.plan_text(config, *plan.plan(config)) + "\n")
        return 0
    wall = runner.train_all(config)
    backend = run_executor(config)
    if backend.submits:
        sub = runner.load_submission(config)
        for name, tasks in sub.jobs.items():
            ids = sorted({backend.job_of(t["task"]) for t in tasks})
            sys.stdout.write(f"{name:<16} {len(tasks):>4} tasks  job {','.join(ids)}\n")
        if not args.wait:
            sys.stdout.write(f"submitted; follow with: orgseg status -c {args.config}\n")
            return 0
        rows = runner.wait(config, timeout_s=args.wait_timeout)
        sys.stdout.write(runner.status_text(rows) + "\n")
        return 0
    sys.stdout.write(f"train-all finished in {wall:.0f} s\n")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from orgseg.orchestrate.runner import status, status_text

    rows = status(_load_config(args.config))
    sys.stdout.write(status_text(rows) + "\n")
    return 0 if all(r.done == r.units for r in rows) else 3


def _folds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(f) for f in text.split(",") if f.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected folds like 0,1,2, got {text!r}") from None


def _segment_options(args: argparse.Namespace):  # noqa: ANN202
    """(ModelOptions, EngineOptions, OutputOptions) from the segment options."""
    from orgseg.inference.engine import EngineOptions
    from orgseg.inference.model import ModelOptions
    from orgseg.inference.outputs import OutputOptions

    return (
        ModelOptions(
            folds=args.folds,
            device=args.device,
            threads=args.threads,
            use_mirroring=args.tta,
            tile_step_size=args.step_size,
            classes=args.classes,
        ),
        EngineOptions(
            mode=args.chunk_mode,
            chunk_mm=None if args.no_chunk else args.chunk_mm,
            overlap_mm=args.overlap_mm,
            body_crop=not args.no_body_crop,
            tile_batch=args.tile_batch,
        ),
        OutputOptions(
            ml=args.ml,
            statistics=args.statistics,
            preview=args.preview,
            output_types=tuple(t.strip() for t in args.output_type.split(",") if t.strip()),
        ),
    )


def cmd_segment(args: argparse.Namespace) -> int:
    from orgseg.inference.batch import run_segment
    from orgseg.models.store import resolve_model

    model_options, engine, outputs = _segment_options(args)
    summary = run_segment(
        args.input,
        args.output,
        resolve_model(args.model),
        model_options=model_options,
        engine=engine,
        outputs=outputs,
    )
    for line in summary.lines():
        sys.stdout.write(line + "\n")
    return 1 if summary.failed else 0


def _discovery_progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\rdiscovery: {done}/{total} file headers read")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_batch_bulk(args: argparse.Namespace) -> int:
    from orgseg.orchestrate.awsbatch import run_bulk_child

    out = run_bulk_child(
        args.spec,
        finalize=args.finalize,
        index=args.index,
        endpoint_url=args.endpoint_url,
        after=args.after,
    )
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


def cmd_bulk(args: argparse.Namespace) -> int:
    import dataclasses

    from orgseg.config import StorageConfig, load_cluster_profile
    from orgseg.inference.bulk import BulkOptions
    from orgseg.io.storage import configure_storage
    from orgseg.models.store import resolve_model
    from orgseg.orchestrate.bulk_workload import BulkRequest, run_bulk

    storage = StorageConfig(endpoint_url=args.endpoint_url)
    configure_storage(storage)
    model_options, engine, outputs = _segment_options(args)
    # statistics feed the archive-wide table of organ volumes and mean HU
    outputs = dataclasses.replace(outputs, statistics=True)
    request = BulkRequest(
        source=args.input,
        dest=args.output,
        # a plan needs the archive only; a run needs its model first
        model_url=args.model if args.dry_run else resolve_model(args.model),
        model_options=model_options,
        options=BulkOptions(
            engine=engine,
            outputs=outputs,
            shards=args.shards,
            workers=args.workers,
            retry_failed=args.retry_failed,
        ),
        index=args.index,
        discovery_parts=args.discovery_parts,
        profile=load_cluster_profile(args.profile),  # the defaults without one
        executor=args.executor,
        jobs_dir=args.jobs_dir,
        storage=storage,
        dry_run=args.dry_run,
        wait=args.wait,
        wait_timeout_s=args.wait_timeout,
    )
    lines, rc = run_bulk(request, progress=_discovery_progress)
    for line in lines:
        sys.stdout.write(line + "\n")
    return rc


MODEL_HELP = (
    "a model set name (orgseg models list; installed under $ORGSEG_MODELS), or a model "
    "folder or URL (<run_root>/models/strategy2)"
)


def _add_segment_options(p: argparse.ArgumentParser) -> None:
    from orgseg.configtools import field_help
    from orgseg.inference.options import EngineOptions

    engine = field_help(EngineOptions)  # each engine flag's help is its field's comment
    p.add_argument("--folds", type=_folds, help="folds to ensemble, e.g. 0,1,2 (default: all)")
    p.add_argument(
        "--chunk-mode",
        choices=("stream", "blend"),
        default=DEFAULTS.mode,
        help=f"{engine['mode']} (default {DEFAULTS.mode})",
    )
    p.add_argument(
        "--chunk-mm",
        type=float,
        default=DEFAULTS.chunk_mm,
        help=f"blend mode: {engine['chunk_mm']} (default {DEFAULTS.chunk_mm:g}; --no-chunk)",
    )
    p.add_argument(
        "--overlap-mm",
        type=float,
        default=DEFAULTS.overlap_mm,
        help=f"blend mode: {engine['overlap_mm']} (default {DEFAULTS.overlap_mm:g})",
    )
    p.add_argument(
        "--tile-batch",
        type=int,
        default=DEFAULTS.tile_batch,
        help=f"{engine['tile_batch']} (default {DEFAULTS.tile_batch})",
    )
    p.add_argument("--no-chunk", action="store_true", help="segment each scan in one piece")
    p.add_argument("--no-body-crop", action="store_true", help="keep table and objects")
    p.add_argument("--ml", action="store_true", help="one multi-label file, not one per organ")
    p.add_argument("--statistics", action="store_true", help="volume and mean HU per organ")
    p.add_argument("--preview", action="store_true", help="preview PNG (three views)")
    p.add_argument(
        "--output-type",
        default="nifti",
        help="comma-separated: nifti, dicom_seg, rtstruct (default nifti)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument(
        "--tta",
        action="store_const",
        const=True,
        default=None,
        help="mirroring test-time augmentation (default: off, or the model set's setting)",
    )
    p.add_argument(
        "--step-size",
        type=float,
        default=None,
        help=f"sliding-window step (default {DEFAULT_TILE_STEP}, or the model set's setting)",
    )
    p.add_argument(
        "--classes",
        choices=["native", "orgseg"],
        default="native",
        help="model sets: native (the set's own classes and ids, e.g. TotalSegmentator's "
        "117) or orgseg (mapped onto the organ catalog: lobes -> lungs, left/right merged)",
    )


def build_parser() -> argparse.ArgumentParser:
    from orgseg.config import EXECUTORS, ClusterConfig

    parser = argparse.ArgumentParser(
        prog="orgseg", description="Whole-body CT multi-organ segmentation on nnU-Net v2."
    )
    parser.add_argument("--version", action="version", version=f"orgseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("body-mask", help="body contour of a CT (table, blanket, objects removed)")
    p.add_argument("-i", "--input", required=True, help="CT file or DICOM folder (path or URL)")
    p.add_argument("-o", "--output", required=True, help="output mask (.nii.gz, .nrrd, .mha)")
    p.add_argument("--crop-out", help="also write the CT cropped to the body (+ margin)")
    p.add_argument(
        "--margin-mm",
        type=float,
        default=DEFAULTS.body_margin_mm,
        help=f"crop margin (default {DEFAULTS.body_margin_mm:g} mm)",
    )
    p.add_argument("--series-uid", help="DICOM series to read when the folder holds several")
    p.set_defaults(func=cmd_body_mask)

    p = sub.add_parser("phantoms", help="write a synthetic multi-source CT phantom set")
    p.add_argument("-o", "--output", required=True, help="output folder or URL")
    p.add_argument("--sources", type=int, default=3, help="number of sources (default 3)")
    p.add_argument("--cases", type=int, default=6, help="cases per source (default 6)")
    p.add_argument("--size", choices=["small", "whole-body"], default="small")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_phantoms)

    p = sub.add_parser("metrics", help="Dice, Jaccard, surface distances, volume difference")
    p.add_argument("--pred", required=True, help="predicted label map")
    p.add_argument("--ref", required=True, help="reference label map (same grid)")
    p.add_argument("-o", "--output", required=True, help="output JSON")
    p.add_argument(
        "--labels",
        nargs="+",
        metavar="NAME=ID",
        help="labels to compare (default: every id present)",
    )
    p.set_defaults(func=cmd_metrics)

    from orgseg.pipeline.jobs import JOB_NAMES

    p = sub.add_parser(
        "run",
        help="run one job of a training run (its units, or the named ones) in this process",
        description="Runs a job's units through the same path as train-all: staging of "
        "nnU-Net's folders for s3:// run roots, done checks, unit markers.",
    )
    p.add_argument("job", choices=list(JOB_NAMES))
    p.add_argument("-c", "--config", required=True, help="run config YAML (see jobs/)")
    p.add_argument(
        "--unit",
        action="append",
        metavar="NAME",
        help="one unit by name (repeatable), e.g. liver_0 for strategy1-train; default: all",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="run units already marked done (each redoes only what changed, e.g. fusion "
        "after an edited pseudo_labels.review)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "batch-unit",
        help="run one unit of an AWS Batch array job (the container command train-all submits)",
    )
    p.add_argument("--config", required=True, help="the run config the driver uploaded (URL)")
    p.add_argument("--units", required=True, help="the array job's unit list (URL)")
    p.add_argument(
        "--index", type=int, default=None, help="default: $AWS_BATCH_JOB_ARRAY_INDEX, else 0"
    )
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint of the URLs")
    p.set_defaults(func=cmd_batch_unit)

    p = sub.add_parser(
        "batch-bulk",
        help="run one shard (or the finalize step) of an AWS Batch bulk run (its container "
        "command)",
    )
    p.add_argument("--spec", required=True, help="the run's spec the driver uploaded (URL)")
    p.add_argument("--finalize", action="store_true", help="the finalize step")
    p.add_argument(
        "--after", help="finalize: wait until this Batch job (the shards) has ended first"
    )
    p.add_argument(
        "--index", type=int, default=None, help="default: $AWS_BATCH_JOB_ARRAY_INDEX, else 0"
    )
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint of the URLs")
    p.set_defaults(func=cmd_batch_bulk)

    p = sub.add_parser("train-all", help="run every stage in order, skipping what is done")
    p.add_argument("-c", "--config", required=True, help="run config YAML (see jobs/)")
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=None,
        help="local: in this process; slurm: chained job arrays; awsbatch: chained Batch "
        "array jobs (default: cluster.executor)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the job plan: units left, GPU hours (measured or cluster.rates), "
        "critical-path wall time",
    )
    p.add_argument("--wait", action="store_true", help="slurm: wait until every unit is done")
    p.add_argument("--wait-timeout", type=float, default=24 * 3600.0, help="seconds")
    p.set_defaults(func=cmd_train_all)

    p = sub.add_parser("status", help="each job's units done and Slurm states")
    p.add_argument("-c", "--config", required=True, help="run config YAML (see jobs/)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("demo", help="phantoms + the whole pipeline on CPU (make demo)")
    p.add_argument("-c", "--config", default="jobs/demo.yaml", help="default jobs/demo.yaml")
    p.add_argument("--sources", type=int, default=3)
    p.add_argument("--cases", type=int, default=6, help="cases per source (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("segment", help="segment CTs with a trained model (chunked, low RAM)")
    p.add_argument(
        "-i",
        "--input",
        required=True,
        help="CT file, DICOM series folder, or a folder / s3:// prefix of many",
    )
    p.add_argument("-o", "--output", required=True, help="output folder or URL (<case>/...)")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    _add_segment_options(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("bulk", help="segment a whole archive: sharded, resumable, a manifest")
    p.add_argument("-i", "--input", help="archive folder or s3:// prefix")
    p.add_argument("-o", "--output", required=True, help="destination folder or s3:// prefix")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument(
        "--index",
        help="series index to take instead of discovering the archive: CSV or Parquet, one "
        "row per file with columns series_uid, url (and optional size_bytes, case_id)",
    )
    p.add_argument(
        "--discovery-parts",
        type=int,
        default=1,
        help="discover the archive in this many parts (its top-level prefixes dealt out; "
        "on slurm an array job, merged into one manifest)",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="also redo cases committed as failed"
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="where the shards run (default: the profile's executor, else local)",
    )
    p.add_argument("--shards", type=int, default=1, help="array tasks (default 1)")
    p.add_argument("--workers", type=int, default=1, help="cases at once per task (default 1)")
    p.add_argument("--dry-run", action="store_true", help="print what would run")
    p.add_argument("--wait", action="store_true", help="slurm: wait for the tasks to end")
    p.add_argument("--wait-timeout", type=float, default=24 * 3600.0, help="seconds")
    p.add_argument(
        "--profile",
        help="cluster profile (YAML file or URL with a cluster: section, e.g. "
        "jobs/profiles/spot-gpu.yaml): its executor, jobs_dir, batch and the bulk "
        "resources (stages.bulk merged onto default)",
    )
    p.add_argument(
        "--jobs-dir",
        help="submitit folder on a shared filesystem (default: the profile's, else "
        f"{ClusterConfig().jobs_dir})",
    )
    p.add_argument(
        "--endpoint-url", help="S3-compatible endpoint for s3:// URLs (MinIO, Ceph, ...)"
    )
    _add_segment_options(p)
    p.set_defaults(func=cmd_bulk)

    from orgseg.cli_eval import add_commands
    from orgseg.cli_models import add_commands as add_model_commands

    add_commands(sub)
    add_model_commands(sub)

    p = sub.add_parser(
        "sources",
        help="list the source registry, or audit a run config's data (sources scan)",
        description="orgseg sources: list the registry (built-in + your YAML). "
        "orgseg sources scan -c CONFIG -o DIR [--full]: every case of every source the "
        "config names, per source x organ counts (CSV, Markdown, heatmap), label values "
        "found vs mapped, and every problem with its reason; headers only unless --full. "
        "Exit status 1 when a case would be excluded.",
    )
    p.add_argument("action", nargs="?", choices=["list", "scan"], default="list")
    p.add_argument("--registry", help="extra registry YAML to validate and add (list)")
    p.add_argument("-c", "--config", help="run config (scan)")
    p.add_argument("-o", "--output", help="folder or URL for the audit files (scan)")
    p.add_argument(
        "--full", action="store_true", help="read every volume (label values, empty masks)"
    )
    p.set_defaults(func=cmd_sources)
    return parser


#: process-wide settings an ``orgseg`` process starts with, unless the environment
#: already sets them. NumPy advises the kernel to back every array of 4 MB or more with
#: transparent huge pages; on cloud VMs that hand free memory back to the host (free
#: page reporting) the first touch of a fresh huge page is slow and erratic (see
#: docs/engine.md). orgseg's per-case stages allocate each large array once and stream
#: through it, so small pages cost them nothing.
PROCESS_ENVIRONMENT = {"NUMPY_MADVISE_HUGEPAGE": "0"}


def set_process_environment() -> None:
    """PROCESS_ENVIRONMENT's defaults, for this process and the ones it starts; takes
    effect only before numpy is imported (the benchmarks call it to run as orgseg does)."""
    for name, value in PROCESS_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def main(argv: Sequence[str] | None = None) -> int:
    set_process_environment()  # first: building the parser imports numpy
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # third-party INFO chatter (one line per copied DICOM module)
        for noisy in ("highdicom", "numexpr"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except OrgsegError as exc:
        sys.stderr.write(f"orgseg: error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
