"""Job ``pseudo-qc``: every pseudo-label judged against the others, before fusion.

Each pseudo-label's record already holds the figures that need only the mask itself
(the folds' agreement, fragmentation, share outside the body: :mod:`orgseg.core.qc`).
This job adds the ones that compare cases: the mask's volume against the organ's manual
masks in the same size group (a robust z-score), and whether an organ the scan should
hold (its neighbours above and below were found: :func:`orgseg.core.qc.in_field_of_view`)
came out empty. A mask past any threshold (``pseudo_labels.qc``) is flagged with its
reasons; a person's review file (``pseudo_labels.review``) overrules the flags.

Written under ``<run_root>/qc/``: ``qc.csv`` (one row per mask: every figure, flagged,
why, the review), ``summary.csv`` (per organ x source), ``sheets/<organ>.png`` (the
worst-scoring masks of each organ, three orthogonal views each, for a person to look
at) and ``flags.json`` (case -> organ -> reasons), which fusion reads (committed last).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from orgseg.catalog import ORGANS
from orgseg.config import RunConfig
from orgseg.core.qc import (
    MaskFigures,
    agreement_without,
    collapse_note,
    collapsed_folds,
    flags,
    in_field_of_view,
    robust_z,
    severity,
)
from orgseg.errors import JobError
from orgseg.evaluation.tables import to_csv
from orgseg.io import exists, read_bytes, read_volume, write_bytes
from orgseg.io.storage import read_many
from orgseg.pipeline.cases import Manifest, load_manifest, load_manual_masks
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.review import load_review

if TYPE_CHECKING:
    from orgseg.evaluation.tables import Table

log = logging.getLogger(__name__)

#: the file fusion reads (committed last)
FLAGS_FILE = "flags.json"
QC_COLUMNS = (
    "case_id",
    "organ",
    "source",
    "size_group",
    "volume_ml",
    "volume_z",
    "fold_agreement",
    "fragmented_share",
    "outside_body_share",
    "expected_in_view",
    "severity",
    "flagged",
    "reasons",
    "review",
    "trusted",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskQC:
    """One pseudo-label's figures, what QC made of them, and a person's decision."""

    case_id: str
    organ: str
    source: str
    size_group: str
    figures: MaskFigures
    expected: bool
    severity: float
    reasons: tuple[str, ...]
    review: str | None = None
    #: the organ's ensemble folds that predict nothing where the others find it ("": none)
    collapsed_folds: str = ""

    @property
    def trusted(self) -> bool:
        if self.review is not None:
            return self.review == "accept"
        return not self.reasons

    def row(self) -> dict[str, object]:
        f = self.figures.as_dict()
        return {
            "case_id": self.case_id,
            "organ": self.organ,
            "source": self.source,
            "size_group": self.size_group,
            **{k: f[k] for k in QC_COLUMNS if k in f},  # None: an empty cell (to_csv)
            "expected_in_view": int(self.expected),
            "severity": round(self.severity, 3),
            "flagged": int(bool(self.reasons)),
            "reasons": "; ".join(self.reasons),
            "review": self.review or "",
            "trusted": int(self.trusted),
        }


# --- judging every pseudo-label ------------------------------------------------------------


def reference_volumes(config: RunConfig, manifest: Manifest) -> dict[tuple[str, str], list[float]]:
    """(organ, size group) -> volumes (ml) of the training cases' manual masks."""
    layout = RunLayout.of(config)
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for case_id in manifest.train:
        case = manifest.case(case_id)
        volumes = dict(case.manual_volumes_ml)
        if case.manual_organs and not volumes:  # a record from before volumes were kept
            voxel_ml = float(np.prod(case.spacing_mm)) / 1000.0
            masks = load_manual_masks(layout, case_id)
            volumes = {o: float(np.count_nonzero(m)) * voxel_ml for o, m in masks.items()}
        for organ, ml in volumes.items():
            out[(organ, case.size_group)].append(float(ml))
    return out


