"""Model sets run through orgseg's engine equal nnU-Net's own predictor on the same folders
(TotalSegmentator's, MOOSE's and the reference study's released layouts, built from the
phantom model), merged the way each project merges them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orgseg.catalog import label_ids as catalog_ids
from orgseg.core.fusion import fuse_by_priority
from orgseg.core.volume import Volume
from orgseg.errors import ConfigError, DataContractError
from orgseg.inference.engine import EngineOptions
from orgseg.inference.model import ModelOptions, SegmentationModel
from orgseg.inference.model_set import ModelSet, load_model
from orgseg.models.registry import model_registry
from orgseg.models.store import SET_MANIFEST, import_set
from orgseg.phantoms import make_phantom
from tests.models import layouts
from tests.models.stock import label_names, stock_labels, stock_predictor

pytestmark = [pytest.mark.slow, pytest.mark.nnunet]


@pytest.fixture(scope="module")
def unseen():
    return make_phantom(shape=(64, 64, 64), spacing_mm=(8.0, 7.5, 7.5), seed=103)


@pytest.fixture(scope="module")
def ts_scan():
    """A phantom off TotalSegmentator's 1.5 mm grid (the set resamples it as TS does)."""
    return make_phantom(shape=(48, 64, 64), spacing_mm=(3.0, 3.0, 3.0), seed=105)


