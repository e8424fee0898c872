"""Fakes shared by tests (named as fakes: none of them is the real thing)."""

from __future__ import annotations

import numpy as np


class ThresholdModel:
    """A fake segmentation model (no network): every voxel above 0 HU is organ 1
    ("liver"); ``fail_with``: raised from every prediction instead."""

    n_classes = 2
    lut = np.array([0, 1], np.uint8)
    labels = {"liver": 1}
    patch_extent_mm = (0.0, 0.0, 0.0)

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.fail_with = fail_with
        self.calls = 0

    def predict_slabs(self, ct, spacing_mm, *, slab_rows):
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        for a in range(0, ct.shape[0], slab_rows):
            fg = (ct[a : a + slab_rows] > 0).astype(np.float32)
            yield a, np.stack([1.0 - fg, fg])
