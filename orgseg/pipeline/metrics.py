"""Metrics stage: two label maps (any URL) in, per-label metrics JSON out."""

from __future__ import annotations

import json
import logging

import numpy as np

from orgseg.core.metrics import label_metrics
from orgseg.errors import DataContractError
from orgseg.io import read_volume, write_bytes

log = logging.getLogger(__name__)


def run_metrics(
    pred_url: str, ref_url: str, out_url: str, *, labels: dict[str, int] | None = None
) -> dict[str, dict[str, float | None]]:
    """Compare two label maps on the same grid; write ``{label: {metric: value}}`` JSON.

    Without ``labels``, every non-zero value present in either map is compared, named
    by its id.
    """
    pred = read_volume(pred_url)
    ref = read_volume(ref_url)
    if not pred.same_grid(ref, tol_mm=1e-2):
        raise DataContractError(
            f"{pred_url} and {ref_url} are not on the same voxel grid (shape {pred.shape} vs "
            f"{ref.shape}, spacing {pred.spacing_mm} vs {ref.spacing_mm}); resample the "
            "prediction onto the reference first"
        )
    if labels is None:
        present = np.union1d(np.unique(pred.array), np.unique(ref.array))
        labels = {str(int(v)): int(v) for v in present if v != 0}
    results = label_metrics(pred.array, ref.array, labels, spacing_mm=ref.spacing_mm)
    out = {name: m.to_dict() for name, m in results.items()}
    write_bytes(out_url, json.dumps(out, indent=2).encode())
    log.info("metrics of %d label(s) written to %s", len(out), out_url)
    return out
