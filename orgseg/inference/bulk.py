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

import json
import logging
import statistics as stats
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from orgseg.errors import DataContractError, JobError, MissingError, OrgsegError
from orgseg.inference.archive import BulkCase, balanced_shards, discover_archive
from orgseg.inference.batch import failure_reason, segment_one
from orgseg.inference.bulk_state import (
    STATE_DIR,
    committed_all,
    finalize,
    load_plan,
    plan_text,
    status_url,
    summary_lines,
    write_plan,
)
from orgseg.inference.engine import EngineOptions
from orgseg.inference.outputs import OutputOptions
from orgseg.io import join_url, write_bytes

log = logging.getLogger(__name__)

# the command's one entry point: discovery, the plan, the shards' work, the reports
__all__ = [
    "BulkCase", "BulkOptions", "discover_archive", "finalize", "plan_text", "run_shard",
    "summary_lines", "write_plan",
]  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkOptions:
    engine: EngineOptions = field(default_factory=EngineOptions)
    outputs: OutputOptions = field(default_factory=lambda: OutputOptions(statistics=True))
    shards: int = 1
    workers: int = 1
    #: attempts after the first for a case that fails for a reason outside its input
    retries: int = 3
    #: seconds before the first retry, doubled for each next one
    backoff_s: float = 5.0
    #: also redo cases committed as failed (after fixing what failed them)
    retry_failed: bool = False


class TransientCaseError(JobError):
    """A case kept failing for a reason outside its input (storage, device): the task
    stops with it uncommitted, so a rerun (or the scheduler's retry) does it."""


def input_fault(exc: BaseException) -> bool:
    """Whether the input itself caused ``exc`` (unreadable, not CT, bad geometry, gone):
    only then is a case committed as failed."""
    return isinstance(exc, DataContractError | MissingError)


# --- work ---------------------------------------------------------------------------


def shard_of(cases: Sequence[BulkCase], shard: int, shards: int) -> list[BulkCase]:
    """Shard ``shard`` of the plan, shards balanced by bytes."""
    return balanced_shards(cases, shards)[shard]


def _peak_rss_mb() -> float:
    from orgseg.io.memory import peak_rss_mb

    return peak_rss_mb()


def check_device(device: str) -> None:
    """Stop the task at once, before any case, when its device does not work: on a node
    without a working GPU every case would fail alike."""
    if not str(device).startswith("cuda"):
        return
    import torch

    try:
        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False")
        torch.zeros(1, device=device).add_(1).cpu()
    except Exception as exc:  # noqa: BLE001 - whatever the driver says, the node is unfit
        raise JobError(
            f"--device {device} on a node without a working GPU ({exc}); the task stops "
            "with its cases uncommitted so the scheduler can run it elsewhere "
            "(or use --device cpu)"
        ) from None


def _load(case: BulkCase) -> tuple:
    """The case's CT as :func:`load_ct` returns it: (Volume, Reorientation)."""
    from orgseg.io.volumes import load_ct

    return load_ct(case.source_url, series_uid=case.series_uid or None)


