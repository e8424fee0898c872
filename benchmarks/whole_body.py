"""The whole-body phantom model and scan the inference benchmarks share.

The model: a real nnU-Net trained briefly on phantoms at 6 mm (like TotalSegmentator's
``--fastest``; a 3 mm model of this size did not learn the organs within a CPU budget of
minutes), a quarter of nnU-Net's features, 64^3 patch, on fields of view of 450 and
900 x 410 x 410 mm. The scan: a 512x512xN whole-body phantom at 0.8x0.8x1.5 mm."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

MODEL_SPACING_MM = (6.0, 6.0, 6.0)
SCAN_SPACING_MM = (1.5, 0.8, 0.8)


def train_model(work: Path, organs: Sequence[str]) -> Path:
    """The phantom model for ``organs`` (cached in ``work/model_work``)."""
    from orgseg.pipeline.phantom_model import PhantomModelConfig, train_phantom_model

    config = PhantomModelConfig(
        organs=tuple(organs),
        n_cases=8,
        shapes=((75, 68, 68), (150, 68, 68)),
        spacing_mm=MODEL_SPACING_MM,
        features_scale=0.25,
        patch_size=(64, 64, 64),
        training=dataclasses.replace(PhantomModelConfig().training, epochs=12),
    )
    return train_phantom_model(work / "model_work", config)


def make_scan(path: Path, n_slices: int) -> None:
    """A 512x512x``n_slices`` whole-body phantom CT at ``path`` (kept if it exists)."""
    from orgseg.core.volume import Volume
    from orgseg.io import write_volume
    from orgseg.phantoms import make_phantom

    if not path.exists():
        ph = make_phantom(shape=(n_slices, 512, 512), spacing_mm=SCAN_SPACING_MM, seed=7)
        write_volume(Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), str(path))
