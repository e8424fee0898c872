"""nnU-Net's whole-scan prediction, streamed one tile row at a time.

Stock nnU-Net preprocesses the whole scan (float64 copies), holds the whole scan's logits
and brings all classes back to the full original grid before the argmax. This module
produces the same label map (:func:`stream_labels`) while holding only:

* the in-plane-resampled input rows one tile row needs (the spline resampling of nnU-Net's
  preprocessing is separable: rows are resampled in-plane one at a time, then along z with
  a margin wide enough for the spline prefilter to have decayed below float32 precision);
* one patch height of Gaussian-weighted logits per fold, accumulated in half precision in
  nnU-Net's own tile order, so every voxel sees the same additions in the same order;
* a few rows of model-grid logits for the export, which resamples a slab of output rows
  at a time, in-plane only inside the body's box, and takes the argmax in float16 as
  nnU-Net's export does.

Tiles that cannot reach the body contour are skipped (see :mod:`orgseg.core.tiles`), so
inside the body the result equals stock nnU-Net on the whole scan; outside it is
background. Models whose preprocessing is not row-local (z-score normalisation uses the
whole image's statistics; transposed axes; other resampling functions) raise
:class:`NotStreamableError` and are run by the chunk-and-blend path instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from orgseg.core.resample import cubic_rows, interpolation_matrix, linear_taps, nearest_taps
from orgseg.core.tiles import (
    coarse_span,
    fine_span,
    pad_split,
    tiles_touching,
    union_box,
    window_steps,
)
from orgseg.defaults import BODY_MARGIN_MM, TILE_STEP
from orgseg.errors import NotStreamableError
from orgseg.nnunet.export import slab_export_mode
from orgseg.nnunet.folder import (
    FolderPlan,
    mirrored_forward,
    model_shape,
    separate_z,
    tile_weights,
)

log = logging.getLogger(__name__)

#: input rows beyond a block on each side for the cubic spline's prefilter (its influence
#: decays as 0.268**n: 0.268**16 < 1e-9)
SPLINE_MARGIN_ROWS = 16
#: the export's float32 scores (classes x rows x plane) are made at most this big at once
EXPORT_BYTES = 48 * 2**20


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Geometry of one scan under one model (all in the scan's (z, y, x) order)."""

    bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # nnU-Net's nonzero crop
    cropped: tuple[int, int, int]
    model: tuple[int, int, int]  # model-grid shape
    patch: tuple[int, int, int]
    pad_below: tuple[int, int, int]
    padded: tuple[int, int, int]
    steps: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    separate_z: bool  # input resampling: in-plane cubic per slice, nearest along z
    export_z: str  # "linear" or "nearest" (logits back to the scan along z)


def nonzero_bbox(ct: np.ndarray, rows: int = 32) -> tuple[tuple[int, int], ...]:
    """nnU-Net's crop-to-nonzero box (filling holes cannot change a bounding box), computed
    a slab at a time; an all-zero scan keeps its whole extent, as in nnU-Net."""
    n = ct.shape[0]
    z_any = np.zeros(n, dtype=bool)
    y_any = np.zeros(ct.shape[1], dtype=bool)
    x_any = np.zeros(ct.shape[2], dtype=bool)
    for a in range(0, n, rows):
        nz = np.asarray(ct[a : a + rows]) != 0
        z_any[a : a + rows] = nz.any(axis=(1, 2))
        y_any |= nz.any(axis=(0, 2))
        x_any |= nz.any(axis=(0, 1))

    def span(flags: np.ndarray) -> tuple[int, int]:
        idx = np.flatnonzero(flags)
        return (0, flags.size) if idx.size == 0 else (int(idx[0]), int(idx[-1]) + 1)

    return span(z_any), span(y_any), span(x_any)


