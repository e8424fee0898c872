"""``orgseg bulk``'s bookkeeping: the plan, committed case statuses, the manifest, the
summary, the archive-wide organ tables and the cost per CT.

At 100,000+ cases nothing here makes one blocking request per case: statuses are found
with one listing of ``.orgseg/cases/`` and read concurrently (:func:`committed_all`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics as stats
from collections.abc import Sequence
from dataclasses import asdict

from orgseg.errors import JobError
from orgseg.inference.archive import BulkCase, balanced_shards, discover_part, merge_parts
from orgseg.io import join_url, read_bytes, write_bytes
from orgseg.io.storage import names_in, read_many

log = logging.getLogger(__name__)

STATE_DIR = ".orgseg"
MANIFEST_FIELDS = ("case_id", "source_url", "series_uid", "size_bytes", "status", "error")
#: the archive-wide organ table as Parquet, partitioned by organ (hive layout)
ORGANS_PARQUET = "organs.parquet"


def status_url(dest: str, case_id: str) -> str:
    return join_url(dest, STATE_DIR, "cases", f"{case_id}.json")


def _cases_url(dest: str) -> str:
    return join_url(dest, STATE_DIR, "cases.json")


def write_plan(dest: str, cases: Sequence[BulkCase]) -> None:
    """The case list and an all-pending manifest, before any work starts."""
    write_bytes(_cases_url(dest), json.dumps([asdict(c) for c in cases]).encode())
    write_manifest(dest, cases)


def discovery_part_url(dest: str, part: int) -> str:
    return join_url(dest, STATE_DIR, "discovery", f"{part}.json")


def write_discovery_part(dest: str, source_url: str, part: int, parts: int) -> int:
    """Discover part ``part`` of ``parts`` of the archive (its share of the top-level
    prefixes) and commit its cases; returns how many."""
    cases = discover_part(source_url, part, parts)
    write_bytes(discovery_part_url(dest, part), json.dumps([asdict(c) for c in cases]).encode())
    log.info("discovery part %d/%d: %d cases", part + 1, parts, len(cases))
    return len(cases)


def merge_discovery(dest: str, parts: int) -> list[BulkCase]:
    """The parts' cases as one plan (written, with its all-pending manifest)."""
    urls = [discovery_part_url(dest, k) for k in range(parts)]
    blobs = read_many(urls)
    missing = [u for u in urls if u not in blobs]
    if missing:
        raise JobError(
            f"discovery parts not committed: {missing}; rerun those parts (their tasks "
            "failed or have not run) before merging"
        )
    cases = merge_parts(
        [[BulkCase(**d) for d in json.loads(blobs[u])] for u in urls], join_url(dest, STATE_DIR)
    )
    write_plan(dest, cases)
    return cases


def load_plan(dest: str) -> list[BulkCase]:
    return [BulkCase(**d) for d in json.loads(read_bytes(_cases_url(dest)))]


def committed_all(dest: str) -> dict[str, dict]:
    """case id -> committed status: one listing of the status folder, then the statuses
    read concurrently (never one blocking request per case)."""
    folder = join_url(dest, STATE_DIR, "cases")
    names = sorted(n for n in names_in(folder) if n.endswith(".json") and not n.startswith("."))
    blobs = read_many([join_url(folder, n) for n in names])
    out = {}
    for url, raw in blobs.items():
        try:
            out[url.rsplit("/", 1)[-1][: -len(".json")]] = json.loads(raw)
        except ValueError:
            log.warning("%s: unreadable status, taken as not committed", url)
    return out


def write_manifest(
    dest: str, cases: Sequence[BulkCase], states: dict[str, dict] | None = None
) -> dict[str, int]:
    """manifest.csv and summary.json from the committed statuses; returns the counts."""
    states = committed_all(dest) if states is None else states
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    counts = {"done": 0, "failed": 0, "skipped": 0, "pending": 0}
    for c in cases:
        st = states.get(c.case_id) or {}
        status = st.get("status", "pending")
        counts[status] = counts.get(status, 0) + 1
        writer.writerow(
            {
                "case_id": c.case_id,
                "source_url": c.source_url,
                "series_uid": c.series_uid,
                "size_bytes": c.size_bytes,
                "status": status,
                "error": st.get("error", ""),
            }
        )
    write_bytes(join_url(dest, "manifest.csv"), buf.getvalue().encode())
    write_bytes(join_url(dest, "summary.json"), json.dumps(counts, indent=1).encode())
    return counts


def _organ_rows(dest: str, cases: Sequence[BulkCase], states: dict[str, dict]) -> list[dict]:
    done = [c.case_id for c in cases if (states.get(c.case_id) or {}).get("status") == "done"]
    blobs = read_many([join_url(dest, cid, "statistics.json") for cid in done])
    rows = []
    for cid in done:
        raw = blobs.get(join_url(dest, cid, "statistics.json"))
        if raw is None:
            continue
        for organ, v in sorted(json.loads(raw).get("organs", {}).items()):
            rows.append(
                {"case_id": cid, "organ": organ, "volume_ml": v.get("volume_ml"),
                 "mean_hu": v.get("mean_hu")}
            )  # fmt: skip
    return rows


