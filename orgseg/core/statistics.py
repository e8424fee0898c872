"""Per-organ figures of one segmented scan: volume and mean intensity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from orgseg.errors import DataContractError


def organ_statistics(
    labels: np.ndarray,
    ct_hu: np.ndarray,
    *,
    label_ids: Mapping[str, int],
    spacing_mm: Sequence[float],
) -> dict[str, dict[str, float | None]]:
    """Volume (ml), voxel count and mean/sd HU of every organ in ``label_ids``.

    An organ without voxels has volume 0 and no intensity figures (None).

    >>> import numpy as np
    >>> lab = np.zeros((2, 2, 2), np.uint8); lab[0] = 3
    >>> ct = np.full((2, 2, 2), 40.0); ct[0, 0] = 60.0
    >>> s = organ_statistics(lab, ct, label_ids={"liver": 3, "spleen": 4}, spacing_mm=(10,) * 3)
    >>> s["liver"]
    {'volume_ml': 4.0, 'voxels': 4, 'mean_hu': 50.0, 'sd_hu': 10.0}
    >>> s["spleen"]
    {'volume_ml': 0.0, 'voxels': 0, 'mean_hu': None, 'sd_hu': None}
    """
    if labels.shape != ct_hu.shape:
        raise DataContractError(
            f"expected a label map and CT of one shape, got {labels.shape} and {ct_hu.shape}"
        )
    voxel_ml = float(np.prod(np.asarray(spacing_mm, dtype=float))) / 1000.0
    n_bins = max(int(labels.max(initial=0)), *label_ids.values(), 0) + 1
    counts = np.zeros(n_bins, np.int64)
    sums = np.zeros(n_bins, np.float64)
    squares = np.zeros(n_bins, np.float64)
    for z in range(0, labels.shape[0], 16):  # slabs keep the float64 copies small
        flat = labels[z : z + 16].ravel()
        hu = ct_hu[z : z + 16].ravel().astype(np.float64)
        counts += np.bincount(flat, minlength=n_bins)
        sums += np.bincount(flat, weights=hu, minlength=n_bins)
        squares += np.bincount(flat, weights=hu * hu, minlength=n_bins)
    out: dict[str, dict[str, float | None]] = {}
    for organ, lid in label_ids.items():
        n = int(counts[lid])
        mean = sums[lid] / n if n else None
        sd = float(np.sqrt(max(squares[lid] / n - mean**2, 0.0))) if mean is not None else None
        out[organ] = {
            "volume_ml": round(n * voxel_ml, 3),
            "voxels": n,
            "mean_hu": None if mean is None else round(float(mean), 2),
            "sd_hu": None if sd is None else round(sd, 2),
        }
    return out
