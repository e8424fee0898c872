"""One renderer for CT overlays: ``orgseg segment --preview`` and the pseudo-label QC
contact sheets draw their views here (the views themselves: :mod:`orgseg.core.views`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from orgseg.core.views import orthogonal_views, view_centre

#: the CT window of every overlay (HU)
WINDOW_HU = (-400.0, 600.0)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(n_colors: int) -> list[tuple[float, ...]]:
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors
    return [(0, 0, 0, 0)] + [(*palette[(i - 1) % len(palette)], 0.45) for i in range(1, n_colors)]


def draw_views(
    axes: Sequence,
    ct: np.ndarray,
    labels: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    n_colors: int,
    titles: bool = True,
) -> None:
    """The axial, coronal and sagittal views through ``labels``' organs on three axes."""
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(_colours(n_colors))
    centre = view_centre(labels > 0)
    views = zip(
        orthogonal_views(ct, centre, spacing_mm),
        orthogonal_views(labels, centre, spacing_mm),
        strict=True,
    )
    for ax, (img, lab) in zip(axes, views, strict=True):
        ax.imshow(img.image, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], aspect=img.aspect)
        ax.imshow(
            lab.image, cmap=cmap, vmin=0, vmax=n_colors - 1, aspect=img.aspect,
            interpolation="nearest",
        )  # fmt: skip
        if titles:
            ax.set_title(img.name, fontsize=10)
        ax.axis("off")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def preview_png(
    labels: np.ndarray,
    ct: np.ndarray,
    spacing_mm: Sequence[float],
    label_ids: Mapping[str, int],
    *,
    title: str = "",
) -> bytes:
    """PNG bytes: three orthogonal views through the segmented organs, a legend below."""
    from matplotlib.patches import Patch

    plt = _plt()
    n_colors = max(label_ids.values(), default=0) + 1
    fig, axes = plt.subplots(1, 3, figsize=(15, 6), dpi=80)
    draw_views(axes, ct, labels, spacing_mm, n_colors=n_colors)
    colours = _colours(n_colors)
    present = [o for o, i in label_ids.items() if np.any(labels == i)]
    handles = [Patch(color=colours[label_ids[o]][:3], label=o) for o in present]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=11)
    if title:
        fig.suptitle(title)
    return _png(fig)


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One mask on a contact sheet: its CT, the mask on the CT's grid, and a caption."""

    ct: np.ndarray
    mask: np.ndarray
    spacing_mm: tuple[float, float, float]
    caption: str


def contact_sheet(rows: Sequence[SheetRow], *, title: str) -> bytes:
    """PNG bytes: one row of three orthogonal views per mask, its caption on the left."""
    plt = _plt()
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 3, figsize=(12, 3.4 * n), dpi=80, squeeze=False)
    for row, ax_row in zip(rows, axes, strict=False):
        draw_views(ax_row, row.ct, row.mask.astype(np.uint8), row.spacing_mm, n_colors=2,
                   titles=row is rows[0])  # fmt: skip
        ax_row[0].text(
            -0.04, 0.5, row.caption, transform=ax_row[0].transAxes, ha="right", va="center",
            fontsize=9, wrap=True,
        )  # fmt: skip
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][1].text(0.5, 0.5, "no masks", ha="center", va="center")
    fig.suptitle(title, fontsize=12)
    return _png(fig)