def _figures(record: Mapping[str, object], voxel_ml: float) -> MaskFigures:
    qc = dict(record.get("qc") or {})  # type: ignore[call-overload]
    volume = qc.get("volume_ml")
    return MaskFigures(
        volume_ml=float(volume if volume is not None else int(record["voxels"]) * voxel_ml),  # type: ignore[call-overload]
        fold_agreement=qc.get("fold_agreement"),
        volume_z=None,
        fragmented_share=float(qc.get("fragmented_share") or 0.0),
        outside_body_share=qc.get("outside_body_share"),
    )


def assess(config: RunConfig, manifest: Manifest | None = None) -> list[MaskQC]:
    """Every committed pseudo-label of the training cases, judged (records read
    concurrently; a missing one is an error: run job pseudo-labels first)."""
    layout = RunLayout.of(config)
    manifest = manifest or load_manifest(config)
    thresholds = config.pseudo_labels.qc
    review = load_review(config)
    wanted = [
        (c, o)
        for c in manifest.train
        for o in config.strategy1_organs
        if o not in manifest.case(c).manual_organs
    ]
    blobs = read_many([layout.pseudo_record(c, o) for c, o in wanted])
    missing = [f"{c}/{o}" for c, o in wanted if layout.pseudo_record(c, o) not in blobs]
    if missing:
        raise JobError(
            f"pseudo-qc: {len(missing)} pseudo-labels not committed (e.g. {missing[:3]}); "
            "run job pseudo-labels first"
        )
    references = reference_volumes(config, manifest)
    by_case: dict[str, dict[str, MaskFigures]] = defaultdict(dict)
    counts: dict[tuple[str, str], tuple[list[int], list[int] | None]] = {}  # per-fold counts
    for c, o in wanted:
        voxel_ml = float(np.prod(manifest.case(c).spacing_mm)) / 1000.0
        record = json.loads(blobs[layout.pseudo_record(c, o)])
        qc = record.get("qc") or {}
        counts[(c, o)] = (list(qc.get("fold_voxels") or ()), qc.get("fold_overlaps"))
        figures = _figures(record, voxel_ml)
        group = manifest.case(c).size_group
        # an empty mask has no volume to judge: whether the organ should be there is
        # the field-of-view check's question (a chest scan's empty bladder is right)
        z = (
            robust_z(figures.volume_ml, references.get((o, group), ()))
            if figures.volume_ml >= thresholds.min_volume_ml
            else None
        )
        by_case[c][o] = MaskFigures(**{**figures.as_dict(), "volume_z": z})  # type: ignore[arg-type]
    t = thresholds
    # a collapse is judged only where the ensemble found the organ: folds that all but
    # miss it there are the disagreement to flag, not a collapse to forgive
    found: dict[str, list[list[int]]] = {o: [] for _, o in wanted}  # one pass, per organ
    for (c, o), (voxels, _) in counts.items():
        if by_case[c][o].volume_ml >= t.min_volume_ml:
            found[o].append(voxels)
    collapsed = {o: collapsed_folds(v) for o, v in found.items()}
    notes = {o: collapse_note(folds) for o, folds in collapsed.items()}
    for o, folds in collapsed.items():
        for f, (k, n) in folds.items():
            log.warning(
                "pseudo-qc: %s's ensemble fold %d predicts (nearly) nothing in %d of %d cases "
                "whose mask holds the organ: that fold did not learn; retrain it", o, f, k, n,
            )  # fmt: skip
        if not (folds and t.exclude_collapsed_folds):
            continue
        for c in (c for c in by_case if o in by_case[c]):
            f0 = by_case[c][o]
            agreement = agreement_without(f0.fold_agreement, *counts[(c, o)], folds)
            by_case[c][o] = dataclasses.replace(f0, fold_agreement=agreement)
    out = []
    for c, masks in by_case.items():
        case = manifest.case(c)
        # the organs this scan holds: its manual masks, and the pseudo-labels that are
        # non-empty and pass their own figures
        found = set(case.manual_organs) | {
            o
            for o, f in masks.items()
            if f.volume_ml >= thresholds.min_volume_ml and not flags(f, thresholds, expected=False)
        }
        for o, f in masks.items():
            expected = in_field_of_view(ORGANS[o].levels, [ORGANS[x].levels for x in found - {o}])
            out.append(
                MaskQC(
                    case_id=c,
                    organ=o,
                    source=case.source,
                    size_group=case.size_group,
                    figures=f,
                    expected=expected,
                    severity=severity(f, thresholds, expected=expected),
                    reasons=tuple(flags(f, thresholds, expected=expected, collapse_note=notes[o])),
                    collapsed_folds=notes[o],
                    review=review.get((c, o)),
                )
            )
    return out


