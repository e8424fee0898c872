"""``orgseg segment`` over one input or many: discovery, the per-case loop, the summary.

The model is loaded once for the whole batch. A case that cannot be read or segmented is
reported with a one-line reason and the batch goes on; its outputs are not left behind.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from orgseg.errors import OrgsegError
from orgseg.inference.archive import BulkCase, discover_archive
from orgseg.inference.engine import EngineOptions, Progress, Segmentation, segment_volume
from orgseg.inference.outputs import OutputOptions, write_case_outputs
from orgseg.io import ct_rows, join_url

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchSummary:
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (case id, reason)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"{len(self.done)} done, {len(self.failed)} failed in {self.seconds:.0f} s"]
        out += [f"FAILED {case}: {reason}" for case, reason in self.failed]
        return out


def discover_inputs(url: str) -> list[BulkCase]:
    """The cases under ``url``, found as ``orgseg bulk`` finds them
    (:func:`orgseg.inference.archive.discover_archive`): an image file, a DICOM series
    folder, or a folder/prefix of both, searched recursively; a folder holding several
    DICOM series gives one case per series. Files that are no CT input are logged."""
    cases = discover_archive(url)
    skipped = [c for c in cases if c.skip_reason]
    for c in skipped:
        log.info("skipped %s: %s", c.source_url, c.skip_reason)
    return [c for c in cases if not c.skip_reason]


def segment_one(
    model,
    url: str,
    case_url: str,
    *,
    case_id: str,
    is_dicom: bool,
    engine: EngineOptions,
    outputs: OutputOptions,
    series_uid: str | None = None,
    progress: Progress | None = None,
    loaded: tuple | None = None,
) -> Segmentation:
    """Read, segment and write one case's outputs under ``case_url`` (all or none).
    ``loaded``: what :func:`load_ct` already returned for ``url`` (read ahead); else the
    scan is read with :func:`ct_rows` (an axial NIfTI stays on local disk, read a slab of
    rows at a time)."""
    with (
        nullcontext(loaded) if loaded is not None else ct_rows(url, series_uid=series_uid) as (
            ct,
            reorientation,
        )
    ):
        from orgseg.inference.model_set import ModelSet

        if isinstance(model, ModelSet):  # several parts, one read and one body contour
            seg = model.segment(ct, engine, progress=progress)
        else:
            seg = segment_volume(model, ct, engine, progress=progress)
        write_case_outputs(
            case_url,
            labels=seg.labels,
            ct=ct,
            reorientation=reorientation,
            body=seg.body_bits,
            label_ids=model.labels,
            options=outputs,
            dicom_url=url if is_dicom else None,
            case_id=case_id,
            organ_masks=seg.organ_masks,
            model_info=model.description if isinstance(model, ModelSet) else None,
        )
    return seg


def failure_reason(exc: BaseException) -> str:
    """The one line a failed case is reported with."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def segment_batch(
    cases: list[BulkCase],
    output_url: str,
    model,
    *,
    engine: EngineOptions,
    outputs: OutputOptions,
    progress_factory: Callable[[str], Progress | None] | None = None,
) -> BatchSummary:
    """Segment every case into ``<output_url>/<case_id>/``; failures are collected."""
    summary = BatchSummary()
    t0 = time.perf_counter()
    for n, case in enumerate(cases, start=1):
        t_case = time.perf_counter()
        try:
            progress = progress_factory(case.case_id) if progress_factory else None
            seg = segment_one(
                model,
                case.source_url,
                join_url(output_url, case.case_id),
                case_id=case.case_id,
                is_dicom=case.is_dicom,
                series_uid=case.series_uid or None,
                engine=engine,
                outputs=outputs,
                progress=progress,
            )
        except Exception as exc:  # noqa: BLE001 - one bad case must not stop the batch
            if not isinstance(exc, OrgsegError):
                log.debug("case %s", case.case_id, exc_info=True)
            reason = failure_reason(exc)
            summary.failed.append((case.case_id, reason))
            log.error("case %d/%d %s failed: %s", n, len(cases), case.case_id, reason)
            continue
        summary.done.append(case.case_id)
        log.info(
            "case %d/%d %s: %s, %.1f s",
            n,
            len(cases),
            case.case_id,
            seg.describe(),
            time.perf_counter() - t_case,
        )
    summary.seconds = time.perf_counter() - t0
    return summary


def terminal_progress(case_id: str) -> Progress | None:
    """A one-line progress display per case when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\r{case_id}: chunk {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def run_segment(
    input_url: str,
    output_url: str,
    model_url: str,
    *,
    model_options,
    engine: EngineOptions,
    outputs: OutputOptions,
) -> BatchSummary:
    """Discover the inputs, load the model once (staged locally if remote), segment all."""
    from orgseg.inference.model_set import load_model
    from orgseg.io import local_copy

    cases = discover_inputs(input_url)
    log.info("segment: %d case(s) from %s", len(cases), input_url)
    with local_copy(model_url) as model_dir:
        model = load_model(model_dir, model_options)
        return segment_batch(
            cases,
            output_url,
            model,
            engine=engine,
            outputs=outputs,
            progress_factory=terminal_progress,
        )
