"""The streamed preprocessing reproduces nnU-Net's whole-scan preprocessing row by row."""

from __future__ import annotations

import numpy as np
import pytest

from orgseg.core.tiles import pad_split, window_steps
from orgseg.nnunet.stream import StreamPlan, _ModelRows, nonzero_bbox

PROPS = {"mean": 40.0, "std": 180.0, "percentile_00_5": -990.0, "percentile_99_5": 1400.0}


def _ct(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ct = np.full(shape, -1024, np.int16)
    z, y, x = np.indices(shape)
    inside = ((y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2) < (0.4 * shape[1]) ** 2
    ct[inside] = 40
    ct[inside & (np.sin(z / 3.0) > 0.5)] = 700  # structure along z
    ct += rng.integers(-30, 30, shape).astype(np.int16)
    return ct


def _plan(ct_shape, spacing, target, separate) -> StreamPlan:
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

    model = tuple(int(v) for v in compute_new_shape(ct_shape, spacing, target))
    patch = (8, 8, 8)
    pads = [pad_split(m, p) for m, p in zip(model, patch, strict=True)]
    padded = tuple(m + a + b for m, (a, b) in zip(model, pads, strict=True))
    return StreamPlan(
        bbox=tuple((0, n) for n in ct_shape),
        cropped=tuple(ct_shape),
        model=model,
        patch=patch,
        pad_below=tuple(a for a, _ in pads),
        padded=padded,
        steps=tuple(tuple(window_steps(n, p)) for n, p in zip(padded, patch, strict=True)),
        separate_z=separate,
        export_z="linear",
    )


@pytest.mark.parametrize(
    ("shape", "spacing", "target"),
    [
        ((90, 40, 36), (1.5, 0.8, 0.8), (6.0, 6.0, 6.0)),  # 3D cubic, downsampling
        ((30, 24, 24), (3.0, 1.0, 1.0), (1.5, 1.5, 1.5)),  # 3D cubic, z upsampled
        ((20, 40, 40), (5.0, 0.8, 0.8), (5.0, 1.6, 1.6)),  # anisotropic: per slice + nearest z
        ((24, 32, 32), (4.0, 0.8, 0.8), (1.6, 1.6, 1.6)),  # anisotropic input, z upsampled
    ],
)
def test_model_rows_equal_nnunets_preprocessing(shape, spacing, target):
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
        CTNormalization,
    )
    from nnunetv2.preprocessing.resampling.default_resampling import (
        determine_do_sep_z_and_axis,
        resample_data_or_seg_to_shape,
    )

    ct = _ct(shape)
    norm = CTNormalization(use_mask_for_norm=False, intensityproperties=PROPS)
    whole = norm.run(ct.astype(np.float32))
    separate, _ = determine_do_sep_z_and_axis(None, spacing, target)
    plan = _plan(shape, spacing, target, bool(separate))
    expected = resample_data_or_seg_to_shape(
        whole[None], plan.model, spacing, target, order=3, order_z=0, force_separate_z=None
    )[0]
    rows = _ModelRows(ct, plan, norm.run, (float(whole.min()), float(whole.max())))
    mz = plan.model[0]
    got = np.concatenate([rows.rows(a, min(mz, a + 5)) for a in range(0, mz, 5)])
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5 * max(1.0, np.abs(expected).max())


def test_nonzero_bbox_is_nnunets_crop():
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero

    ct = np.zeros((30, 40, 50), np.int16)
    ct[3:27, 5:31, 2:49] = -1000
    ct[10, 20, 25] = 0  # a zero inside: a hole, filled by nnU-Net
    _, _, bbox = crop_to_nonzero(ct[None].astype(np.float32))
    assert [list(b) for b in nonzero_bbox(ct, rows=7)] == [list(b) for b in bbox]
    assert nonzero_bbox(np.zeros((4, 5, 6))) == ((0, 4), (0, 5), (0, 6))


def test_overlapping_tile_rows_reuse_rows_and_still_equal_nnunet():
    """Tile rows overlap by half a patch: rows made for one are reused by the next (and
    forgotten below it); the result is still nnU-Net's preprocessing."""
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
        CTNormalization,
    )
    from nnunetv2.preprocessing.resampling.default_resampling import (
        resample_data_or_seg_to_shape,
    )

    from orgseg.nnunet.stream import _first_input_row

    shape, spacing, target = (90, 40, 36), (1.5, 0.8, 0.8), (3.0, 3.0, 3.0)
    ct = _ct(shape, seed=3)
    norm = CTNormalization(use_mask_for_norm=False, intensityproperties=PROPS)
    whole = norm.run(ct.astype(np.float32))
    plan = _plan(shape, spacing, target, False)
    expected = resample_data_or_seg_to_shape(
        whole[None], plan.model, spacing, target, order=3, order_z=0, force_separate_z=None
    )[0]
    rows = _ModelRows(ct, plan, norm.run, (float(whole.min()), float(whole.max())))
    mz, window = plan.model[0], 8
    for a in range(0, mz - window + 1, window // 2):
        got = rows.rows(a, a + window)
        scale = max(1.0, np.abs(expected).max())
        assert np.abs(got - expected[a : a + window]).max() < 1e-5 * scale
        nxt = a + window // 2
        rows.forget_below(_first_input_row(plan, nxt), nxt)
        assert min(rows._model_rows, default=nxt) >= nxt  # nothing kept below the next row
