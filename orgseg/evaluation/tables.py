"""Per-case metric rows -> the paper's tables: mean +- sd per (group, organ), normality
and comparison tests, and their CSV/Markdown/HTML text. No files are touched here.

Groups: ``all`` (every case), ``source:<name>`` (a test subset) and ``size:<adult|
paediatric>``, as asked for with ``group_by``.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import combinations

from orgseg.catalog import ORGANS
from orgseg.core.metrics import OverlapMetrics
from orgseg.core.significance import compare, ks_normality, mean_sd
from orgseg.errors import ConfigError

#: the metrics of every (model, case, organ), in table order
METRICS: tuple[str, ...] = tuple(f.name for f in fields(OverlapMetrics))
METRIC_TITLES: Mapping[str, str] = {
    "dice": "Dice",
    "jaccard": "Jaccard",
    "msd_mm": "MSD (mm)",
    "hd_mm": "HD (mm)",
    "hd95_mm": "HD95 (mm)",
    "vd_ml": "VD (ml)",
}
_DECIMALS = {"dice": 3, "jaccard": 3, "msd_mm": 2, "hd_mm": 2, "hd95_mm": 2, "vd_ml": 1}
GROUP_BY = ("source", "size")

#: columns of summary.csv, in order
SUMMARY_COLUMNS: tuple[str, ...] = ("group", "organ", "n") + tuple(
    f"{m}_{s}" for m in METRICS for s in ("mean", "sd")
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseMetrics:
    """One row of per_case.csv: one model's result for one organ of one case.

    Distances are ``nan`` when exactly one of the two masks is empty.
    ``vd_ml`` = predicted - reference volume.
    """

    model: str
    case: str
    source: str
    size_group: str
    organ: str
    dice: float
    jaccard: float
    msd_mm: float
    hd_mm: float
    hd95_mm: float
    vd_ml: float
    ref_ml: float
    pred_ml: float


PER_CASE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CaseMetrics))


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    """A titled table of text cells, rendered as Markdown or HTML."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""
    images: tuple[str, ...] = field(default_factory=tuple)  # relative PNG paths shown below


def check_group_by(group_by: Sequence[str]) -> tuple[str, ...]:
    bad = [g for g in group_by if g not in GROUP_BY]
    if bad:
        raise ConfigError(f"unknown --group-by {bad}; choose from {list(GROUP_BY)}")
    return tuple(dict.fromkeys(group_by))


def groups_of(row: CaseMetrics, group_by: Sequence[str]) -> list[str]:
    """The groups a row counts in: always ``all``, plus one per ``group_by`` key."""
    out = ["all"]
    if "source" in group_by:
        out.append(f"source:{row.source}")
    if "size" in group_by:
        out.append(f"size:{row.size_group}")
    return out


def organ_order(organ: str) -> tuple[int, str]:
    names = list(ORGANS)
    return (names.index(organ) if organ in ORGANS else len(names), organ)


def _group_order(group: str) -> tuple[int, str]:
    return (0 if group == "all" else 1 if group.startswith("source:") else 2, group)


def _grouped(
    rows: Iterable[CaseMetrics], group_by: Sequence[str]
) -> dict[tuple[str, str, str], list[CaseMetrics]]:
    """(model, group, organ) -> rows, in model order of first appearance."""
    out: dict[tuple[str, str, str], list[CaseMetrics]] = {}
    for row in rows:
        for group in groups_of(row, group_by):
            out.setdefault((row.model, group, row.organ), []).append(row)
    return out


def _sorted_keys(keys: Iterable[tuple[str, str, str]], models: Sequence[str]):
    return sorted(keys, key=lambda k: (models.index(k[0]), _group_order(k[1]), organ_order(k[2])))


def models_of(rows: Sequence[CaseMetrics]) -> list[str]:
    return list(dict.fromkeys(r.model for r in rows))


