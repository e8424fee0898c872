"""Unit markers: ``<run_root>/units/<job>/<unit>.json``, written last when a unit's
outputs are committed, with its wall and GPU seconds. One listing of ``units/`` tells
what is done in the whole run; the markers' seconds price what is left."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orgseg.io import join_url
from orgseg.io.storage import filesystem

if TYPE_CHECKING:
    from orgseg.config import RunConfig

UnitKey = tuple[object, ...]


def unit_name(unit: UnitKey) -> str:
    """A unit's name in markers, logs and ``orgseg run --unit``.

    >>> unit_name(("liver", 3)), unit_name(())
    ('liver_3', 'all')
    """
    return "_".join(str(p) for p in unit) or "all"


def units_url(config: RunConfig) -> str:
    from orgseg.pipeline.layout import RunLayout

    return RunLayout.of(config).units_dir


def marker_url(config: RunConfig, job_name: str, unit: UnitKey) -> str:
    return join_url(units_url(config), job_name, f"{unit_name(unit)}.json")


def committed(config: RunConfig) -> dict[str, dict[str, str]]:
    """job -> unit name -> marker URL of every committed unit: one (paginated) listing."""
    fs, path = filesystem(units_url(config))
    root = path.rstrip("/")
    try:
        found = fs.find(root)
    except FileNotFoundError:
        return {}
    base = units_url(config).rstrip("/")
    out: dict[str, dict[str, str]] = {}
    for p in found:
        rel = str(p)[len(root) :].lstrip("/")
        if rel.count("/") != 1 or not rel.endswith(".json") or "/." in f"/{rel}":
            continue
        job_name, file = rel.split("/")
        out.setdefault(job_name, {})[file[: -len(".json")]] = f"{base}/{rel}"
    return out


def read_markers(urls: Sequence[str]) -> list[dict]:
    """Marker contents, fetched concurrently (one batched call)."""
    if not urls:
        return []
    fs, _ = filesystem(urls[0])
    paths = [filesystem(u)[1] for u in urls]
    blobs = fs.cat(paths, on_error="omit")
    return [json.loads(b) for b in blobs.values()] if isinstance(blobs, dict) else []