def write_organ_parquet(dest: str, rows: Sequence[dict]) -> None:
    """``organs.parquet/organ=<name>/part-0.parquet``: one file per organ, so one organ's
    volumes across the archive are read without the rest (pyarrow, hive partitioning)."""
    import os
    import tempfile

    import pyarrow as pa
    import pyarrow.dataset as ds

    from orgseg.io.storage import remove, sync_up

    schema = pa.schema(
        [("case_id", pa.string()), ("organ", pa.string()), ("volume_ml", pa.float64()),
         ("mean_hu", pa.float64())]
    )  # fmt: skip
    table = pa.Table.from_pylist(list(rows), schema=schema)
    with tempfile.TemporaryDirectory(prefix="orgseg-parquet-") as tmp:
        local = os.path.join(tmp, ORGANS_PARQUET)
        ds.write_dataset(
            table, local, format="parquet", partitioning=["organ"],
            partitioning_flavor="hive", basename_template="part-{i}.parquet",
        )  # fmt: skip
        remove(join_url(dest, ORGANS_PARQUET))  # organs no longer present must not linger
        sync_up(local, join_url(dest, ORGANS_PARQUET))


def finalize(dest: str) -> dict[str, int]:
    """manifest.csv, summary.json (with throughput), organs.csv and organs.parquet:
    rebuilt from what is committed, every read batched."""
    cases = load_plan(dest)
    states = committed_all(dest)
    counts = write_manifest(dest, cases, states)
    rows = _organ_rows(dest, cases, states)
    lines = ["case_id,organ,volume_ml,mean_hu"] + [
        f"{r['case_id']},{r['organ']},{r['volume_ml']},{r['mean_hu']}" for r in rows
    ]
    write_bytes(join_url(dest, "organs.csv"), ("\n".join(lines) + "\n").encode())
    write_organ_parquet(dest, rows)
    shards_url = join_url(dest, STATE_DIR, "shards")
    names = sorted(n for n in names_in(shards_url) if n.endswith(".json"))
    blobs = read_many([join_url(shards_url, n) for n in names])
    shards = [json.loads(b) for _, b in sorted(blobs.items())]
    summary: dict = dict(counts)
    summary["throughput"] = shards
    write_bytes(join_url(dest, "summary.json"), json.dumps(summary, indent=1).encode())
    write_bytes(join_url(dest, "throughput.json"), json.dumps(shards, indent=1).encode())
    return counts


def summary_lines(dest: str, *, price_per_task_hour: float | None = None) -> list[str]:
    counts = json.loads(read_bytes(join_url(dest, "summary.json")))
    out = [
        f"{counts.get('done', 0)} done, {counts.get('failed', 0)} failed, "
        f"{counts.get('skipped', 0)} skipped, {counts.get('pending', 0)} pending"
    ]
    states = committed_all(dest)
    done_s = [s["seconds"] for s in states.values() if s.get("status") == "done"]
    if done_s:
        out.append(cost_line(stats.median(done_s), len(done_s), price_per_task_hour, "measured"))
    for cid, st in sorted(states.items()):
        if st.get("status") in ("failed", "skipped"):
            out.append(f"{st['status'].upper()} {cid}: {st.get('error', '')}")
    return out


def cost_line(
    seconds_per_case: float, n_cases: int, price_per_task_hour: float | None, basis: str
) -> str:
    """Cases per hour per task, task hours and (given a price) cost per CT."""
    per_hour = 3600.0 / seconds_per_case if seconds_per_case > 0 else float("inf")
    task_h = n_cases * seconds_per_case / 3600.0
    text = (
        f"{per_hour:.1f} cases per hour per task ({seconds_per_case:.0f} s per case, {basis}); "
        f"{task_h:.2f} task-hours for {n_cases} cases"
    )
    if price_per_task_hour is not None:
        per_ct = price_per_task_hour * seconds_per_case / 3600.0
        text += (
            f"; ${per_ct:.4f} per CT, ${per_ct * n_cases:.2f} in all at "
            f"${price_per_task_hour:.3f} per task hour"
        )
    return text


def plan_text(
    cases: Sequence[BulkCase],
    dest: str,
    shards: int,
    *,
    seconds_per_case: float = 60.0,
    price_per_task_hour: float | None = None,
) -> str:
    """What a run would do, and its cost in task hours (and money, given a price): from
    the seconds per case of the cases already committed under ``dest`` when there are
    any, else ``seconds_per_case``."""
    states = committed_all(dest)
    skipped = [c for c in cases if c.skip_reason]
    todo = [c for c in cases if not c.skip_reason and c.case_id not in states]
    seen = [s["seconds"] for s in states.values() if s.get("status") == "done"]
    per_case = stats.median(seen) if seen else seconds_per_case
    basis = f"median of {len(seen)} committed cases" if seen else "assumed"
    hours = len(todo) * per_case / 3600.0
    per_shard = max((len(s) for s in balanced_shards(todo, max(1, shards))), default=0)
    return (
        f"{len(cases)} inputs: {len(todo)} to segment "
        f"({sum(c.size_bytes for c in todo) / 1e9:.2f} GB), {len(skipped)} not CT inputs, "
        f"{len(cases) - len(todo) - len(skipped)} already committed\n"
        f"{shards} shard(s) of up to {per_shard} cases (balanced by bytes); estimated cost "
        f"{hours:.2f} task-hours at {per_case:.0f} s per case ({basis}), about "
        f"{per_shard * per_case / 3600.0:.2f} h of wall time with every shard running\n"
        + cost_line(per_case, len(todo), price_per_task_hour, basis)
    )