def summarize(rows: Sequence[CaseMetrics], group_by: Sequence[str] = ()) -> list[dict[str, object]]:
    """One dict per (model, group, organ): ``model`` + :data:`SUMMARY_COLUMNS`.

    ``n`` is the number of cases; each mean/sd is over the cases where the metric is
    defined (distances are undefined when one mask is empty), sd with ``ddof=1``.
    """
    grouped = _grouped(rows, group_by)
    out = []
    for key in _sorted_keys(grouped, models_of(rows)):
        model, group, organ = key
        cases = grouped[key]
        entry: dict[str, object] = {"model": model, "group": group, "organ": organ, "n": len(cases)}
        for metric in METRICS:
            mean, sd = mean_sd([getattr(r, metric) for r in cases])
            entry[f"{metric}_mean"] = mean
            entry[f"{metric}_sd"] = sd
        out.append(entry)
    return out


def normality(rows: Sequence[CaseMetrics], group_by: Sequence[str] = ()) -> list[dict[str, object]]:
    """Kolmogorov-Smirnov normality test per (model, group, organ, metric)."""
    grouped = _grouped(rows, group_by)
    out = []
    for key in _sorted_keys(grouped, models_of(rows)):
        model, group, organ = key
        for metric in METRICS:
            res = ks_normality([getattr(r, metric) for r in grouped[key]])
            out.append(
                {
                    "model": model,
                    "group": group,
                    "organ": organ,
                    "metric": metric,
                    "n": res.n_a,
                    "test": res.test,
                    "statistic": res.statistic,
                    "p_value": res.p_value,
                    "note": res.note,
                }
            )
    return out