class _ModelRows:
    """Rows of nnU-Net's preprocessed input on the model grid, computed on demand."""

    def __init__(self, ct: np.ndarray, plan: StreamPlan, normalize: Callable, clip: tuple):
        self.ct = ct
        self.plan = plan
        self.normalize = normalize
        self.clip = clip
        (self.z0, _), (y0, y1), (x0, x1) = plan.bbox
        self.plane = (slice(y0, y1), slice(x0, x1))
        self._cache: dict[int, np.ndarray] = {}
        self._model_rows: dict[int, np.ndarray] = {}

    def _input_row(self, r: int) -> np.ndarray:
        """Normalised input row ``r`` (cropped coordinates), float32."""
        row = np.array(self.ct[self.z0 + r][self.plane], dtype=np.float32)
        return self.normalize(row)

    def _plane_row(self, r: int) -> np.ndarray:
        """Input row ``r`` resampled in-plane to the model grid (float64, cached)."""
        hit = self._cache.get(r)
        if hit is None:
            from scipy import ndimage as ndi
            from skimage.transform import resize

            row = self._input_row(r).astype(np.float64)
            out_shape = self.plan.model[1:]
            if self.plan.separate_z:
                # nnU-Net: skimage resize of each slice (it clips to the slice's range)
                hit = resize(row, out_shape, order=3, mode="edge", anti_aliasing=False)
            elif out_shape == row.shape:
                hit = row
            else:
                zoom = (out_shape[0] / row.shape[0], out_shape[1] / row.shape[1])
                hit = ndi.zoom(row, zoom, order=3, mode="nearest", grid_mode=True)
            self._cache[r] = hit
        return hit

    def forget_below(self, r: int, model_row: int) -> None:
        """Drop the cached input rows below ``r`` and model rows below ``model_row``."""
        for key in [k for k in self._cache if k < r]:
            del self._cache[key]
        for key in [k for k in self._model_rows if k < model_row]:
            del self._model_rows[key]

    def rows(self, a: int, b: int) -> np.ndarray:
        """Model-grid rows ``[a, b)`` as float32 ``(b - a, Y', X')``; rows an earlier tile
        row already made (neighbouring tile rows overlap by half a patch) are reused."""
        c = a
        while c < b and c in self._model_rows:
            c += 1
        if c < b:
            for r, row in zip(range(c, b), self._compute(c, b), strict=True):
                self._model_rows[r] = row
        return np.stack([self._model_rows[r] for r in range(a, b)])

    def _compute(self, a: int, b: int) -> np.ndarray:
        plan = self.plan
        n_in, n_out = plan.cropped[0], plan.model[0]
        if plan.cropped == plan.model:  # nnU-Net does not resample at all
            return np.stack([self._input_row(r) for r in range(a, b)])
        if plan.separate_z:
            taps = nearest_taps(n_in, n_out)[a:b]
            return np.stack([self._plane_row(int(r)) for r in taps]).astype(np.float32)
        scale = n_in / n_out
        first = (a + 0.5) * scale - 0.5
        last = (b - 1 + 0.5) * scale - 0.5
        r0 = max(0, math.floor(first) - 2 - SPLINE_MARGIN_ROWS)
        r1 = min(n_in, math.floor(last) + 3 + SPLINE_MARGIN_ROWS)
        block = np.stack([self._plane_row(r) for r in range(r0, r1)])
        # the z half of the separable cubic spline (the in-plane half is in _plane_row)
        out = cubic_rows(block, first - r0 + scale * np.arange(b - a))
        np.clip(out, self.clip[0], self.clip[1], out=out)
        return out.astype(np.float32)


