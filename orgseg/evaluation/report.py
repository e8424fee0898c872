"""Writing an evaluation's files: CSV tables, Markdown and HTML reports, plots.

Files under ``out_url`` (any URL):

* ``per_case.csv``: one row per (model, case, organ);
* ``summary.csv``: the first model's mean +- sd per (group, organ), columns
  :data:`~orgseg.evaluation.tables.SUMMARY_COLUMNS`; ``summary_by_model.csv`` the same
  for every model with a leading ``model`` column; ``summary.md`` / ``summary.html``;
* ``normality.csv``: Kolmogorov-Smirnov per (model, group, organ, metric);
* ``comparisons.csv``: two-sided Wilcoxon tests per (model pair, group, organ, metric);
* ``dice_boxplot.png`` and ``dice_<a>_vs_<b>.png``;
* ``report.md`` / ``report.html``: all of it, the plots linked and shown;
* ``evaluation.json``: models, cases, what was missing or failed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from orgseg.evaluation import plots
from orgseg.evaluation.scoring import Scores
from orgseg.evaluation.tables import (
    SUMMARY_COLUMNS,
    Table,
    case_rows_csv,
    comparison_table,
    comparisons,
    html_page,
    markdown_page,
    models_of,
    normality,
    normality_table,
    summarize,
    summary_tables,
    to_csv,
)
from orgseg.io import join_url, write_bytes

log = logging.getLogger(__name__)

#: at most this many model pairs get a scatter plot
MAX_PAIR_PLOTS = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFiles:
    html: str
    markdown: str
    summary_csv: str
    summary: list[dict[str, object]]
    comparisons: list[dict[str, object]]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_report(
    out_url: str,
    scores: Scores,
    *,
    group_by: Sequence[str] = (),
    title: str = "orgseg evaluation",
    pairs: Sequence[tuple[str, str]] | None = None,
    extra_tables: Sequence[Table] = (),
) -> ReportFiles:
    """Write every table, plot and report of ``scores`` under ``out_url``."""
    rows = scores.rows
    models = models_of(rows)
    summary = summarize(rows, group_by)
    tests = normality(rows, group_by)
    pairs = list(pairs) if pairs is not None else list(combinations(models, 2))
    comps = comparisons(rows, group_by, pairs=pairs)

    def put(name: str, data: bytes | str) -> str:
        url = join_url(out_url, name)
        write_bytes(url, data.encode() if isinstance(data, str) else data)
        return url

    put("per_case.csv", case_rows_csv(rows))
    first = [s for s in summary if models and s["model"] == models[0]]
    summary_csv = put("summary.csv", to_csv(first, SUMMARY_COLUMNS))
    put("summary_by_model.csv", to_csv(summary, ("model",) + SUMMARY_COLUMNS))
    put(
        "normality.csv",
        to_csv(tests, ("model", "group", "organ", "metric", "n", "test", "statistic",
                       "p_value", "note")),
    )  # fmt: skip
    put(
        "comparisons.csv",
        to_csv(comps, ("group", "organ", "metric", "model_a", "model_b", "test", "n_a", "n_b",
                       "mean_a", "mean_b", "statistic", "p_value", "note")),
    )  # fmt: skip

    images: list[str] = []
    if rows:
        put("dice_boxplot.png", plots.dice_boxplot(rows))
        images.append("dice_boxplot.png")
    pair_images = []
    for a, b in pairs[:MAX_PAIR_PLOTS]:
        name = f"dice_{_slug(a)}_vs_{_slug(b)}.png"
        put(name, plots.paired_scatter(rows, a, b))
        pair_images.append(name)

    n_cases = len({r.case for r in rows})
    intro = (
        f"{n_cases} case(s), {len(models)} model(s): {', '.join(models) or 'none'}. "
        "Mean ± sd over cases (sd with n-1); distances in mm, VD = predicted - reference "
        "volume in ml; an organ is scored where the reference has it."
    )
    summaries = summary_tables(summary)
    tables: list[Table] = [
        Table(title="Dice per organ", columns=(), rows=(), images=tuple(images)),
        *summaries,
    ]
    if comps:
        comp = comparison_table(comps)
        tables.append(
            Table(
                title=comp.title,
                columns=comp.columns,
                rows=comp.rows,
                note=comp.note,
                images=tuple(pair_images),
            )
        )
    tables.append(normality_table(tests))
    tables += list(extra_tables)
    problems = [
        (model, f"no prediction for {len(cases)} case(s): {', '.join(cases[:10])}"
         + (" ..." if len(cases) > 10 else ""))
        for model, cases in scores.missing.items()
        if cases
    ] + [("-", line) for line in scores.failures]  # fmt: skip
    if problems:
        tables.append(
            Table(title="Cases not scored", columns=("model", "what"), rows=tuple(problems))
        )
    put("summary.md", markdown_page(f"{title}: summary", intro, summaries))
    put("summary.html", html_page(f"{title}: summary", intro, summaries))
    md = put("report.md", markdown_page(title, intro, tables))
    page = put("report.html", html_page(title, intro, tables))
    put(
        "evaluation.json",
        json.dumps(
            {
                "models": models,
                "cases": sorted({r.case for r in rows}),
                "group_by": list(group_by),
                "missing": scores.missing,
                "failures": scores.failures,
            },
            indent=2,
        ),
    )
    log.info("evaluation report written to %s", page)
    return ReportFiles(
        html=page, markdown=md, summary_csv=summary_csv, summary=summary, comparisons=comps
    )
