"""``orgseg bulk``: segment a whole archive, resumably, with a manifest and a summary.

Layout of DEST (a local folder or an ``s3://`` prefix)::

    manifest.csv            one row per case: case_id, source_url, series_uid, size_bytes,
                            status (pending/done/failed/skipped), error
    summary.json            {"done": n, "failed": n, "skipped": n, "pending": n, ...}
    organs.csv              organ volume (ml) and mean HU per case and organ
    throughput.json         cases per hour and peak RSS per task
    <case_id>/...           the case's outputs (as ``orgseg segment`` writes them)
    .orgseg/cases/<id>.json the case's committed status, written after its outputs

The manifest is written before any work starts. A task processes its shard's cases that
have no committed status; a case's status is written only after all its outputs, so a
task killed or preempted loses at most the case in flight, and rerunning the same command
does only what is not committed. ``manifest.csv`` and ``summary.json`` are rebuilt from
the committed statuses (atomically) at the end of every run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import posixpath
import resource
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from orgseg.errors import DataContractError, OrgsegError, StorageError
from orgseg.inference.batch import discover_inputs, failure_reason, segment_one
from orgseg.inference.engine import EngineOptions
from orgseg.inference.outputs import OutputOptions
from orgseg.io import exists, join_url, read_bytes, write_bytes
from orgseg.io.storage import filesystem, is_dir, list_files

log = logging.getLogger(__name__)

STATE_DIR = ".orgseg"
MANIFEST_FIELDS = ("case_id", "source_url", "series_uid", "size_bytes", "status", "error")


@dataclass(frozen=True, slots=True)
class BulkCase:
    case_id: str
    source_url: str
    series_uid: str = ""
    size_bytes: int = 0
    is_dicom: bool = False
    skip_reason: str = ""  # not a CT input at all (recorded as skipped)


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkOptions:
    engine: EngineOptions = field(default_factory=EngineOptions)
    outputs: OutputOptions = field(default_factory=lambda: OutputOptions(statistics=True))
    shards: int = 1
    workers: int = 1


# --- discovery ------------------------------------------------------------------------


def _series_of(files: Sequence[str]) -> dict[str, list[str]]:
    """DICOM files grouped by SeriesInstanceUID (headers only, from each file's first block)."""
    from orgseg.io.dicom_tree import dicom_header

    groups: dict[str, list[str]] = {}
    for f in files:
        try:
            uid = dicom_header(f)["SeriesInstanceUID"]
        except (DataContractError, StorageError):
            continue  # not DICOM: not part of a series
        groups.setdefault(uid, []).append(f)
    return groups


def discover_archive(source_url: str) -> list[BulkCase]:
    """Every case under ``source_url``: image files (NIfTI, NRRD, MHA, ...) and DICOM
    series (grouped by series UID; nested folders; several series in one folder become
    several cases). Files that are neither become ``skipped`` cases with the reason."""
    inputs = discover_inputs(source_url)
    cases: list[BulkCase] = []
    for c in inputs:
        if not c.is_dicom:
            cases.append(BulkCase(c.case_id, c.url, "", _size(c.url), False))
            continue
        files = [f for f in list_files(c.url) if posixpath.dirname(f) == c.url.rstrip("/")]
        groups = _series_of(files)
        if not groups:
            cases.append(BulkCase(c.case_id, c.url, "", 0, True))
            continue
        for uid, members in sorted(groups.items()):
            size = sum(_size(m) for m in members)
            cid = c.case_id if len(groups) == 1 else f"{c.case_id}__{uid[-8:]}"
            cases.append(BulkCase(cid, c.url, uid, size, True))
    known = {c.source_url for c in cases}
    for f in list_files(source_url) if is_dir(source_url) else []:
        folder = posixpath.dirname(f)
        name = posixpath.basename(f)
        if f in known or folder in known or name.startswith("."):
            continue
        cases.append(
            BulkCase(
                name.replace("/", "__"),
                f,
                skip_reason="not an image file or a DICOM series; nothing to segment",
            )
        )
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise DataContractError(f"{source_url}: several inputs map to the same case id: {dupes}")
    return sorted(cases, key=lambda c: c.case_id)


def _size(url: str) -> int:
    fs, path = filesystem(url)
    return int(fs.info(path).get("size", 0))


# --- state ------------------------------------------------------------------------------


def _status_url(dest: str, case_id: str) -> str:
    return join_url(dest, STATE_DIR, "cases", f"{case_id}.json")


def _cases_url(dest: str) -> str:
    return join_url(dest, STATE_DIR, "cases.json")


def write_plan(dest: str, cases: Sequence[BulkCase]) -> None:
    """The case list and an all-pending manifest, before any work starts."""
    write_bytes(_cases_url(dest), json.dumps([asdict(c) for c in cases], indent=1).encode())
    write_manifest(dest, cases)


def load_plan(dest: str) -> list[BulkCase]:
    return [BulkCase(**d) for d in json.loads(read_bytes(_cases_url(dest)))]


def committed(dest: str, case_id: str) -> dict | None:
    url = _status_url(dest, case_id)
    return json.loads(read_bytes(url)) if exists(url) else None


def write_manifest(dest: str, cases: Sequence[BulkCase]) -> dict[str, int]:
    """manifest.csv and summary.json from the committed statuses; returns the counts."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    counts = {"done": 0, "failed": 0, "skipped": 0, "pending": 0}
    for c in cases:
        st = committed(dest, c.case_id) or {}
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


# --- work -------------------------------------------------------------------------------


def shard_of(cases: Sequence[BulkCase], shard: int, shards: int) -> list[BulkCase]:
    return list(cases[shard::shards])


def _peak_rss_mb() -> float:
    from orgseg.io.memory import peak_rss_mb

    return peak_rss_mb()


def segment_case(model, case: BulkCase, dest: str, options: BulkOptions) -> dict:
    """Segment one case into ``dest/<case_id>/`` and commit its status; never raises for
    a bad case (the status says why)."""
    t0 = time.perf_counter()
    if case.skip_reason:
        status = {"status": "skipped", "error": case.skip_reason}
    else:
        try:
            segment_one(
                model,
                case.source_url,
                join_url(dest, case.case_id),
                case_id=case.case_id,
                is_dicom=case.is_dicom,
                engine=options.engine,
                outputs=options.outputs,
                series_uid=case.series_uid or None,
            )
            status = {"status": "done", "error": ""}
        except Exception as exc:  # noqa: BLE001 - one bad case must not stop the archive
            if not isinstance(exc, OrgsegError):
                log.exception("case %s: unexpected error", case.case_id)
            reason = failure_reason(exc)
            status = {"status": "failed", "error": reason}
    status["seconds"] = round(time.perf_counter() - t0, 2)
    write_bytes(_status_url(dest, case.case_id), json.dumps(status).encode())  # commit
    log.info("bulk %s: %s %s", case.case_id, status["status"], status["error"])
    return status


_WORKER_MODEL = None


def _worker_init(model_url: str, model_options) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = _load_model(model_url, model_options)


def _worker_case(case: BulkCase, dest: str, options: BulkOptions) -> dict:
    return segment_case(_WORKER_MODEL, case, dest, options)


def _load_model(model_url: str, model_options):
    from orgseg.inference.model import SegmentationModel
    from orgseg.io import local_copy

    with local_copy(model_url) as model_dir:
        return SegmentationModel(model_dir, model_options)


def run_shard(
    dest: str,
    shard: int,
    *,
    model_url: str,
    model_options,
    options: BulkOptions,
) -> dict:
    """Every uncommitted case of one shard (the model loaded once per worker); returns
    and commits the shard's throughput record."""
    cases = shard_of(load_plan(dest), shard, options.shards)
    todo = [c for c in cases if committed(dest, c.case_id) is None]
    log.info(
        "bulk shard %d/%d: %d of %d cases to do", shard + 1, options.shards, len(todo), len(cases)
    )
    t0 = time.perf_counter()
    statuses: list[dict] = []
    if todo and options.workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(
            max_workers=options.workers,
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(model_url, model_options),
        ) as pool:
            statuses = list(pool.map(_worker_case, todo, [dest] * len(todo), [options] * len(todo)))
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        peak = max(_peak_rss_mb(), children)
    elif todo:
        model = _load_model(model_url, model_options)
        statuses = [segment_case(model, c, dest, options) for c in todo]
        peak = _peak_rss_mb()
    else:
        peak = _peak_rss_mb()
    seconds = time.perf_counter() - t0
    record = {
        "shard": shard,
        "cases": len(todo),
        "done": sum(s["status"] == "done" for s in statuses),
        "failed": sum(s["status"] == "failed" for s in statuses),
        "seconds": round(seconds, 1),
        "cases_per_hour": round(3600.0 * len(todo) / seconds, 1) if todo and seconds > 0 else None,
        "peak_rss_mb": round(peak, 1),
        "workers": options.workers,
    }
    write_bytes(join_url(dest, STATE_DIR, "shards", f"{shard}.json"), json.dumps(record).encode())
    return record


def finalize(dest: str) -> dict[str, int]:
    """manifest.csv, summary.json (with throughput), organs.csv: rebuilt from what is
    committed."""
    cases = load_plan(dest)
    counts = write_manifest(dest, cases)
    rows = ["case_id,organ,volume_ml,mean_hu"]
    for c in cases:
        st = committed(dest, c.case_id)
        url = join_url(dest, c.case_id, "statistics.json")
        if st and st["status"] == "done" and exists(url):
            organs = json.loads(read_bytes(url)).get("organs", {})
            for organ, v in sorted(organs.items()):
                rows.append(f"{c.case_id},{organ},{v.get('volume_ml')},{v.get('mean_hu')}")
    write_bytes(join_url(dest, "organs.csv"), ("\n".join(rows) + "\n").encode())
    shards_url = join_url(dest, STATE_DIR, "shards")
    shards = (
        [json.loads(read_bytes(u)) for u in list_files(shards_url)] if exists(shards_url) else []
    )
    summary = dict(counts)
    summary["throughput"] = shards
    write_bytes(join_url(dest, "summary.json"), json.dumps(summary, indent=1).encode())
    write_bytes(join_url(dest, "throughput.json"), json.dumps(shards, indent=1).encode())
    return counts


def summary_lines(dest: str) -> list[str]:
    cases = load_plan(dest)
    counts = json.loads(read_bytes(join_url(dest, "summary.json")))
    out = [
        f"{counts.get('done', 0)} done, {counts.get('failed', 0)} failed, "
        f"{counts.get('skipped', 0)} skipped, {counts.get('pending', 0)} pending"
    ]
    for c in cases:
        st = committed(dest, c.case_id)
        if st and st["status"] in ("failed", "skipped"):
            out.append(f"{st['status'].upper()} {c.case_id}: {st['error']}")
    return out


def plan_text(
    cases: Sequence[BulkCase], dest: str, shards: int, *, seconds_per_case: float = 60.0
) -> str:
    """What a run would do, and its cost in task hours: from the seconds per case of the
    cases already committed under ``dest`` when there are any, else ``seconds_per_case``."""
    import statistics

    skipped = [c for c in cases if c.skip_reason]
    states = {c.case_id: committed(dest, c.case_id) for c in cases if not c.skip_reason}
    todo = [c for c in cases if not c.skip_reason and states[c.case_id] is None]
    seen = [s["seconds"] for s in states.values() if s and s.get("status") == "done"]
    per_case = statistics.median(seen) if seen else seconds_per_case
    basis = f"median of {len(seen)} committed cases" if seen else "assumed"
    hours = len(todo) * per_case / 3600.0
    per_shard = -(-len(todo) // max(1, shards))
    return (
        f"{len(cases)} inputs: {len(todo)} to segment "
        f"({sum(c.size_bytes for c in todo) / 1e9:.2f} GB), {len(skipped)} not CT inputs, "
        f"{len(cases) - len(todo) - len(skipped)} already committed\n"
        f"{shards} shard(s) of up to {per_shard} cases; estimated cost {hours:.2f} task-hours "
        f"at {per_case:.0f} s per case ({basis}), about {per_shard * per_case / 3600.0:.2f} h "
        "of wall time with every shard running"
    )