def make_plan(
    model: FolderPlan,
    tile_step_size: float,
    spacing_mm: Sequence[float],
    bbox,
) -> StreamPlan:
    """The streaming plan for the box ``bbox`` of a scan under model folder ``model``, or
    :class:`NotStreamableError` with the reason."""
    conf = model.configuration
    if len(model.patch_size) != 3:
        raise NotStreamableError("not a 3D configuration")
    if list(model.transpose_forward) != [0, 1, 2]:
        raise NotStreamableError("the plans transpose the axes")
    if list(model.normalization_schemes) != ["CTNormalization"]:
        raise NotStreamableError(
            f"normalisation {list(model.normalization_schemes)} uses image-wide statistics"
        )
    if conf.get("resampling_fn_data") != "resample_data_or_seg_to_shape":
        raise NotStreamableError(f"data resampling {conf.get('resampling_fn_data')}")
    data_kwargs = dict(conf.get("resampling_fn_data_kwargs", {}))
    if data_kwargs.get("order", 3) != 3 or data_kwargs.get("order_z", 0) != 0:
        raise NotStreamableError(f"data resampling options {data_kwargs}")
    export_z = slab_export_mode(model, spacing_mm)
    if export_z is None:
        raise NotStreamableError("the export's resampling cannot be reproduced slab by slab")
    cropped = tuple(int(b - a) for a, b in bbox)
    target = model.spacing_mm
    grid = model_shape(cropped, spacing_mm, target)
    separate, axis = separate_z(data_kwargs.get("force_separate_z"), spacing_mm, target)
    if separate and axis != 0:
        raise NotStreamableError(f"anisotropic along axis {axis}, not the slice axis")
    patch = model.patch_size
    pads = [pad_split(m, q) for m, q in zip(grid, patch, strict=True)]
    padded = tuple(m + lo + hi for m, (lo, hi) in zip(grid, pads, strict=True))
    step = float(tile_step_size)
    steps = tuple(tuple(window_steps(n, q, step)) for n, q in zip(padded, patch, strict=True))
    return StreamPlan(
        bbox=tuple(bbox),  # type: ignore[arg-type]
        cropped=cropped,  # type: ignore[arg-type]
        model=grid,  # type: ignore[arg-type]
        patch=patch,  # type: ignore[arg-type]
        pad_below=tuple(lo for lo, _ in pads),  # type: ignore[arg-type]
        padded=padded,  # type: ignore[arg-type]
        steps=steps,  # type: ignore[arg-type]
        separate_z=bool(separate),
        export_z=export_z,
    )


