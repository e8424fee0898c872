"""The model-set registry: built-in entries as data, user entries, their checks."""

from __future__ import annotations

import pytest

from orgseg.catalog import ORGANS
from orgseg.errors import ConfigError
from orgseg.models.registry import FROM_DATASET_JSON, folder_matches, model_registry


def test_builtin_sets_describe_the_published_models():
    reg = model_registry()
    total = reg["totalsegmentator-total"]
    assert len(total.classes) == 117 and len(set(total.classes)) == 117
    assert [p.folder.split("_")[0] for p in total.parts] == [
        f"Dataset{i}" for i in (291, 292, 293, 294, 295)
    ]
    # every part's classes are the set's, and together they are all of them once
    labels = [name for p in total.parts for name in p.labels]
    assert sorted(labels) == sorted(total.classes)
    assert total.merge == "overwrite" and total.licence == "Apache-2.0"
    assert total.inference.tile_step_size == 0.8 and total.inference.folds == (0,)
    assert total.inference.orientation == "RAS" and total.inference.mirroring is False
    assert all("nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres" in p.folder for p in total.parts)
    assert total.archive_url(total.parts[0]).endswith(
        "/v2.0.0-weights/Dataset291_TotalSegmentator_part1_organs_1559subj.zip"
    )
    fast = reg["totalsegmentator-total-fast"]
    assert fast.parts[0].folder.startswith("Dataset297_") and fast.parts[0].labels == total.classes
    # only the openly licensed TotalSegmentator tasks
    assert [n for n in reg.names() if n.startswith("totalsegmentator")] == [
        "totalsegmentator-total", "totalsegmentator-total-fast",
    ]  # fmt: skip
    organs = reg["moose-clin-ct-organs"]
    assert organs.parts[0].folder.startswith("Dataset123_Organs/")
    assert organs.parts[0].labels == FROM_DATASET_JSON and organs.licence == "CC-BY-4.0"
    ref1 = reg["salimi2025-strategy1"]
    assert ref1.merge == "priority" and not ref1.fetchable and "import" in ref1.manual
    assert sorted(p.organ for p in ref1.parts) == sorted(ORGANS)
    assert reg["salimi2025-strategy2"].merge == "single"


@pytest.mark.parametrize(
    ("native", "organ"),
    [
        ("lung_upper_lobe_left", "lungs"),
        ("vertebrae_C1", "vertebrae"),
        ("vertebrae_S1", "vertebrae"),
        ("kidney_left", "kidneys"),
        ("clavicula_right", "clavicles"),
        ("rib_right_12", "ribs"),
        ("liver", "liver"),
        ("femur_left", None),  # a whole femur is not the catalog's femoral head
        ("pulmonary_vein", None),
    ],
)
def test_native_names_map_onto_the_catalog(native, organ):
    assert model_registry().catalog_organ(native) == organ


def test_a_user_entry_adds_a_set_without_code(tmp_path, monkeypatch):
    extra = tmp_path / "mine.yaml"
    extra.write_text(
        "model_sets:\n"
        "  my-liver:\n"
        "    description: our liver model\n"
        "    licence: internal\n"
        "    parts:\n"
        "      - {folder: Dataset500_Liver/*__3d_fullres, archive: s3://models/liver.zip}\n"
    )
    monkeypatch.setenv("ORGSEG_MODEL_REGISTRY", str(extra))
    reg = model_registry()
    assert "my-liver" in reg and "totalsegmentator-total" in reg
    entry = reg["my-liver"]
    assert entry.merge == "single" and entry.archive_url(entry.parts[0]) == "s3://models/liver.zip"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  x:\n    parts: []\n", "at least one part"),
        ("  x:\n    colour: red\n    parts: [{folder: a}]\n", "unknown key(s) ['colour']"),
        ("  x:\n    parts: [{folder: a}, {folder: b}]\n", "merge 'single' needs one part"),
        ("  x:\n    merge: priority\n    parts: [{folder: a}]\n", "each naming its organ"),
        ("  x:\n    classes: [a]\n    parts: [{folder: a, labels: [b]}]\n", "not among"),
        ("  x:\n    parts: [{folder: a, archive: a.zip}]\n", None),
    ],
)
def test_bad_entries_are_refused_with_the_reason(tmp_path, body, message):
    extra = tmp_path / "bad.yaml"
    extra.write_text("model_sets:\n" + body)
    if message is None:  # a relative archive without url_base: refused when it is used
        entry = model_registry(extra)["x"]
        with pytest.raises(ConfigError, match="no url_base"):
            entry.archive_url(entry.parts[0])
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):  # fmt: skip
        model_registry(extra)


def test_catalog_names_must_name_catalog_organs(tmp_path):
    extra = tmp_path / "bad.yaml"
    extra.write_text("catalog_names:\n  lobe_*: lung\n")
    with pytest.raises(ConfigError, match="not a catalog organ"):
        model_registry(extra)


def test_unknown_set_names_the_known_ones():
    with pytest.raises(ConfigError, match="totalsegmentator-total"):
        model_registry()["totalsegmentator"]


def test_folder_patterns_ignore_case_and_dash_or_underscore():
    assert folder_matches("Dataset*_liver-binary/*", "Dataset804_Liver-binary/nnUNetTrainer__x")
    assert folder_matches("Dataset*_small_bowel-binary/*", "Dataset8_Small-Bowel-binary/t")
    assert not folder_matches("Dataset*_liver-binary/*", "Dataset804_Lungs-binary/t")
