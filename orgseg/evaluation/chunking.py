"""Chunking reproducibility (the paper's section 3.4): chunked vs unchunked label maps.

For each case the model segments the whole scan in one piece (``blend`` mode without
chunks), then in chunks of ``chunk_mm`` with each overlap, and, for models that can be
streamed, in the default ``stream`` mode. Each organ's Dice between the chunked and the
unchunked label map says how much chunking changes the result (1.0 = identical).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from orgseg.core.metrics import dice
from orgseg.core.volume import Volume
from orgseg.defaults import BODY_MARGIN_MM, CHUNK_OVERLAP_MM
from orgseg.evaluation.tables import Table, mean_sd_text, organ_order
from orgseg.inference.engine import EngineOptions, ProbabilityModel, StreamingModel, segment_volume
from orgseg.inference.options import DEFAULTS

log = logging.getLogger(__name__)

DEFAULT_OVERLAPS_MM: tuple[float, ...] = (0.0, CHUNK_OVERLAP_MM)
STREAM = "stream"
CHUNKING_COLUMNS = ("case", "setting", "chunks", "organ", "dice", "ref_ml", "voxels_changed")


def chunking_rows(
    model: ProbabilityModel,
    cases: Mapping[str, Volume],
    labels: Mapping[str, int],
    *,
    chunk_mm: float = DEFAULTS.chunk_mm,  # type: ignore[assignment]
    overlaps_mm: Sequence[float] = DEFAULT_OVERLAPS_MM,
    body_crop: bool = False,
    body_margin_mm: float = BODY_MARGIN_MM,
) -> list[dict[str, object]]:
    """Per (case, setting, organ): Dice of the chunked against the unchunked label map.

    ``cases`` are canonical CTs; ``labels`` maps organ -> output label id. Without body
    crop (the default) the unchunked map is stock nnU-Net on the whole scan, so the table
    measures chunking alone; with it, every setting and the reference are body-cropped.
    """
    common = {"body_crop": body_crop, "body_margin_mm": body_margin_mm}
    settings: list[tuple[str, EngineOptions]] = [
        (
            f"overlap {o:g} mm",
            EngineOptions(mode="blend", chunk_mm=chunk_mm, overlap_mm=o, **common),
        )
        for o in overlaps_mm
    ]
    if isinstance(model, StreamingModel):
        settings.append((STREAM, EngineOptions(mode="stream", chunk_mm=chunk_mm, **common)))
    rows: list[dict[str, object]] = []
    for case, ct in cases.items():
        whole = segment_volume(model, ct, EngineOptions(mode="blend", chunk_mm=None, **common))
        voxel_ml = float(np.prod(ct.spacing_mm)) / 1000.0
        for name, options in settings:
            seg = segment_volume(model, ct, options)
            n_chunks = len(seg.chunks) if seg.mode == "blend" else 0
            for organ, lid in labels.items():
                ref = whole.labels == lid
                out = seg.labels == lid
                rows.append(
                    {
                        "case": case,
                        "setting": name
                        if name != STREAM or seg.mode == STREAM
                        else "stream (fell back to blend)",
                        "chunks": n_chunks,
                        "organ": organ,
                        "dice": dice(out, ref),
                        "ref_ml": round(int(ref.sum()) * voxel_ml, 3),
                        "voxels_changed": int((out != ref).sum()),
                    }
                )
            log.info("chunking %s, %s: %s", case, name, seg.describe())
    return rows


def chunking_table(rows: Sequence[Mapping[str, object]], *, chunk_mm: float) -> Table:
    """organ | per setting: Dice mean ± sd (min) over cases."""
    settings = list(dict.fromkeys(str(r["setting"]) for r in rows))
    organs = sorted({str(r["organ"]) for r in rows}, key=organ_order)
    body = []
    for organ in organs:
        cells = [organ]
        for s in settings:
            values = [float(r["dice"]) for r in rows if r["organ"] == organ and r["setting"] == s]
            if not values:
                cells.append("-")
                continue
            mean = float(np.mean(values))
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            cells.append(f"{mean_sd_text(mean, sd, 4)} (min {min(values):.4f})")
        body.append(tuple(cells))
    n_cases = len({r["case"] for r in rows})
    chunks = sorted({int(r["chunks"]) for r in rows if int(r["chunks"]) > 0})  # type: ignore[call-overload]
    return Table(
        title="Chunking reproducibility: Dice of chunked vs unchunked inference",
        columns=("organ", *settings),
        rows=tuple(body),
        note=f"{n_cases} case(s), chunks of {chunk_mm:g} mm ({', '.join(map(str, chunks)) or '1'}"
        " chunks per scan), no body crop; 'stream' is the default engine (nnU-Net's "
        "whole-scan tiling walked a tile row at a time). 1.0000 = identical label maps.",
    )