def stream_labels(
    model: FolderPlan,
    nets: Sequence,
    ct: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    device: Any = None,
    tile_step_size: float = TILE_STEP,
    mirror_axes: Sequence[int] | None = None,
    body_boxes: np.ndarray | None = None,
    margin_mm: float = BODY_MARGIN_MM,
    slab_rows: int = 16,
    progress: Callable[[int, int], None] | None = None,
    agreement: Callable[[Sequence[np.ndarray]], None] | None = None,
    tile_batch: int = 1,
) -> Iterator[tuple[int, int, tuple[slice, slice], np.ndarray]]:
    """nnU-Net's whole-scan sliding window of model folder ``model`` with its folds'
    networks ``nets`` (:func:`orgseg.nnunet.folder.build_networks`), a tile row at a time.

    ``mirror_axes``: nnU-Net's test-time mirroring over these axes (None: none).
    ``body_boxes``: per scan row the body's in-plane box (``y0, y1, x0, x1``; empty
    rows all zero, see :func:`orgseg.core.tiles.row_boxes`); None predicts everywhere.
    ``tile_batch``: tiles of a tile row per forward pass (1 is nnU-Net's own way, bit for
    bit; a batch is faster on the CPU, where PyTorch runs batches through oneDNN, whose
    sums round differently from its batch-of-one kernels).

    Yield ``(z0, z1, (ys, xs), labels)``: model class indices (uint8) for scan rows
    ``[z0, z1)`` inside the in-plane box ``(ys, xs)``; everything not yielded is
    background. Raises :class:`NotStreamableError` before any work if the model needs the
    chunk-and-blend path. ``agreement``: called with each fold's own class map of every
    finished block (model grid; e.g. :meth:`orgseg.core.qc.FoldAgreement.add`), for the
    folds' agreement without a second pass."""
    import torch
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
        CTNormalization,
    )

    bbox = nonzero_bbox(ct)
    plan = make_plan(model, tile_step_size, spacing_mm, bbox)
    (bz0, bz1), (by0, by1), (bx0, bx1) = plan.bbox
    normalizer = CTNormalization(
        use_mask_for_norm=False, intensityproperties=model.intensity_properties
    )

    def normalize(a: np.ndarray) -> np.ndarray:
        return normalizer.run(a)

    lo = hi = None
    for a in range(bz0, bz1, 32):
        block = np.asarray(ct[a : min(bz1, a + 32), by0:by1, bx0:bx1])
        lo = block.min() if lo is None else min(lo, block.min())
        hi = block.max() if hi is None else max(hi, block.max())
    clip = tuple(normalize(np.array([lo, hi], dtype=np.float32)).astype(np.float64))
    source = _ModelRows(ct, plan, normalize, clip)

    boxes = None
    margin_px = (0, 0)
    if body_boxes is not None:
        boxes = _crop_boxes(np.asarray(body_boxes)[bz0:bz1], (by0, by1), (bx0, bx1))
        margin_px = tuple(int(math.ceil(margin_mm / s)) for s in spacing_mm[1:])

    (mz, my, mx), (pz, py, px) = plan.model, plan.patch
    (bz, byp, bxp) = plan.pad_below
    cz, cy, cx = plan.cropped

    def plane_box_for(rows: tuple[int, int]) -> tuple[int, int, int, int] | None:
        if boxes is None:
            return 0, cy, 0, cx
        return union_box(boxes, rows, margin_px, (cy, cx))

    device = torch.device("cpu") if device is None else torch.device(device)
    gaussian = tile_weights(plan.patch)
    n_classes = model.n_heads
    qz, qy, qx = plan.padded
    accs = [torch.zeros((n_classes, pz, qy, qx), dtype=torch.half) for _ in nets]
    weight = torch.zeros((pz, qy, qx), dtype=torch.half)
    autocast = torch.autocast(device.type, enabled=True) if device.type == "cuda" else nullcontext()

    exporter = _Exporter(plan, plane_box_for, slab_rows)
    z_steps = plan.steps[0]
    n_tiles = 0
    for k, s in enumerate(z_steps):
        rows = (max(0, s - bz), min(mz, s - bz + pz))  # model rows this tile row reads
        box = None
        if rows[0] < rows[1]:
            out_rows = fine_span(rows[0], rows[1], mz, cz)
            if out_rows is not None:
                box = plane_box_for(out_rows)
        if box is not None:
            ys = tiles_touching(
                plan.steps[1], py, *(v + byp for v in coarse_span(box[0], box[1], my, cy))
            )
            xs = tiles_touching(
                plan.steps[2], px, *(v + bxp for v in coarse_span(box[2], box[3], mx, cx))
            )
            data = np.zeros((pz, qy, qx), dtype=np.float32)
            data[rows[0] - (s - bz) : rows[1] - (s - bz), byp : byp + my, bxp : bxp + mx] = (
                source.rows(*rows)
            )
            if k + 1 < len(z_steps):
                next_row = max(0, min(mz - 1, z_steps[k + 1] - bz))
                source.forget_below(_first_input_row(plan, next_row), next_row)
            tensor = torch.from_numpy(data)
            # nnU-Net's tile order (y, then x), ``tile_batch`` tiles per forward pass
            order = [(sy, sx) for sy in ys for sx in xs]
            with torch.inference_mode(), autocast:
                for f, net in enumerate(nets):
                    for i in range(0, len(order), tile_batch):
                        group = order[i : i + tile_batch]
                        batch = torch.stack(
                            [tensor[None, :, sy : sy + py, sx : sx + px] for sy, sx in group]
                        ).to(device)
                        preds = mirrored_forward(net, batch, mirror_axes).to("cpu")
                        for (sy, sx), pred in zip(group, preds, strict=True):
                            pred *= gaussian
                            accs[f][:, :, sy : sy + py, sx : sx + px] += pred
                            if f == 0:
                                weight[:, sy : sy + py, sx : sx + px] += gaussian
                            n_tiles += 1
                        del batch, preds
        # rows below the next tile row's start are final
        nxt = z_steps[k + 1] if k + 1 < len(z_steps) else qz
        n_final = nxt - s
        per_fold: list | None = [] if agreement is not None and len(accs) > 1 else None
        logits = _finalise(accs, weight, n_final, per_fold)
        lo_model, hi_model = s - bz, nxt - bz  # padded -> model rows
        keep = slice(max(0, -lo_model), n_final - max(0, hi_model - mz))
        if per_fold and keep.start < keep.stop:
            agreement([f[keep, byp : byp + my, bxp : bxp + mx].numpy() for f in per_fold])
        if keep.start < keep.stop:
            block = logits[:, keep, byp : byp + my, bxp : bxp + mx]
            for z0, z1, (ys_, xs_), lab in exporter.add(max(0, lo_model), block):
                yield (
                    bz0 + z0,
                    bz0 + z1,
                    (
                        slice(by0 + ys_.start, by0 + ys_.stop),
                        slice(bx0 + xs_.start, bx0 + xs_.stop),
                    ),
                    lab,
                )
        for acc in accs:
            acc[:, : pz - n_final] = acc[:, n_final:].clone()
            acc[:, pz - n_final :] = 0
        weight[: pz - n_final] = weight[n_final:].clone()
        weight[pz - n_final :] = 0
        if progress is not None:
            progress(k + 1, len(z_steps))
    log.debug("streamed %d tile rows, %d tiles (all folds)", len(z_steps), n_tiles)