@pytest.fixture(scope="module")
def ts_set(ts_weights, tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("models")
    import_set(model_registry(), "totalsegmentator-total", ts_weights, str(models),
               allow_missing=False)  # fmt: skip
    return models / "totalsegmentator-total"


def _parts(set_dir: Path) -> list[Path]:
    manifest = json.loads((set_dir / SET_MANIFEST).read_text())
    return [set_dir / p["folder"] for p in manifest["parts"]]


def _stock_ras(folder: Path, ct: np.ndarray, spacing, **kw) -> np.ndarray:  # noqa: ANN001
    """nnU-Net on the scan in RAS voxel order (y and x reversed), mapped back."""
    flipped = np.ascontiguousarray(ct[:, ::-1, ::-1])
    return stock_labels(stock_predictor(folder, **kw), flipped, spacing)[:, ::-1, ::-1]


def test_totalsegmentator_layout_equals_its_pipeline_on_stock_nnunet(ts_set, ts_scan, caplog):
    """TotalSegmentator's own steps, written here with scipy and nnU-Net: the CT resampled
    to 1.5 mm (``ndimage.zoom`` order 1, cast to integers), each part by nnU-Net in RAS
    voxel order, merged by class name with a later part overwriting, and the labels zoomed
    back by nearest neighbour."""
    from scipy import ndimage

    entry = model_registry()["totalsegmentator-total"]
    model = ModelSet(ts_set)
    # the phantom parts predict on 8x7.5x7.5 mm, TotalSegmentator's on its 1.5 mm
    assert caplog.text.count("its set's authors on 1.5 mm") == 5
    assert model.native == {name: i + 1 for i, name in enumerate(entry.classes)}  # 117 ids
    assert all(p.model.predictor.plan.lean for p in model.parts)  # legacy plans, NoMirroring
    ct = Volume(ts_scan.ct_hu, spacing_mm=ts_scan.spacing_mm)
    seg = model.segment(ct, EngineOptions())
    body = seg.body
    assert body is not None and body.any()

    zoom = np.asarray(ts_scan.spacing_mm) / 1.5
    resampled = ndimage.zoom(ts_scan.ct_hu.astype(np.float64), zoom, order=1, mode="nearest")
    resampled = resampled.astype(np.int32)
    on_grid = np.zeros(resampled.shape, dtype=np.uint8)
    per_part = []
    for folder in _parts(ts_set):
        stock = _stock_ras(folder, resampled, (1.5, 1.5, 1.5), folds=(0,), step=0.8)
        names = label_names(folder)
        per_part.append({names[v] for v in np.unique(stock) if v})
        for value, name in names.items():
            on_grid[stock == value] = model.native[name]  # a later part overwrites
    back = ndimage.zoom(on_grid, np.asarray(ct.shape) / np.asarray(on_grid.shape), order=0,
                        mode="nearest")  # fmt: skip
    assert back.shape == ct.shape
    np.testing.assert_array_equal(seg.labels[body], back[body])
    assert not seg.labels[~body].any()
    # the fifth part predicts the third part's organ under its own name, and wins
    (third,), (fifth,) = per_part[2], per_part[4]
    assert model.native[fifth] in seg.labels and model.native[third] not in seg.labels
    assert len(set(np.unique(seg.labels).tolist()) - {0}) >= 3  # several parts contribute


def test_orgseg_classes_map_native_names_onto_the_catalog(ts_set, ts_scan):
    registry = model_registry()
    native = ModelSet(ts_set)
    mapped = ModelSet(ts_set, ModelOptions(classes="orgseg"))
    assert mapped.labels == catalog_ids(sorted(mapped.labels))
    for name, organ in [
        ("lung_upper_lobe_left", "lungs"),
        ("vertebrae_C1", "vertebrae"),
        ("vertebrae_S1", "vertebrae"),
        ("kidney_left", "kidneys"),
        ("liver", "liver"),
    ]:
        assert registry.catalog_organ(name) == organ, name
    ct = Volume(ts_scan.ct_hu, spacing_mm=ts_scan.spacing_mm)
    a = native.segment(ct, EngineOptions()).labels
    b = mapped.segment(ct, EngineOptions()).labels
    for name, nid in native.native.items():
        organ = registry.catalog_organ(name)
        want = mapped.labels[organ] if organ is not None else 0
        assert np.all(b[a == nid] == want), name
    assert np.all(b[a == 0] == 0)


def test_moose_layout_equals_stock_nnunet(phantom_model_dir, unseen, tmp_path):
    layouts.moose_organs(phantom_model_dir, tmp_path / "moose")
    import_set(model_registry(), "moose-clin-ct-organs", tmp_path / "moose",
               str(tmp_path / "m"), allow_missing=False)  # fmt: skip
    set_dir = tmp_path / "m" / "moose-clin-ct-organs"
    model = load_model(set_dir)
    assert isinstance(model, ModelSet)
    (folder,) = _parts(set_dir)
    assert model.labels == {"Heart": 1, "Liver": 2, "Lungs": 3, "Vertebrae": 4}
    ct = Volume(unseen.ct_hu, spacing_mm=unseen.spacing_mm)
    seg = model.segment(ct, EngineOptions())
    folds = tuple(int(p.name.split("_")[1]) for p in sorted(folder.glob("fold_*")))
    stock = _stock_ras(folder, unseen.ct_hu, unseen.spacing_mm, folds=folds, step=0.5)
    body = seg.body
    np.testing.assert_array_equal(seg.labels[body], stock[body])
    assert set(np.unique(stock[body]).tolist()) == {0, 1, 2, 3, 4}


def test_reference_binary_set_fuses_stock_masks_by_its_stated_order(
    phantom_model_dir, unseen, tmp_path
):
    drive = layouts.reference_strategy1(phantom_model_dir, tmp_path / "drive")
    import_set(model_registry(), "salimi2025-strategy1", drive, str(tmp_path / "m"),
               allow_missing=True)  # fmt: skip
    model = ModelSet(tmp_path / "m" / "salimi2025-strategy1")
    organs = [organ for _, organ, _ in layouts.REFERENCE_BINARY]
    assert sorted(model.labels) == sorted(organs)
    # no CV Dice in the set: the registry's order, its first organ the strongest claim
    stated = [p.organ for p in model.entry.parts if p.organ in organs]
    assert model.fusion == stated[::-1]
    assert model.description["fusion_order_weakest_first"] == stated[::-1]
    ct = Volume(unseen.ct_hu, spacing_mm=unseen.spacing_mm)
    seg = model.segment(ct, EngineOptions())
    body = seg.body
    masks = {}
    for folder in _parts(tmp_path / "m" / "salimi2025-strategy1"):
        (organ,) = label_names(folder).values()
        stock = stock_labels(stock_predictor(folder, mirroring=True), unseen.ct_hu,
                             unseen.spacing_mm)  # fmt: skip
        masks[organ] = (stock == 1) & body
        np.testing.assert_array_equal(seg.organ_masks[organ].unpack(), masks[organ])
    rank = {o: float(len(stated) - i) for i, o in enumerate(stated)}
    fused = fuse_by_priority(masks, catalog_ids(organs), manual=[], cv_dice=rank)
    np.testing.assert_array_equal(seg.labels, fused)
    assert model.labels == catalog_ids(organs)


def test_classes_orgseg_is_refused_for_a_plain_model_folder(phantom_model_dir):
    with pytest.raises(ConfigError, match="applies to model sets"):
        load_model(phantom_model_dir, ModelOptions(classes="orgseg"))
    assert isinstance(load_model(phantom_model_dir), SegmentationModel)


def test_a_registry_naming_fewer_classes_than_the_model_predicts_is_refused(
    phantom_model_dir, tmp_path, monkeypatch
):
    import yaml

    path = tmp_path / "reg.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model_sets": {
                    "two-names": {
                        "description": "a user's set",
                        "licence": "CC0",
                        "merge": "single",
                        "parts": [{"folder": "phantom", "labels": ["a", "b"]}],
                    }
                }
            }
        )
    )
    monkeypatch.setenv("ORGSEG_MODEL_REGISTRY", str(path))
    layouts.plain_copy(phantom_model_dir, tmp_path / "src" / "phantom")
    import_set(model_registry(), "two-names", tmp_path / "src", str(tmp_path / "m"),
               allow_missing=False)  # fmt: skip
    with pytest.raises(DataContractError, match="names 2 classes but the model predicts 4"):
        ModelSet(tmp_path / "m" / "two-names")
