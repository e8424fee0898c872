"""An installed model set run as one model: every part through the streamed engine on
one read of the CT and one body contour, merged into the set's classes.

Parts run one after another, so the engine's working memory is that of one part; each
part's networks are loaded once (in bulk: once per task) and kept. How parts merge is the
registry's ``merge``: ``single``; ``overwrite`` (TotalSegmentator's rule: a later part's
class replaces an earlier one where both predict); ``priority`` (binary organ parts fused
by CV Dice priority, :func:`orgseg.core.fusion.fusion_order`, or by the parts' stated
order when the set carries no CV Dice; the order used is in :attr:`ModelSet.fusion`).

``classes="native"`` writes the set's own class ids and names (TotalSegmentator's 117);
``classes="orgseg"`` maps them onto the organ catalog (lung lobes -> lungs, vertebrae
C1-S1 -> vertebrae, left/right pairs merged) with the catalog's fixed ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orgseg.catalog import label_ids as catalog_ids
from orgseg.core.body import PackedMask, body_mask
from orgseg.core.fusion import fusion_order
from orgseg.core.resample import nearest_preimage, zoom_linear, zoom_nearest
from orgseg.core.volume import Volume
from orgseg.errors import ConfigError, DataContractError
from orgseg.inference.engine import Progress, Segmentation, segment_volume
from orgseg.inference.model import ModelOptions, SegmentationModel
from orgseg.inference.options import EngineOptions
from orgseg.models.registry import FROM_DATASET_JSON, ModelSetEntry, model_registry
from orgseg.models.store import read_manifest

log = logging.getLogger(__name__)

CLASS_MODES = ("native", "orgseg")


@dataclass(frozen=True, slots=True)
class _Part:
    folder: str
    model: SegmentationModel
    #: model class index -> native id
    lut: np.ndarray
    organ: str | None


def _part_names(model: SegmentationModel, labels: tuple[str, ...] | str, folder: str) -> list[str]:
    """The part's class names by model class index 1..n."""
    if labels == FROM_DATASET_JSON:
        by_id = sorted(model.predictor.labels.items(), key=lambda kv: kv[1])
        return [name for name, _ in by_id]
    names = list(labels)
    if len(names) < model.n_classes - 1:
        raise DataContractError(
            f"part {folder}: the registry names {len(names)} classes but the model "
            f"predicts {model.n_classes - 1} (its dataset.json); fix the entry's labels"
        )
    if len(names) > model.n_classes - 1:
        log.warning(
            "part %s predicts %d classes, the registry names %d: the first %d are used",
            folder, model.n_classes - 1, len(names), model.n_classes - 1,
        )  # fmt: skip
    return names[: model.n_classes - 1]


def _check_grid(model: SegmentationModel, resample_mm: float | None, folder: str) -> None:
    spacing = model.predictor.spacing_mm
    if resample_mm is None:
        return
    if any(abs(s - resample_mm) > 0.01 * resample_mm for s in spacing):
        log.warning(
            "part %s predicts on a %s mm grid, its set's authors on %g mm: nnU-Net's "
            "resampling to the part's own plans is used",
            folder, "x".join(f"{s:g}" for s in spacing), resample_mm,
        )  # fmt: skip