def _crop_boxes(boxes: np.ndarray, ys: tuple[int, int], xs: tuple[int, int]) -> np.ndarray:
    """Row boxes moved into the crop's coordinates (rows left empty stay empty)."""
    out = boxes.copy()
    out[:, 0:2] = np.clip(out[:, 0:2] - ys[0], 0, ys[1] - ys[0])
    out[:, 2:4] = np.clip(out[:, 2:4] - xs[0], 0, xs[1] - xs[0])
    empty = (out[:, 1] <= out[:, 0]) | (out[:, 3] <= out[:, 2])
    out[empty] = 0
    return out


def _first_input_row(plan: StreamPlan, model_row: int) -> int:
    """Lowest input row (cropped coordinates) that model rows >= ``model_row`` read."""
    if plan.separate_z:
        return int(nearest_taps(plan.cropped[0], plan.model[0])[min(model_row, plan.model[0] - 1)])
    scale = plan.cropped[0] / plan.model[0]
    return max(0, math.floor((model_row + 0.5) * scale - 0.5) - 2 - SPLINE_MARGIN_ROWS)


def _finalise(accs: list, weight, n_rows: int, per_fold: list | None = None) -> np.ndarray:
    """nnU-Net's per-fold division and fold average, in half precision, for the first
    ``n_rows`` rows of the window: (C, n_rows, Y, X) float16. ``per_fold``: each fold's
    own class map of those rows is appended to it."""
    import torch

    w = weight[:n_rows].clone()
    w[w == 0] = 1  # never touched (outside every body box): any finite value will do
    total = None
    for acc in accs:
        part = torch.div(acc[:, :n_rows], w)
        if per_fold is not None:
            per_fold.append(argmax_first(part))
        total = part if total is None else total.add_(part)
    assert total is not None
    if len(accs) > 1:
        total /= len(accs)
    return total.numpy()