def comparisons(
    rows: Sequence[CaseMetrics],
    group_by: Sequence[str] = (),
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[dict[str, object]]:
    """A two-sided test per (model pair, group, organ, metric).

    Paired Wilcoxon signed-rank over the cases both models have; Wilcoxon rank-sum when
    their cases are disjoint (:func:`orgseg.core.significance.compare`). Every pair of
    models is compared unless ``pairs`` says which.
    """
    models = models_of(rows)
    pairs = list(pairs) if pairs is not None else list(combinations(models, 2))
    unknown = sorted({m for p in pairs for m in p} - set(models))
    if unknown:
        raise ConfigError(f"comparison names unknown model(s) {unknown}; models are {models}")
    grouped = _grouped(rows, group_by)
    out = []
    keys = sorted(
        {(g, o) for (_, g, o) in grouped}, key=lambda k: (_group_order(k[0]), organ_order(k[1]))
    )
    for a, b in pairs:
        for group, organ in keys:
            ra, rb = grouped.get((a, group, organ)), grouped.get((b, group, organ))
            if not ra or not rb:
                continue
            for metric in METRICS:
                va = {r.case: getattr(r, metric) for r in ra}
                vb = {r.case: getattr(r, metric) for r in rb}
                res = compare(va, vb)
                out.append(
                    {
                        "group": group,
                        "organ": organ,
                        "metric": metric,
                        "model_a": a,
                        "model_b": b,
                        "test": res.test,
                        "n_a": res.n_a,
                        "n_b": res.n_b,
                        "mean_a": mean_sd(list(va.values()))[0],
                        "mean_b": mean_sd(list(vb.values()))[0],
                        "statistic": res.statistic,
                        "p_value": res.p_value,
                        "note": res.note,
                    }
                )
    return out


# ---------------------------------------------------------------- text renderings


def fmt_number(value: object, decimals: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{decimals}f}"
    return str(value)


def fmt_p(p: float) -> str:
    """p-values as papers print them: 3 decimals, ``<0.001`` below."""
    if math.isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def mean_sd_text(mean: float, sd: float, decimals: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{decimals}f}" if math.isnan(sd) else f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def to_csv(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """CSV text; ``nan`` and None are empty cells, floats at full precision."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for col in columns:
            v = row.get(col)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("")
            else:
                cells.append(repr(v) if isinstance(v, float) else str(v))
        writer.writerow(cells)
    return buf.getvalue()


def case_rows_csv(rows: Sequence[CaseMetrics]) -> str:
    return to_csv([asdict(r) for r in rows], PER_CASE_COLUMNS)


def summary_tables(summary: Sequence[Mapping[str, object]]) -> list[Table]:
    """One table per (model, group): organ | n | each metric as mean ± sd."""
    blocks: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for s in summary:
        cells = [str(s["organ"]), str(s["n"])]
        for m in METRICS:
            cells.append(mean_sd_text(s[f"{m}_mean"], s[f"{m}_sd"], _DECIMALS[m]))  # type: ignore[arg-type]
        blocks.setdefault((str(s["model"]), str(s["group"])), []).append(tuple(cells))
    columns = ("organ", "n") + tuple(METRIC_TITLES[m] for m in METRICS)
    return [
        Table(title=f"{model} — {group}", columns=columns, rows=tuple(body))
        for (model, group), body in blocks.items()
    ]


def comparison_table(comps: Sequence[Mapping[str, object]], metric: str = "dice") -> Table:
    """The chosen metric's comparisons: group | organ | A | B | test | p."""
    body = []
    for c in comps:
        if c["metric"] != metric:
            continue
        body.append(
            (
                str(c["group"]),
                str(c["organ"]),
                f"{c['model_a']} {fmt_number(c['mean_a'], _DECIMALS[metric])} (n={c['n_a']})",
                f"{c['model_b']} {fmt_number(c['mean_b'], _DECIMALS[metric])} (n={c['n_b']})",
                str(c["test"]),
                fmt_p(float(c["p_value"])),  # type: ignore[arg-type]
            )
        )
    return Table(
        title=f"Comparisons of {METRIC_TITLES[metric]} (two-sided)",
        columns=("group", "organ", "model A mean", "model B mean", "test", "p"),
        rows=tuple(body),
        note="Paired signed-rank over the cases both models have; rank-sum when their "
        "cases are disjoint. Every metric is in comparisons.csv.",
    )


def normality_table(tests: Sequence[Mapping[str, object]], metric: str = "dice") -> Table:
    body = [
        (
            str(t["model"]),
            str(t["group"]),
            str(t["organ"]),
            str(t["n"]),
            fmt_number(t["statistic"], 3),
            fmt_p(float(t["p_value"])),  # type: ignore[arg-type]
        )
        for t in tests
        if t["metric"] == metric
    ]
    return Table(
        title=f"Normality of {METRIC_TITLES[metric]} per organ",
        columns=("model", "group", "organ", "n", "KS D", "p"),
        rows=tuple(body),
        note=f"Test: {tests[0]['test'] if tests else 'Kolmogorov-Smirnov'}; p < 0.05: not "
        "normal, prefer the rank tests. Every metric is in normality.csv.",
    )


def markdown(table: Table) -> str:
    lines = [f"## {table.title}", ""]
    if table.columns:
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        lines += ["| " + " | ".join(r) + " |" for r in table.rows]
    if table.note:
        lines += ["", table.note]
    lines += [f"\n![{p}]({p})" for p in table.images]
    return "\n".join(lines) + "\n"


def html_table(table: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    parts = [f"<h2>{esc(table.title)}</h2>"]
    if table.rows:
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if table.note:
        parts.append(f"<p class='note'>{esc(table.note)}</p>")
    parts += [
        f"<p><a href='{esc(p)}'><img src='{esc(p)}' alt='{esc(p)}'></a></p>" for p in table.images
    ]
    return "\n".join(parts)


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
    "margin-bottom:1em}td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}.note{color:#555}"
)


def html_page(title: str, intro: str, tables: Sequence[Table]) -> str:
    esc = html.escape
    body = "\n".join(html_table(t) for t in tables)
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{esc(title)}"
        f"</title><style>{_STYLE}</style></head><body>\n<h1>{esc(title)}</h1>\n"
        f"<p>{esc(intro)}</p>\n{body}\n</body></html>\n"
    )


def markdown_page(title: str, intro: str, tables: Sequence[Table]) -> str:
    return f"# {title}\n\n{intro}\n\n" + "\n".join(markdown(t) for t in tables)
