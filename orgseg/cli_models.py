"""``orgseg models``: the published model sets (list, fetch, import, check)."""

from __future__ import annotations

import argparse
import sys

from orgseg.errors import ConfigError


def cmd_models(args: argparse.Namespace) -> int:
    from orgseg.models.registry import model_registry
    from orgseg.models.store import models_dir

    root = models_dir(args.models_dir)
    registry = model_registry(*([args.registry] if args.registry else []), models_dir=root)
    if args.action == "list":
        return _list(registry, root)
    if not args.name:
        raise ConfigError(
            f"orgseg models {args.action} needs a model set NAME (orgseg models list)"
        )
    if args.action == "fetch":
        return _fetch(registry, args.name, root)
    if args.action == "import":
        if not args.path:
            raise ConfigError(
                "orgseg models import needs NAME and PATH (the folder or zip fetched by hand)"
            )
        from orgseg.models.store import import_set

        result = import_set(registry, args.name, args.path, root, allow_missing=args.partial)
        sys.stdout.write(_installed_line(result))
        return 0
    return _check(registry, args.name, root, load=not args.files_only)


def _list(registry, root: str) -> int:  # noqa: ANN001
    from orgseg.models.store import installed_sets

    installed = installed_sets(root)
    sys.stdout.write(f"models folder: {root}\n")
    for name in registry.names():
        entry = registry[name]
        state = "installed" if name in installed else ("fetch" if entry.fetchable else "import")
        sys.stdout.write(
            f"{name:32s} {state:9s} {len(entry.parts):>2} part(s)  {entry.licence}\n"
            f"{'':32s} {entry.description}\n"
        )
    return 0


def _installed_line(result) -> str:  # noqa: ANN001
    missing = f"; not found: {', '.join(result.missing)}" if result.missing else ""
    return (
        f"installed {result.name}: {len(result.parts)} part(s), {result.bytes / 1e6:.1f} MB "
        f"in {result.url}{missing}\n"
    )


def _fetch(registry, name: str, root: str) -> int:  # noqa: ANN001
    from orgseg.models.store import fetch_set

    def progress(url: str, done: int, total: int | None) -> None:
        if sys.stderr.isatty():
            of = f"/{total / 1e6:.0f}" if total else ""
            sys.stderr.write(f"\r{url.rsplit('/', 1)[-1][:50]}: {done / 1e6:.0f}{of} MB")
            if total and done >= total:
                sys.stderr.write("\n")

    sys.stdout.write(_installed_line(fetch_set(registry, name, root, progress=progress)))
    return 0


def _check(registry, name: str, root: str, *, load: bool) -> int:  # noqa: ANN001
    from orgseg.models.store import check_set, resolve_model

    checks = check_set(resolve_model(name, root), load=load)
    bad = 0
    for c in checks:
        if c.problems:
            bad += 1
            sys.stdout.write(f"PROBLEM {c.folder}: {'; '.join(c.problems)}\n")
        else:
            engine = "lean" if c.lean else "nnU-Net's predictor"
            sys.stdout.write(
                f"ok      {c.folder}: trainer {c.trainer}, folds {list(c.folds)}, {engine}\n"
            )
    sys.stdout.write(f"{name}: {len(checks) - bad} of {len(checks)} part(s) ok\n")
    return 1 if bad else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="published model sets: list, fetch, import, check",
        description="Model sets from the registry (TotalSegmentator, MOOSE, the reference "
        "study; add your own in a YAML named by ORGSEG_MODEL_REGISTRY). fetch downloads "
        "(resumable, sha256-verified) and installs into the models folder "
        "(ORGSEG_MODELS: a path or an s3:// prefix that tasks stage from); import installs a "
        "folder or zip fetched by hand; check loads every part and names what is missing. "
        "Then: orgseg segment --model NAME.",
    )
    p.add_argument("action", choices=["list", "fetch", "import", "check"])
    p.add_argument("name", nargs="?", help="model set name (orgseg models list)")
    p.add_argument("path", nargs="?", help="import: the folder or zip fetched by hand")
    p.add_argument("--models-dir", help="models folder (default $ORGSEG_MODELS or ~/.cache)")
    p.add_argument("--registry", help="an extra registry YAML")
    p.add_argument(
        "--partial",
        action="store_true",
        help="import: install the parts found even if some are missing (binary sets)",
    )
    p.add_argument(
        "--files-only", action="store_true", help="check: files and sha256 only, load nothing"
    )
    p.set_defaults(func=cmd_models)