class _Exporter:
    """Model-grid logit rows in, label slabs on the (cropped) scan grid out."""

    def __init__(self, plan: StreamPlan, plane_box_for: Callable, slab_rows: int) -> None:
        self.plan = plan
        self.box_for = plane_box_for
        self.slab_rows = max(1, slab_rows)
        self.buf: np.ndarray | None = None
        self.buf0 = 0  # model row of buf[:, 0]
        self.next_out = 0  # next output row (cropped coordinates) to emit
        mz, cz = plan.model[0], plan.cropped[0]
        self.i0, self.i1, self.w = linear_taps(mz, cz)
        self.near = nearest_taps(mz, cz)
        self.ry = interpolation_matrix(plan.model[1], plan.cropped[1])
        self.rx_t = np.ascontiguousarray(interpolation_matrix(plan.model[2], plan.cropped[2]).T)

    def add(
        self, model_row: int, logits: np.ndarray
    ) -> Iterator[tuple[int, int, tuple[slice, slice], np.ndarray]]:
        if self.buf is None:
            self.buf, self.buf0 = logits, model_row
        else:
            assert model_row == self.buf0 + self.buf.shape[1], "rows must arrive in order"
            self.buf = np.concatenate([self.buf, logits], axis=1)
        have = self.buf0 + self.buf.shape[1]
        mz, cz = self.plan.model[0], self.plan.cropped[0]
        while self.next_out < cz:
            a = self.next_out
            b = min(cz, a + self.slab_rows)
            need = coarse_span(a, b, mz, cz)
            if need[1] > have and have < mz:
                break
            box = self.box_for((a, b))
            if box is not None and box[0] < box[1] and box[2] < box[3]:
                yield a, b, (slice(box[0], box[1]), slice(box[2], box[3])), self._labels(a, b, box)
            self.next_out = b
            if b < cz:
                drop = coarse_span(b, min(cz, b + self.slab_rows), mz, cz)[0] - self.buf0
                if drop > 0:
                    self.buf = self.buf[:, drop:]
                    self.buf0 += drop

    def _labels(self, a: int, b: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Labels of output rows ``[a, b)`` in ``box``, a few rows at a time: the
        classes x rows x plane float32 scores of a whole slab would be the engine's largest
        buffer (20 classes x 16 rows x 512 x 512 is 335 MB)."""
        assert self.buf is not None
        y0, y1, x0, x1 = box
        n_classes = self.buf.shape[0]
        per_row = n_classes * (y1 - y0) * (x1 - x0) * 4
        step = max(1, min(b - a, EXPORT_BYTES // max(per_row, 1)))
        out = np.empty((b - a, y1 - y0, x1 - x0), dtype=np.uint8)
        for r0 in range(a, b, step):
            r1 = min(b, r0 + step)
            out[r0 - a : r1 - a] = self._label_rows(r0, r1, box)
        return out

    def _label_rows(self, a: int, b: int, box: tuple[int, int, int, int]) -> np.ndarray:
        import torch

        assert self.buf is not None
        src = self.buf
        if self.plan.export_z == "linear":
            w = self.w[a:b].astype(np.float32)[None, :, None, None]
            planes = (
                src[:, self.i0[a:b] - self.buf0].astype(np.float32) * (1.0 - w)
                + src[:, self.i1[a:b] - self.buf0].astype(np.float32) * w
            )
        else:
            planes = src[:, self.near[a:b] - self.buf0].astype(np.float32)
        y0, y1, x0, x1 = box
        ry = torch.from_numpy(np.ascontiguousarray(self.ry[y0:y1]))
        rx = torch.from_numpy(np.ascontiguousarray(self.rx_t[:, x0:x1]))
        scores = torch.matmul(torch.matmul(ry, torch.from_numpy(planes)), rx)
        # nnU-Net's export holds the resampled logits in float16: ties resolve the same way
        return argmax_first(scores.half()).numpy()


def argmax_first(scores) -> Any:  # noqa: ANN001 - torch tensors
    """``scores.argmax(0)`` as uint8 (the first class wins a tie, as in numpy and torch),
    one class at a time: torch's own argmax over a float16 class axis is several times
    slower on the CPU."""
    import torch

    best = scores[0].clone()
    out = torch.zeros(scores.shape[1:], dtype=torch.uint8)
    for c in range(1, scores.shape[0]):
        out[scores[c] > best] = c
        torch.maximum(best, scores[c], out=best)
    return out
