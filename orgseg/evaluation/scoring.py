"""Per-case, per-organ metrics of one or more prediction sets against one reference set."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from orgseg.core.metrics import overlap_metrics
from orgseg.errors import DataContractError, OrgsegError
from orgseg.evaluation.inputs import CaseInfo, CaseLabels, discover_cases, read_case_labels
from orgseg.evaluation.labelling import Labelling
from orgseg.evaluation.tables import CaseMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelSet:
    """A named set of label files (predictions of one model, or the references)."""

    name: str
    url: str
    labelling: Labelling


@dataclass(slots=True)
class Scores:
    """Everything an evaluation found: the rows, and what could not be scored."""

    rows: list[CaseMetrics] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)  # model -> case ids
    failures: list[str] = field(default_factory=list)  # one line per unreadable case


def score_case(
    model: str, case: str, info: CaseInfo, pred: CaseLabels, ref: CaseLabels
) -> list[CaseMetrics]:
    """Metrics of every organ that is non-empty in the reference and expressed by the
    prediction (an organ a model cannot output is skipped, not scored 0)."""
    if not pred.grid.same_grid(ref.grid, tol_mm=1e-2):
        raise DataContractError(
            f"case {case}: the {model} prediction is not on the reference grid (shape "
            f"{pred.grid.shape} vs {ref.grid.shape}, spacing {pred.grid.spacing_mm} vs "
            f"{ref.grid.spacing_mm}, origin {pred.grid.origin_mm} vs {ref.grid.origin_mm}); "
            "predict on the reference's CT, or resample the prediction onto it"
        )
    voxel_ml = float(np.prod(ref.spacing_mm)) / 1000.0
    rows = []
    for organ, ref_mask in ref.masks.items():
        if organ not in pred.masks or not ref_mask.any():
            continue
        m = overlap_metrics(pred.masks[organ], ref_mask, spacing_mm=ref.spacing_mm)
        rows.append(
            CaseMetrics(
                model=model,
                case=case,
                source=info.source,
                size_group=info.size_group,
                organ=organ,
                **asdict(m),
                ref_ml=round(int(ref_mask.sum()) * voxel_ml, 4),
                pred_ml=round(int(pred.masks[organ].sum()) * voxel_ml, 4),
            )
        )
    return rows


def score_sets(
    reference: LabelSet,
    predictions: Sequence[LabelSet],
    *,
    ref_cases: Mapping[str, str],
    organs: tuple[str, ...],
    info: Mapping[str, CaseInfo],
) -> Scores:
    """Every reference case (``ref_cases``: :func:`discover_cases` of ``reference``)
    against every prediction set that has it.

    A case a prediction set lacks is listed in ``missing`` (a model may have been run on
    another test subset); a case that cannot be read or does not line up is listed in
    ``failures`` and the evaluation goes on.
    """
    names = [p.name for p in predictions]
    if len(set(names)) != len(names):
        raise DataContractError(f"expected distinct model names, got {names}; name each --pred")
    pred_cases = {p.name: discover_cases(p.url, p.labelling) for p in predictions}
    if len(ref_cases) == 1:  # one reference case: a single-case prediction is its
        (ref_id,) = ref_cases
        for name, found in pred_cases.items():
            if len(found) == 1:
                pred_cases[name] = {ref_id: next(iter(found.values()))}
    scores = Scores(missing={p.name: [] for p in predictions})
    for i, (case, ref_url) in enumerate(sorted(ref_cases.items()), start=1):
        try:
            ref = read_case_labels(ref_url, reference.labelling, organs)
        except OrgsegError as exc:
            scores.failures.append(f"{case} reference: {exc}")
            log.warning("evaluate %s: reference unreadable: %s", case, exc)
            continue
        for pred_set in predictions:
            url = pred_cases[pred_set.name].get(case)
            if url is None:
                scores.missing[pred_set.name].append(case)
                continue
            try:
                pred = read_case_labels(url, pred_set.labelling, tuple(ref.masks))
                scores.rows += score_case(
                    pred_set.name, case, info.get(case, CaseInfo()), pred, ref
                )
            except OrgsegError as exc:
                scores.failures.append(f"{case} {pred_set.name}: {exc}")
                log.warning("evaluate %s (%s): %s", case, pred_set.name, exc)
        log.info("evaluate: %d/%d cases scored", i, len(ref_cases))
    for name, cases in scores.missing.items():
        if cases:
            log.warning("evaluate: %s has no prediction for %d reference case(s)", name, len(cases))
    return scores