def summary_rows(results: Sequence[MaskQC]) -> list[dict[str, object]]:
    """Per organ x source: masks, flagged, trusted, and the figures' medians."""
    groups: dict[tuple[str, str], list[MaskQC]] = defaultdict(list)
    for r in results:
        groups[(r.organ, r.source)].append(r)
    rows = []
    for (organ, source), rs in sorted(groups.items()):
        agreement = [r.figures.fold_agreement for r in rs if r.figures.fold_agreement is not None]
        rows.append(
            {
                "organ": organ,
                "source": source,
                "masks": len(rs),
                "flagged": sum(bool(r.reasons) for r in rs),
                "untrusted": sum(not r.trusted for r in rs),
                "median_volume_ml": round(float(np.median([r.figures.volume_ml for r in rs])), 1),
                "median_fold_agreement": round(float(np.median(agreement)), 4) if agreement else "",
                "collapsed_folds": rs[0].collapsed_folds,
            }
        )
    return rows


SUMMARY_COLUMNS = (
    "organ",
    "source",
    "masks",
    "flagged",
    "untrusted",
    "median_volume_ml",
    "median_fold_agreement",
    "collapsed_folds",
)


def summary_lines(results: Sequence[MaskQC]) -> list[str]:
    """A few lines for a terminal: flagged masks per organ, and the commonest reasons."""
    by_organ: dict[str, list[MaskQC]] = defaultdict(list)
    for r in results:
        by_organ[r.organ].append(r)
    lines = [f"pseudo-label QC: {sum(not r.trusted for r in results)} of {len(results)} "
             "masks not trusted"]  # fmt: skip
    for organ, rs in sorted(by_organ.items()):
        bad = [r for r in rs if not r.trusted]
        kinds = sorted({reason.split(" (")[0] for r in bad for reason in r.reasons})
        why = f" ({', '.join(kinds)})" if kinds else ""
        model = f"; ensemble {rs[0].collapsed_folds}: retrain it" if rs[0].collapsed_folds else ""
        lines.append(f"  {organ}: {len(bad)}/{len(rs)} untrusted{why}{model}")
    return lines


def _sheet(config: RunConfig, organ: str, worst: Sequence[MaskQC]) -> bytes:
    from orgseg.render import SheetRow, contact_sheet

    layout = RunLayout.of(config)
    rows = []
    for r in worst:
        ct = read_volume(layout.cropped_ct(r.case_id))
        mask = np.asarray(read_volume(layout.pseudo_mask(r.case_id, organ)).array) > 0
        why = "; ".join(r.reasons) or "not flagged"
        rows.append(
            SheetRow(
                np.asarray(ct.array),
                mask,
                ct.spacing_mm,
                f"{r.case_id}\nseverity {r.severity:.2f}\n{why}",
            )  # fmt: skip
        )
    return contact_sheet(rows, title=f"{organ}: the {len(rows)} worst-scoring pseudo-labels")


