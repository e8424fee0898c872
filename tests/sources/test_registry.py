from __future__ import annotations

import numpy as np
import pytest

from orgseg.catalog import ORGANS, STRATEGY1_ORGANS, STRATEGY2_LABELS, STRATEGY2_ORGANS, label_ids
from orgseg.core.labels import compose_label_map, masks_from_label_map
from orgseg.errors import ConfigError, DataContractError
from orgseg.sources.registry import builtin_registry, load_registry


def test_catalog_sizes_and_fixed_ids():
    assert len(STRATEGY1_ORGANS) == 26 and len(STRATEGY2_ORGANS) == 19
    assert set(STRATEGY2_ORGANS) <= set(ORGANS)
    assert STRATEGY2_LABELS["aorta"] == 1 and STRATEGY2_LABELS["heart"] == 19
    ids = label_ids(ORGANS)
    assert sorted(ids.values()) == list(range(1, 27))
    with pytest.raises(ConfigError, match="unknown organ"):
        label_ids(["kidney"])


def test_builtin_registry_entries():
    reg = builtin_registry()
    ts = reg["totalsegmentator"]
    assert ts.labels["kidneys"][:2] == (2, 3)
    assert ts.labels["lungs"] == (10, 11, 12, 13, 14)
    assert ts.labels["vertebrae"] == tuple(range(26, 51))
    assert ts.labels["ribs"] == tuple(range(92, 116))
    assert ts.labels["hips"] == (77, 78) and ts.labels["clavicles"] == (73, 74)
    assert ts.labels["adrenal_glands"] == (8, 9)
    assert "femur" in ts.notes["femoral_heads"]
    assert reg["ct_org"].labels["whole_bones"] == (5,)
    assert reg["kits19"].labels["kidneys"] == (1, 2)
    # VerSe: 1-25 C1..L6, 28 T13; 26 (sacrum) and 27 (coccyx) are not annotated there
    assert reg["verse"].labels["vertebrae"] == (*range(1, 26), 28)
    assert reg["verse"].unused_labels == (26, 27)
    assert reg["abdomenatlas"].format == "per_organ_files"
    assert reg["paediatric"].format == "rtstruct"
    with pytest.raises(ConfigError, match="registered sources"):
        reg["nope"]


def test_totalsegmentator_files_are_the_release_names_of_its_ids():
    """The per-structure file names of the v2.0.1 release and the `total` ids describe the
    same classes (training reads the files, evaluation of multi-label outputs the ids)."""
    from orgseg.sources.totalseg import TOTAL_CLASSES

    ts = builtin_registry()["totalsegmentator"]
    assert ts.format == "per_organ_files" and set(ts.files) == set(ts.labels)
    for organ, ids in ts.labels.items():
        assert sorted(ts.files[organ]) == sorted(f"{TOTAL_CLASSES[i]}.nii.gz" for i in ids)
    assert "kidney_cyst_left.nii.gz" in ts.files["kidneys"]
    assert len(ts.files["lungs"]) == 5 and len(ts.files["ribs"]) == 24


def test_totalsegmentator_mapping_on_real_labels(real_seg_path):
    from orgseg.io import read_volume

    seg = read_volume(str(real_seg_path)).array
    masks = masks_from_label_map(seg, builtin_registry()["totalsegmentator"].labels)
    assert masks["kidneys"].sum() == np.isin(seg, [2, 3, 23, 24]).sum() > 0
    assert masks["liver"].sum() == (seg == 5).sum()
    # vertebrae are part of whole bones
    assert np.all(masks["whole_bones"][masks["vertebrae"]])


def test_user_registry_extends_and_validates():
    extra = load_registry(
        """
sources:
  mysite:
    description: in-house
    labels: {liver: 1, kidneys: [2, 3], lungs: "4..5"}
"""
    )
    reg = builtin_registry().extended(extra)
    assert reg["mysite"].labels["lungs"] == (4, 5)
    assert reg["mysite"].organs == ("kidneys", "liver", "lungs")
    roundtrip = load_registry(reg.to_yaml())
    assert roundtrip["mysite"] == reg["mysite"]
    assert roundtrip["totalsegmentator"] == reg["totalsegmentator"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources: {a: {labels: {livr: 1}}}", "unknown organ"),
        ("sources: {a: {labels: {liver: 0}}}", "positive"),
        ("sources: {a: {labels: {liver: [1, 1]}}}", "repeats"),
        ("sources: {a: {format: rtstruct, labels: {liver: 1}}}", "roi_names"),
        ("sources: {a: {labels: {liver: 1}, colour: red}}", "valid keys are"),
        ("sources: {a: {labels: {liver: '3..x'}}}", "range"),
        ("sorces: {}", "single key 'sources'"),
        ("sources: [unclosed", "YAML"),
    ],
)
def test_invalid_registry_entries_are_explained(text, message):
    with pytest.raises(ConfigError, match=message):
        load_registry(text)


def test_compose_and_mask_round_trip():
    lm = np.array([[[0, 1, 2, 3, -1]]])
    masks = masks_from_label_map(lm, {"a": [1], "b": [2, 3]})
    out = compose_label_map(masks, {"a": 7, "b": 9})
    assert out.tolist() == [[[0, 7, 9, 9, 0]]]
    with pytest.raises(DataContractError, match="integer"):
        masks_from_label_map(np.array([[[0.5]]]), {"a": [1]})
