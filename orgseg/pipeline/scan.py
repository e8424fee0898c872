"""``orgseg sources scan``: an audit of what a run config points at, before heavy work.

Every case found per source, with its files, the organs it labels, its size on disk and
any problem; per source x organ case counts (a table and a heatmap like the paper's
Fig. 1); label values found against the registry's mapping. Headers only by default
(one listing per source plus each file's first block: fast on object stores); ``full``
reads every volume through the same reader and checks as the ``cases`` stage.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from orgseg.catalog import ORGANS
from orgseg.config import RunConfig
from orgseg.errors import DataContractError, StorageError
from orgseg.io import join_url, load_ct, write_bytes
from orgseg.io.headers import read_header
from orgseg.pipeline.cases import discover_cases, label_files, resolve_registry
from orgseg.pipeline.discovery import CaseFiles
from orgseg.pipeline.exclusions import load_exclusions, triage
from orgseg.pipeline.manual import PAIRING_TOL_MM, read_manual_labels
from orgseg.sources.registry import Source, SourceRegistry

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

#: the scan's files, in one place (the CLI and the docs name them from here)
SCAN_FILES = {
    "cases": "cases.csv",
    "counts": "counts.csv",
    "counts_md": "counts.md",
    "heatmap": "counts.png",
    "label_values": "label_values.csv",
    "problems": "problems.csv",
    "summary": "scan.json",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanRow:
    source: str
    case_id: str
    image_url: str
    label_urls: tuple[str, ...]
    organs: tuple[str, ...]
    size_bytes: int
    #: ok, excluded or unlabelled
    status: str
    problem: str = ""
    warnings: tuple[str, ...] = ()
    #: label values (or ROI names) found, only with ``full``
    values_found: tuple[object, ...] = ()
    unmapped: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanResult:
    rows: tuple[ScanRow, ...]
    full: bool
    folders: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, Counter]:
        """source -> organ -> usable cases labelling it (non-empty masks with ``full``)."""
        out: dict[str, Counter] = {s: Counter() for s in self.folders}
        for r in self.rows:
            if r.status == "ok":
                out.setdefault(r.source, Counter()).update(r.organs)
        return out


def _row(source: Source, case: CaseFiles, *, status: str, **fields: object) -> ScanRow:
    """The scan row of a case: its files from discovery, the verdict from ``fields``."""
    values: dict[str, object] = {
        "organs": case.organs,
        "problem": "",
        "warnings": case.warnings,
        **fields,
    }
    return ScanRow(
        source=case.source,
        case_id=case.case_id,
        image_url=case.image_url,
        label_urls=tuple(label_files(source, case)),
        size_bytes=case.image_bytes + case.label_bytes,
        status=status,
        **values,  # type: ignore[arg-type]
    )


def _check_headers(source: Source, case: CaseFiles) -> str:
    """The first problem the headers show ("" when none): claimed sizes, label grids."""
    if source.layout.kind == "dicom":
        return ""  # paired by SeriesInstanceUID; grids are checked with --full
    try:
        image = read_header(case.image_url)
        for url in tuple(label_files(source, case)):
            diffs = image.grid.differences(read_header(url).grid, tol_mm=PAIRING_TOL_MM)
            if diffs:
                return (
                    f"{url}: the label is not on its image's grid ({'; '.join(diffs)}, image "
                    "vs label)"
                )
    except (DataContractError, StorageError) as exc:
        return str(exc)
    return ""


def _read_full(source: Source, case: CaseFiles) -> ScanRow:
    try:
        _, reorientation = load_ct(case.image_url, series_uid=case.series_uid)
        labels = read_manual_labels(source, case, reorientation, source.organs)
    except (DataContractError, StorageError) as exc:
        return _row(source, case, status="excluded", problem=str(exc))
    nonempty = tuple(o for o, m in labels.masks.items() if m.any())
    return _row(
        source,
        case,
        status="ok",
        organs=nonempty,
        values_found=labels.values_found,
        unmapped=labels.unmapped,
    )


def scan_sources(
    config: RunConfig, *, full: bool = False, progress: Progress | None = None, threads: int = 8
) -> ScanResult:
    """Audit every source the config names (see the module docstring)."""
    registry = resolve_registry(config)
    folders, found = discover_cases(config, registry)
    usable, excluded, _ = triage(found, load_exclusions(config))
    excluded_reason = {(e.source, e.case_id, e.image_url): e.reason for e in excluded}
    rows: list[ScanRow] = []
    for case in found:
        source = registry[case.source]
        key = (case.source, case.case_id, case.image_url)
        if case.unlabelled:
            rows.append(_row(source, case, status="unlabelled", problem=case.problem))
        elif key in excluded_reason:
            rows.append(_row(source, case, status="excluded", problem=excluded_reason[key]))
    done = 0

    def one(case: CaseFiles) -> ScanRow:
        source = registry[case.source]
        if full:
            return _read_full(source, case)
        problem = _check_headers(source, case)
        return _row(source, case, status="excluded" if problem else "ok", problem=problem)

    # headers are small requests: many in flight; full reads hold volumes: two at a time
    with ThreadPoolExecutor(max_workers=threads if not full else 2) as pool:
        for row in pool.map(one, usable):
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done, len(usable), row.case_id)
    order = {name: i for i, name in enumerate(folders)}
    rows.sort(key=lambda r: (order.get(r.source, 99), r.case_id, r.image_url))
    return ScanResult(rows=tuple(rows), full=full, folders=folders)


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def label_value_rows(result: ScanResult, registry: SourceRegistry) -> list[list[object]]:
    """(source, value, organ or 'unused' or 'UNMAPPED', cases it was found in)."""
    rows: list[list[object]] = []
    for name in result.folders:
        source = registry[name]
        found = Counter(v for r in result.rows if r.source == name for v in r.values_found)
        mapped: dict[object, list[str]] = {}
        for organ, values in source.mapping.items():
            for v in values:
                mapped.setdefault(v, []).append(organ)
        for v in source.unused_labels:
            mapped.setdefault(v, []).append("unused")
        for v in sorted(set(mapped) | set(found), key=lambda x: (str(type(x)), x)):
            organ = "+".join(mapped.get(v, ["UNMAPPED"]))
            rows.append([name, v, organ, found.get(v, 0) if result.full else ""])
    return rows


def write_scan(result: ScanResult, out_dir: str, registry: SourceRegistry) -> dict[str, str]:
    """Write the audit files (:data:`SCAN_FILES`) under ``out_dir``; return their URLs."""
    from orgseg.evaluation.plots import counts_heatmap

    urls = {k: join_url(out_dir, v) for k, v in SCAN_FILES.items()}
    write_bytes(
        urls["cases"],
        _csv(
            [
                "source",
                "case_id",
                "image_url",
                "label_urls",
                "organs",
                "size_bytes",
                "status",
                "problem",
                "warnings",
            ],
            [
                [
                    r.source,
                    r.case_id,
                    r.image_url,
                    ";".join(r.label_urls),
                    ";".join(r.organs),
                    r.size_bytes,
                    r.status,
                    r.problem,
                    "; ".join(r.warnings),
                ]
                for r in result.rows
            ],
        ),
    )
    counts = result.counts()
    organs = [o for o in ORGANS if any(c[o] for c in counts.values())]
    sources = list(counts)
    write_bytes(
        urls["counts"],
        _csv(
            ["source", *organs, "cases"],
            [
                [
                    s,
                    *(counts[s][o] for o in organs),
                    sum(1 for r in result.rows if r.source == s and r.status == "ok"),
                ]
                for s in sources
            ],
        ),
    )
    md = ["| source | " + " | ".join(organs) + " |", "|---" * (len(organs) + 1) + "|"]
    md += [f"| {s} | " + " | ".join(str(counts[s][o]) for o in organs) + " |" for s in sources]
    what = "non-empty manual masks" if result.full else "cases with the organ's labels"
    write_bytes(
        urls["counts_md"],
        (f"Cases per source and organ ({what}).\n\n" + "\n".join(md) + "\n").encode(),
    )
    write_bytes(
        urls["heatmap"],
        counts_heatmap(
            sources,
            organs,
            [[counts[s][o] for o in organs] for s in sources],
            title=f"Manually labelled cases per source and organ ({what})",
        ),
    )
    write_bytes(
        urls["label_values"],
        _csv(["source", "value", "organ", "cases_found"], label_value_rows(result, registry)),
    )
    problems = [
        [r.source, r.case_id, r.image_url, r.status, r.problem or "; ".join(r.warnings)]
        for r in result.rows
        if r.status != "ok" or r.warnings
    ]
    write_bytes(
        urls["problems"], _csv(["source", "case_id", "image_url", "status", "problem"], problems)
    )
    summary = {
        "mode": "full" if result.full else "headers",
        "sources": {
            s: {
                "folder": result.folders[s],
                **Counter(r.status for r in result.rows if r.source == s),
                "bytes": sum(r.size_bytes for r in result.rows if r.source == s),
            }
            for s in sources
        },
        "problems": [
            dict(zip(("source", "case_id", "image_url", "status", "problem"), p)) for p in problems
        ],
    }
    write_bytes(urls["summary"], json.dumps(summary, indent=2).encode())
    return urls


def summary_text(result: ScanResult) -> str:
    """One line per source (cases found, usable, excluded, unlabelled, GB) and the problems."""
    lines = [f"{'source':<22} {'found':>6} {'ok':>6} {'excluded':>9} {'unlabelled':>11} {'GB':>8}"]
    for s in result.folders:
        st = Counter(r.status for r in result.rows if r.source == s)
        gb = sum(r.size_bytes for r in result.rows if r.source == s) / 1e9
        lines.append(
            f"{s:<22} {sum(st.values()):>6} {st['ok']:>6} {st['excluded']:>9} "
            f"{st['unlabelled']:>11} {gb:>8.2f}"
        )
    for r in result.rows:
        if r.status == "excluded":
            lines.append(f"EXCLUDED {r.source}/{r.case_id}: {r.problem}")
    return "\n".join(lines)
