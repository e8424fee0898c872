"""The report's figures as PNG bytes: per-organ Dice box plots (all models side by side,
like the paper's Fig. 4) and a paired per-case Dice scatter of two models."""

from __future__ import annotations

import io
from collections.abc import Sequence

from orgseg.evaluation.tables import CaseMetrics, models_of, organ_order


def _pyplot():  # matplotlib only when a figure is drawn
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def dice_axis(values: Sequence[float]) -> tuple[float, float]:
    """The Dice axis of a box plot: from a little below the 5th percentile (in steps of
    0.05) to 1, so boxes of good models are not flattened at the top of a 0-1 axis by one
    failed case; values below are counted on the plot instead.

    >>> dice_axis([0.91, 0.93, 0.95, 0.97])
    (0.85, 1.01)
    >>> dice_axis([0.0] + [0.9] * 40)
    (0.85, 1.01)
    """
    import numpy as np

    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return (0.0, 1.01)
    low = float(np.percentile(v, 5))
    return (max(0.0, round(float(np.floor(low * 20)) / 20 - 0.05, 2)), 1.01)


FONT = {"ticks": 8, "labels": 9, "title": 10}


def dice_boxplot(rows: Sequence[CaseMetrics], *, title: str = "Dice per organ") -> bytes:
    """One box per (organ, model): organs along x, models side by side in colour, the
    legend beside the panel (never over the data), the Dice axis zoomed by
    :func:`dice_axis`."""
    plt = _pyplot()
    models = models_of(rows)
    organs = sorted({r.organ for r in rows}, key=organ_order)
    width = 0.8 / max(len(models), 1)
    panel_w = max(4.0, 0.35 * len(organs) * max(1, len(models)) + 1.0)
    fig, ax = plt.subplots(figsize=(panel_w + (1.6 if len(models) > 1 else 0.0), 3.6))
    colours = plt.get_cmap("tab10").colors
    lo, hi = dice_axis([r.dice for r in rows])
    for k, model in enumerate(models):
        data = [[r.dice for r in rows if r.model == model and r.organ == o] for o in organs]
        positions = [i + (k - (len(models) - 1) / 2) * width for i in range(len(organs))]
        kept = [(p, d) for p, d in zip(positions, data) if d]
        if not kept:
            continue
        box = ax.boxplot(
            [d for _, d in kept],
            positions=[p for p, _ in kept],
            widths=width * 0.9,
            patch_artist=True,
            showfliers=True,
            flierprops={"markersize": 3},
        )
        for patch in box["boxes"]:
            patch.set_facecolor(colours[k % len(colours)])
            patch.set_alpha(0.6)
        for p, d in kept:  # the cases below the axis, counted at its foot
            below = sum(1 for x in d if x < lo)
            if below:
                ax.annotate(f"{below}\u2193", (p, lo), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=FONT["ticks"] - 1)  # fmt: skip
        ax.plot([], [], "s", color=colours[k % len(colours)], label=model)
    ax.set_xticks(range(len(organs)))
    ax.set_xticklabels(
        [o.replace("_", " ") for o in organs], rotation=45, ha="right", fontsize=FONT["ticks"]
    )
    ax.tick_params(axis="y", labelsize=FONT["ticks"])
    ax.set_ylabel("Dice", fontsize=FONT["labels"])
    ax.set_ylim(lo, hi)
    ax.set_title(title if lo == 0 else f"{title} (axis from {lo:.2f})", fontsize=FONT["title"])
    ax.grid(axis="y", alpha=0.3)
    if len(models) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=FONT["labels"],
                  frameon=False)  # fmt: skip
    return _png(fig)


def paired_scatter(rows: Sequence[CaseMetrics], model_a: str, model_b: str) -> bytes:
    """Per-case Dice of ``model_a`` (x) against ``model_b`` (y) on the cases both have;
    points above the diagonal are cases where ``model_b`` did better."""
    plt = _pyplot()
    a = {(r.case, r.organ): r.dice for r in rows if r.model == model_a}
    b = {(r.case, r.organ): r.dice for r in rows if r.model == model_b}
    shared = sorted(set(a) & set(b))
    organs = sorted({o for _, o in shared}, key=organ_order)
    fig, ax = plt.subplots(figsize=(5, 5))
    colours = plt.get_cmap("tab20").colors
    for k, organ in enumerate(organs):
        keys = [s for s in shared if s[1] == organ]
        ax.scatter(
            [a[s] for s in keys],
            [b[s] for s in keys],
            s=14,
            color=colours[k % len(colours)],
            label=organ.replace("_", " "),
        )
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"Dice, {model_a}")
    ax.set_ylabel(f"Dice, {model_b}")
    ax.set_title(f"{model_a} vs {model_b} ({len(shared)} case-organ pairs)")
    if organs:
        ax.legend(fontsize="x-small", loc="lower right")
    return _png(fig)


def counts_heatmap(
    rows: Sequence[str], columns: Sequence[str], counts: Sequence[Sequence[int]], *, title: str
) -> bytes:
    """Case counts as a heatmap (sources down, organs across, each cell annotated), like
    the paper's Fig. 1."""
    import numpy as np

    plt = _pyplot()
    data = np.asarray(counts, float).reshape(len(rows), len(columns))
    fig, ax = plt.subplots(
        figsize=(max(5.0, 0.45 * len(columns) + 2.5), max(2.0, 0.4 * len(rows) + 1.5))
    )
    shown = np.where(data > 0, data, np.nan)
    image = ax.imshow(shown, cmap="viridis", aspect="auto")
    ax.set_xticks(
        range(len(columns)),
        labels=[c.replace("_", " ") for c in columns],
        rotation=60,
        ha="right",
        fontsize=8,
    )
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=8)
    top = np.nanmax(shown) if np.isfinite(shown).any() else 1.0
    for i in range(len(rows)):
        for j in range(len(columns)):
            if data[i, j] > 0:
                colour = "black" if data[i, j] > 0.6 * top else "white"
                ax.text(
                    j, i, f"{int(data[i, j])}", ha="center", va="center", fontsize=7, color=colour
                )
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="cases")
    return _png(fig)