class ModelSet:
    """An installed model set (``orgseg models fetch/import``), loaded once."""

    def __init__(self, set_dir: str | Path, options: ModelOptions | None = None) -> None:
        options = options if options is not None else ModelOptions()
        set_dir = Path(set_dir)
        manifest = read_manifest(str(set_dir))
        from orgseg.configtools import load_dataclass

        self.entry: ModelSetEntry = load_dataclass(
            ModelSetEntry, manifest["entry"], where=str(set_dir)
        )
        if options.classes not in CLASS_MODES:
            raise ConfigError(f"expected classes 'native' or 'orgseg', got {options.classes!r}")
        settings = self.entry.inference
        part_options = ModelOptions(
            folds=options.folds if options.folds is not None else settings.folds,
            device=options.device,
            threads=options.threads,
            use_mirroring=settings.mirroring if options.use_mirroring is None
            else options.use_mirroring,
            tile_step_size=settings.tile_step_size if options.tile_step_size is None
            else options.tile_step_size,
        )  # fmt: skip
        by_pattern = {p.folder: p for p in self.entry.parts}
        loaded: list[tuple[str, SegmentationModel, list[str], str | None]] = []
        for info in manifest["parts"]:
            part = by_pattern[info["pattern"]]
            model = SegmentationModel(set_dir / info["folder"], part_options)
            _check_grid(model, settings.resample_mm, info["folder"])
            names = _part_names(model, part.labels, info["folder"])
            if part.organ is not None:
                names = [part.organ] if len(names) == 1 else names
            loaded.append((info["folder"], model, names, part.organ))
        self.native: dict[str, int] = self._native_ids(loaded)
        self.parts = [
            _Part(folder, model, self._lut(model, names), organ)
            for folder, model, names, organ in loaded
        ]
        self.fusion: list[str] = self._fusion_order() if self.entry.merge == "priority" else []
        self.classes = options.classes
        self.labels, self._out_lut = self._outputs(options.classes)
        self.model_dir = set_dir
        log.info(
            "model set %s: %d part(s), %d native classes, %s output classes",
            self.entry.name, len(self.parts), len(self.native), options.classes,
        )  # fmt: skip

    def _native_ids(self, loaded) -> dict[str, int]:  # noqa: ANN001
        if self.entry.classes is not None:
            return {name: i + 1 for i, name in enumerate(self.entry.classes)}
        organs = [organ for _, _, _, organ in loaded]
        if all(organs):  # one catalog organ per part: the catalog's fixed ids
            return catalog_ids(organs)  # type: ignore[arg-type]
        if len(loaded) == 1 and self.entry.parts[0].labels == FROM_DATASET_JSON:
            return dict(sorted(loaded[0][1].predictor.labels.items(), key=lambda kv: kv[1]))
        names: list[str] = []
        for _, _, part_names, _ in loaded:
            names += [n for n in part_names if n not in names]
        return {name: i + 1 for i, name in enumerate(names)}

    def _lut(self, model: SegmentationModel, names: list[str]) -> np.ndarray:
        """Model class index -> native id (through the part model's own output ids)."""
        lut = np.zeros(256, dtype=np.uint8)
        by_index = sorted(model.predictor.labels.items(), key=lambda kv: kv[1])
        for (_, train_id), name in zip(by_index, names, strict=True):
            if name not in self.native:
                raise DataContractError(f"class {name!r} is not among the set's classes")
            lut[model.lut[train_id]] = self.native[name]
        return lut

    def _fusion_order(self) -> list[str]:
        organs = [p.organ for p in self.parts if p.organ]
        dice = {p.organ: p.cv_dice for p in self.entry.parts if p.cv_dice is not None}
        if not all(o in dice for o in organs):  # the stated order: first part strongest
            dice = {o: float(len(organs) - i) for i, o in enumerate(organs)}
        return fusion_order(organs, manual=[], cv_dice=dice)  # type: ignore[arg-type]

    def _outputs(self, classes: str) -> tuple[dict[str, int], np.ndarray | None]:
        """Output label ids by name, and the native -> output lut (None: native)."""
        if classes == "native":
            return dict(self.native), None
        registry = model_registry()
        organ_of = {name: registry.catalog_organ(name) for name in self.native}
        organs = sorted({o for o in organ_of.values() if o is not None})
        if not organs:
            raise DataContractError(
                f"model set {self.entry.name}: none of its classes map onto the organ "
                "catalog; use --classes native (or add catalog_names to the registry)"
            )
        ids = catalog_ids(organs)
        lut = np.zeros(256, dtype=np.uint8)
        for name, nid in self.native.items():
            if organ_of[name] is not None:
                lut[nid] = ids[organ_of[name]]  # type: ignore[index]
        return ids, lut

    def _grid(self, ct: Volume) -> tuple[int, int, int] | None:
        """The shape of ``ct`` on the authors' resampling grid (None: no resampling)."""
        r = self.entry.inference.resample_mm
        if r is None or all(abs(s - r) < 1e-6 for s in ct.spacing_mm):
            return None
        return tuple(  # type: ignore[return-value]
            max(1, round(n * s / r)) for n, s in zip(ct.shape, ct.spacing_mm, strict=True)
        )

    @property
    def description(self) -> Mapping[str, object]:
        """What the outputs record about the set (name, merge, fusion order)."""
        return {
            "model_set": self.entry.name,
            "merge": self.entry.merge,
            "classes": self.classes,
            **({"fusion_order_weakest_first": self.fusion} if self.fusion else {}),
        }

    def segment(
        self,
        ct: Volume,
        options: EngineOptions,
        *,
        progress: Progress | None = None,
        body: PackedMask | None = None,
    ) -> Segmentation:
        """Every part on ``ct``; one body contour for all of them. A set whose authors
        resample first (``inference.resample_mm``) runs on the CT resampled as they do
        (linear, on scipy's zoom grid, HU truncated to integers) and its labels come
        back by nearest neighbour, as TotalSegmentator's own pipeline does."""
        t0 = time.perf_counter()
        if options.body_crop and body is None:
            body = body_mask(ct.array, spacing_mm=ct.spacing_mm, packed=True)  # type: ignore[assignment]
        original, grid = ct, self._grid(ct)
        work_body = body
        if grid is not None:
            r = float(self.entry.inference.resample_mm)  # type: ignore[arg-type]
            ct = Volume(zoom_linear(ct.array, grid), spacing_mm=(r, r, r))
            # the grid voxels the body's voxels come back from: inside the body, the
            # labels are those of the uncropped run
            work_body = PackedMask.pack(nearest_preimage(body, grid)) if body is not None else None
        ras = self.entry.inference.orientation == "RAS"
        scan, scan_body = ct, work_body
        if ras:  # the networks see the voxels in RAS order: y and x reversed
            scan = Volume(InPlaneFlip(ct.array), spacing_mm=ct.spacing_mm)  # type: ignore[arg-type]
            if work_body is not None:
                flipped = work_body.unpack()[:, ::-1, ::-1]  # type: ignore[union-attr]
                scan_body = PackedMask.pack(np.ascontiguousarray(flipped))
        merged = np.zeros(ct.shape, dtype=np.uint8)
        masks: dict[str, PackedMask] = {}
        mode = "stream"
        for i, part in enumerate(self.parts):
            seg = segment_volume(part.model, scan, options, progress=progress, body=scan_body)
            mode = seg.mode
            native = _apply_lut(seg.labels[:, ::-1, ::-1] if ras else seg.labels, part.lut)
            del seg
            if self.entry.merge == "priority":
                assert part.organ is not None
                masks[part.organ] = PackedMask.pack(native != 0)
            else:
                np.copyto(merged, native, where=native != 0)
            del native
            log.debug("part %d/%d %s done", i + 1, len(self.parts), part.folder)
        if masks:
            for organ in self.fusion:  # weakest first: the strongest is written last
                _paint(merged, masks[organ], self.native[organ])
        if self._out_lut is not None:
            merged = _apply_lut(merged, self._out_lut)
        if grid is not None:  # back onto the CT's own grid
            merged = zoom_nearest(merged, original.shape)
            masks = {o: PackedMask.pack(zoom_nearest(m.unpack(), original.shape))
                     for o, m in masks.items()}  # fmt: skip
            if body is not None:  # outside the body stays background, as without resampling
                for a in range(0, merged.shape[0], 32):
                    merged[a : a + 32][~body.rows(a, a + 32)] = 0
        return Segmentation(
            labels=merged,
            body_bits=body,
            chunks=(),
            seconds=time.perf_counter() - t0,
            mode=mode,
            organ_masks=_output_masks(masks, self.labels) if masks else None,
        )