def run_qc(config: RunConfig) -> list[MaskQC]:
    """Job ``pseudo-qc``: judge every pseudo-label and write the QC folder (``flags.json``
    last: its existence is the commit fusion waits for)."""
    layout = RunLayout.of(config)
    results = assess(config)
    rows = [r.row() for r in sorted(results, key=lambda r: (r.organ, -r.severity, r.case_id))]
    write_bytes(layout.qc_file("qc.csv"), to_csv(rows, QC_COLUMNS).encode())
    write_bytes(
        layout.qc_file("summary.csv"), to_csv(summary_rows(results), SUMMARY_COLUMNS).encode()
    )
    n = config.pseudo_labels.sheet_masks
    if n:
        by_organ: dict[str, list[MaskQC]] = defaultdict(list)
        for r in results:
            by_organ[r.organ].append(r)
        for organ, rs in sorted(by_organ.items()):
            worst = sorted(rs, key=lambda r: (-r.severity, r.case_id))[:n]
            write_bytes(layout.qc_file(f"sheets/{organ}.png"), _sheet(config, organ, worst))
    flagged: dict[str, dict[str, list[str]]] = {r.case_id: {} for r in results}
    for r in results:
        if r.reasons:
            flagged[r.case_id][r.organ] = list(r.reasons)
    write_bytes(layout.qc_file(FLAGS_FILE), json.dumps(flagged, indent=1).encode())
    for line in summary_lines(results):
        log.info("%s", line)
    return results


def load_flags(config: RunConfig) -> dict[str, dict[str, list[str]]]:
    """case -> organ -> reasons of the committed QC flags."""
    url = RunLayout.of(config).qc_file(FLAGS_FILE)
    if not exists(url):
        raise JobError(f"no pseudo-label QC at {url}; run job pseudo-qc first")
    return json.loads(read_bytes(url))


def untrusted_masks(config: RunConfig) -> dict[str, dict[str, list[str]]]:
    """case -> organ -> reasons of the masks fusion must not trust: QC's flags, then the
    review file (``accept`` clears a flag, ``reject`` adds one), read now so that a
    rerun of fusion follows an edited review."""
    flagged = load_flags(config)
    out = {c: dict(organs) for c, organs in flagged.items() if organs}
    for (case_id, organ), decision in load_review(config).items():
        if decision == "accept":
            out.get(case_id, {}).pop(organ, None)
        else:
            out.setdefault(case_id, {})[organ] = ["rejected by review"]
    return {c: o for c, o in out.items() if o}


def read_summary(config: RunConfig) -> list[dict[str, str]]:
    """The committed per organ x source QC table (empty before job pseudo-qc)."""
    url = RunLayout.of(config).qc_file("summary.csv")
    if not exists(url):
        return []
    return list(csv.DictReader(io.StringIO(read_bytes(url).decode())))


def summary_text(config: RunConfig) -> list[str]:
    """Per organ: masks not trusted of those judged (from qc/summary.csv)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in read_summary(config):
        t = totals[r["organ"]]
        t[0] += int(r["masks"])
        t[1] += int(r["flagged"])
        t[2] += int(r["untrusted"])
    masks = sum(t[0] for t in totals.values())
    bad = sum(t[2] for t in totals.values())
    lines = [f"{bad} of {masks} pseudo-labels not trusted (flagged by QC, after the review)"]
    lines += [
        f"  {organ:<16} {t[2]:>4} / {t[0]:<4} untrusted ({t[1]} flagged)"
        for organ, t in sorted(totals.items())
    ]
    return lines


def qc_table(config: RunConfig) -> Table | None:
    """The report's QC section: per organ x source, and the contact sheets."""
    from orgseg.evaluation.tables import Table

    rows = read_summary(config)
    if not rows:
        return None
    organs = sorted({r["organ"] for r in rows})
    sheets = tuple(f"../qc/sheets/{o}.png" for o in organs if config.pseudo_labels.sheet_masks)
    return Table(
        title="Pseudo-label quality control",
        columns=SUMMARY_COLUMNS,
        rows=tuple(tuple(str(r[c]) for c in SUMMARY_COLUMNS) for r in rows),
        note=(
            f"Every pseudo-label judged without ground truth (qc/qc.csv); untrusted ones "
            f"handled by fusion.untrusted = {config.fusion.untrusted}. Contact sheets: the "
            f"worst-scoring {config.pseudo_labels.sheet_masks} masks of each organ."
        ),
        images=sheets,
    )