def segment_case(
    model,
    case: BulkCase,
    dest: str,
    options: BulkOptions,
    *,
    prefetched: Future | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Segment one case into ``dest/<case_id>/`` and commit its status.

    A fault of the input (:func:`input_fault`) is committed as ``failed`` with its
    reason; anything else (storage, device, out of memory) is retried with backoff and,
    if it persists, raised as :class:`TransientCaseError` with nothing committed."""
    t0 = time.perf_counter()
    if case.skip_reason:
        status = {"status": "skipped", "error": case.skip_reason}
    else:
        for attempt in range(options.retries + 1):
            try:
                loaded = prefetched.result() if prefetched is not None and attempt == 0 else None
                segment_one(
                    model,
                    case.source_url,
                    join_url(dest, case.case_id),
                    case_id=case.case_id,
                    is_dicom=case.is_dicom,
                    engine=options.engine,
                    outputs=options.outputs,
                    series_uid=case.series_uid or None,
                    loaded=loaded,
                )
                status = {"status": "done", "error": ""}
                break
            except Exception as exc:  # noqa: BLE001 - sorted into input faults and the rest
                reason = failure_reason(exc)
                if input_fault(exc):
                    status = {"status": "failed", "error": reason}
                    break
                if not isinstance(exc, OrgsegError):
                    log.debug("case %s", case.case_id, exc_info=True)
                if attempt == options.retries:
                    raise TransientCaseError(
                        f"case {case.case_id}: {type(exc).__name__}: {reason} "
                        f"({attempt + 1} attempts); not a fault of the input, so it is left "
                        "uncommitted: rerun the same command (or let the scheduler retry)"
                    ) from exc
                wait_s = options.backoff_s * 2**attempt
                log.warning(
                    "case %s: %s: %s; retry %d/%d in %.0f s", case.case_id,
                    type(exc).__name__, reason, attempt + 1, options.retries, wait_s,
                )  # fmt: skip
                sleep(wait_s)
    status["seconds"] = round(time.perf_counter() - t0, 2)
    write_bytes(status_url(dest, case.case_id), json.dumps(status).encode())  # commit
    log.info("bulk %s: %s %s", case.case_id, status["status"], status["error"])
    return status


_WORKER_MODEL = None


def _worker_init(model_url: str, model_options) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = _load_model(model_url, model_options)


def _worker_case(case: BulkCase, dest: str, options: BulkOptions) -> dict:
    return segment_case(_WORKER_MODEL, case, dest, options)


def _load_model(model_url: str, model_options):
    from orgseg.inference.model_set import load_model
    from orgseg.io import local_copy

    with local_copy(model_url) as model_dir:
        return load_model(model_dir, model_options)


def pending_cases(
    cases: Sequence[BulkCase], states: dict[str, dict], *, retry_failed: bool = False
) -> list[BulkCase]:
    """The cases a task still has to do: uncommitted, and committed failures on request."""
    redo = ("failed",) if retry_failed else ()
    return [c for c in cases if c.case_id not in states or states[c.case_id].get("status") in redo]


def _in_order(model, todo: Sequence[BulkCase], dest: str, options: BulkOptions) -> list[dict]:
    """One case after another, the next case fetched and read while this one is
    predicted (a thread: reading is I/O and decompression, the GPU stays busy)."""
    out = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="orgseg-prefetch") as pool:
        nxt = pool.submit(_load, todo[0]) if todo and not todo[0].skip_reason else None
        for i, case in enumerate(todo):
            current = nxt
            later = todo[i + 1] if i + 1 < len(todo) else None
            nxt = pool.submit(_load, later) if later and not later.skip_reason else None
            out.append(segment_case(model, case, dest, options, prefetched=current))
    return out


def run_shard(
    dest: str,
    shard: int,
    *,
    model_url: str,
    model_options,
    options: BulkOptions,
) -> dict:
    """Every uncommitted case of one shard (the model loaded once per worker); returns
    and commits the shard's throughput record. Raises :class:`TransientCaseError` (the
    task must exit non-zero) when a case keeps failing for a reason outside its input."""
    cases = shard_of(load_plan(dest), shard, options.shards)
    todo = pending_cases(cases, committed_all(dest), retry_failed=options.retry_failed)
    log.info(
        "bulk shard %d/%d: %d of %d cases to do", shard + 1, options.shards, len(todo), len(cases)
    )
    t0 = time.perf_counter()
    statuses: list[dict] = []
    if todo:
        check_device(getattr(model_options, "device", "cpu"))
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
    elif todo:
        statuses = _in_order(_load_model(model_url, model_options), todo, dest, options)
    seconds = time.perf_counter() - t0
    done_s = [s["seconds"] for s in statuses if s["status"] == "done"]
    record = {
        "shard": shard,
        "cases": len(todo),
        "done": len(done_s),
        "failed": sum(s["status"] == "failed" for s in statuses),
        "seconds": round(seconds, 1),
        "cases_per_hour": round(3600.0 * len(todo) / seconds, 1) if todo and seconds > 0 else None,
        "median_case_s": round(stats.median(done_s), 2) if done_s else None,
        # VmHWM: this process's own peak (workers are their own processes, not counted)
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "workers": options.workers,
    }
    write_bytes(join_url(dest, STATE_DIR, "shards", f"{shard}.json"), json.dumps(record).encode())
    return record
