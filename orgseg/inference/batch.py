"""``orgseg segment`` over one input or many: discovery, the per-case loop, the summary.

The model is loaded once for the whole batch. A case that cannot be read or segmented is
reported with a one-line reason and the batch goes on; its outputs are not left behind.
"""

from __future__ import annotations

import logging
import posixpath
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from orgseg.errors import DataContractError, OrgsegError
from orgseg.inference.engine import EngineOptions, Progress, Segmentation, segment_volume
from orgseg.inference.outputs import OutputOptions, write_case_outputs
from orgseg.io import ct_rows, join_url
from orgseg.io.storage import is_dir, list_files, split_suffix
from orgseg.io.volumes import IMAGE_SUFFIXES, looks_like_dicom

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CaseInput:
    case_id: str
    url: str
    is_dicom: bool


@dataclass(slots=True)
class BatchSummary:
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (case id, reason)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"{len(self.done)} done, {len(self.failed)} failed in {self.seconds:.0f} s"]
        out += [f"FAILED {case}: {reason}" for case, reason in self.failed]
        return out


def _case_id(name: str) -> str:
    stem, _ = split_suffix(name)
    return stem


def discover_inputs(url: str) -> list[CaseInput]:
    """Cases under ``url``: an image file, a DICOM series folder, or a folder/prefix of
    image files and DICOM series folders (nested folders are searched)."""
    if not is_dir(url):
        return [CaseInput(_case_id(posixpath.basename(url.rstrip("/"))), url, False)]
    files = list_files(url)
    base = url.rstrip("/")
    cases: list[CaseInput] = []
    others: dict[str, list[str]] = {}  # folder -> files that are not image files
    for f in files:
        name = posixpath.basename(f)
        if name.startswith("."):
            continue
        _, suffix = split_suffix(name)
        if suffix.lower() in IMAGE_SUFFIXES:
            rel = f[len(base) + 1 :]
            cases.append(CaseInput(_case_id(rel.replace("/", "__")), f, False))
        else:
            others.setdefault(posixpath.dirname(f), []).append(f)
    for folder, members in others.items():
        # DICOM files often have no suffix or a UID-like one: check the magic of one file
        if any(m.lower().endswith((".dcm", ".ima")) for m in members) or looks_like_dicom(
            members[0]
        ):
            rel = folder[len(base) + 1 :] if len(folder) > len(base) else posixpath.basename(base)
            cases.append(CaseInput(rel.replace("/", "__"), folder, True))
    if not cases:
        raise DataContractError(
            f"{url}: found no CT to segment; expected image files "
            f"({', '.join(IMAGE_SUFFIXES)}) or DICOM series folders"
        )
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise DataContractError(f"{url}: several inputs map to the same case id: {dupes}")
    return sorted(cases, key=lambda c: c.case_id)


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
    cases: list[CaseInput],
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
                case.url,
                join_url(output_url, case.case_id),
                case_id=case.case_id,
                is_dicom=case.is_dicom,
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
