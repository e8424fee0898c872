"""The entry points behind ``orgseg evaluate``, ``orgseg cv-table`` and
``orgseg chunk-check``: each reads its inputs, computes, writes its files."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orgseg.catalog import ORGANS, check_organs
from orgseg.errors import DataContractError
from orgseg.evaluation.chunking import (
    CHUNKING_COLUMNS,
    DEFAULT_OVERLAPS_MM,
    chunking_rows,
    chunking_table,
)
from orgseg.evaluation.cv import CV_COLUMNS, FoldCase, cv_rows, cv_table, read_fold_cases
from orgseg.evaluation.inputs import (
    case_info_for,
    discover_cases,
    read_case_info,
)
from orgseg.evaluation.labelling import ORGSEG, labelling
from orgseg.evaluation.report import ReportFiles, write_report
from orgseg.evaluation.scoring import LabelSet, score_sets
from orgseg.evaluation.tables import Table, check_group_by, html_page, markdown_page, to_csv
from orgseg.inference.options import DEFAULTS
from orgseg.io import join_url, write_bytes
from orgseg.sources.registry import registry_with

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationRequest:
    """What ``orgseg evaluate`` was asked: named prediction sets (name, URL, labelling),
    the references, and how to group and compare."""

    predictions: tuple[tuple[str, str, str], ...]
    reference_url: str
    reference_labelling: str = ORGSEG
    out_url: str
    organs: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    cases_csv: str | None = None
    images_url: str | None = None
    pairs: tuple[tuple[str, str], ...] | None = None
    title: str = "orgseg evaluation"
    #: a registry YAML adding sources to the built-in ones (for --ref-labels)
    registry_url: str | None = None


def evaluate(request: EvaluationRequest) -> tuple[ReportFiles, int]:
    """Score every prediction set against the references and write the report.

    Returns the report's files and the number of cases that could not be scored
    (unreadable or misaligned; cases a model was not run on do not count).
    """
    group_by = check_group_by(request.group_by)
    registry = registry_with(*([request.registry_url] if request.registry_url else []))
    organs = check_organs(request.organs) if request.organs else tuple(ORGANS)
    if not request.predictions:
        raise DataContractError("expected at least one prediction set (--pred or --totalseg)")
    reference = LabelSet(
        name="reference",
        url=request.reference_url,
        labelling=labelling(request.reference_labelling, registry),
    )
    preds = [
        LabelSet(name=name, url=url, labelling=labelling(kind, registry))
        for name, url, kind in request.predictions
    ]
    ref_cases = discover_cases(request.reference_url, reference.labelling)
    metadata = read_case_info(request.cases_csv) if request.cases_csv else None
    images = discover_cases(request.images_url) if request.images_url else None
    if "size" in group_by and metadata is None and images is None:
        log.warning("--group-by size without --cases or --images: every size group is unknown")
    info = case_info_for(ref_cases, metadata=metadata, images=images)
    scores = score_sets(reference, preds, ref_cases=ref_cases, organs=organs, info=info)
    files = write_report(
        request.out_url, scores, group_by=group_by, title=request.title, pairs=request.pairs
    )
    return files, len(scores.failures)


def _write_table(
    out_url: str,
    stem: str,
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str],
    table: Table,
) -> None:
    """``<stem>.csv`` (the rows), ``<stem>.md`` and ``<stem>.html`` (the table)."""
    write_bytes(join_url(out_url, f"{stem}.csv"), to_csv(rows, columns).encode())
    write_bytes(join_url(out_url, f"{stem}.md"), markdown_page(table.title, "", [table]).encode())
    write_bytes(join_url(out_url, f"{stem}.html"), html_page(table.title, "", [table]).encode())


def cv_report(models: Sequence[tuple[str, str]], out_url: str) -> list[dict[str, object]]:
    """The cross-validation table of nnU-Net model folders; ``models`` are (strategy
    name, folder) pairs, several folders may share a strategy (strategy 1's organs)."""
    by_strategy: dict[str, list[FoldCase]] = {}
    for strategy, folder in models:
        by_strategy.setdefault(strategy, []).extend(read_fold_cases(folder))
    rows = cv_rows(by_strategy)
    _write_table(out_url, "cv", rows, CV_COLUMNS, cv_table(rows))
    return rows


def chunking_report(
    model_url: str,
    input_url: str,
    out_url: str,
    *,
    chunk_mm: float = DEFAULTS.chunk_mm,  # type: ignore[assignment]
    overlaps_mm: Sequence[float] = DEFAULT_OVERLAPS_MM,
    device: str = "cpu",
    max_cases: int | None = None,
) -> list[dict[str, object]]:
    """Segment the cases chunked and unchunked; write chunking.csv/.md/.html."""
    from orgseg.inference.model import ModelOptions, SegmentationModel
    from orgseg.io import load_ct
    from orgseg.io.storage import local_copy

    with local_copy(model_url) as model_dir:
        model = SegmentationModel(model_dir, ModelOptions(device=device))
    found = sorted(discover_cases(input_url).items())[:max_cases]
    cases = {case: load_ct(url)[0] for case, url in found}
    rows = chunking_rows(model, cases, model.labels, chunk_mm=chunk_mm, overlaps_mm=overlaps_mm)
    _write_table(
        out_url, "chunking", rows, CHUNKING_COLUMNS, chunking_table(rows, chunk_mm=chunk_mm)
    )
    return rows