class InPlaneFlip:
    """A read-only view of a (z, y, x) scan with y and x reversed, read a slab at a
    time from the scan underneath (which may be voxels on disk, :class:`ScanRows`)."""

    def __init__(self, base) -> None:  # noqa: ANN001 - an array or ScanRows
        self.base = base
        self.shape = tuple(base.shape)
        self.dtype = base.dtype
        self.ndim = 3

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        key = key if isinstance(key, tuple) else (key,)
        rows = np.asarray(self.base[key[0]])
        flipped = rows[..., ::-1, ::-1]
        return flipped[(Ellipsis, *key[1:])] if len(key) > 1 else flipped

    def __array__(self, dtype=None, copy=None):  # noqa: ANN001, ANN204
        out = np.ascontiguousarray(np.asarray(self.base)[:, ::-1, ::-1])
        return out if dtype is None else out.astype(dtype)


def _apply_lut(labels: np.ndarray, lut: np.ndarray, rows: int = 32) -> np.ndarray:
    """``lut[labels]`` a slab at a time (no full-size index temporary)."""
    out = np.empty_like(labels)
    for a in range(0, labels.shape[0], rows):
        out[a : a + rows] = lut[labels[a : a + rows]]
    return out


def _paint(out: np.ndarray, mask: PackedMask, value: int, rows: int = 32) -> None:
    for a in range(0, out.shape[0], rows):
        out[a : a + rows][mask.rows(a, a + rows)] = value


def _output_masks(masks: dict[str, PackedMask], labels: Mapping[str, int]) -> dict[str, PackedMask]:
    """The binary parts' own masks (unfused, overlaps kept) under the output names."""
    return {organ: m for organ, m in masks.items() if organ in labels}


def load_model(model_dir: str | Path, options: ModelOptions | None = None):  # noqa: ANN201
    """The model a local folder holds: an installed model set, or one model folder."""
    options = options if options is not None else ModelOptions()
    from orgseg.models.store import SET_MANIFEST

    if (Path(model_dir) / SET_MANIFEST).exists():
        return ModelSet(model_dir, options)
    if options.classes != "native":
        raise ConfigError(
            "--classes orgseg applies to model sets (orgseg models list); an orgseg model "
            "folder already writes catalog organs"
        )
    return SegmentationModel(model_dir, options)
