"""Layout patterns: matching, rendering and validation (orgseg/sources/layout.py)."""

from __future__ import annotations

import pytest

from orgseg.errors import ConfigError
from orgseg.sources.layout import Layout, match_image, render, validate_layout
from orgseg.sources.registry import builtin_registry, load_registry


@pytest.mark.parametrize(
    ("source", "path", "case_id", "label"),
    [
        ("totalsegmentator", "s0011/ct.nii.gz", "s0011", "s0011/segmentations"),
        (
            "lits",
            "Training Batch 2/volume-57.nii",
            "lits_57",
            "Training Batch 2/segmentation-57.nii",
        ),
        (
            "kits19",
            "data/case_00042/imaging.nii.gz",
            "case_00042",
            "data/case_00042/segmentation.nii.gz",
        ),
        (
            "ct_org",
            "OrganSegmentations/volume-12.nii.gz",
            "ctorg_12",
            "OrganSegmentations/labels-12.nii.gz",
        ),
        (
            "msd_task07_pancreas",
            "imagesTr/pancreas_001.nii.gz",
            "pancreas_001",
            "labelsTr/pancreas_001.nii.gz",
        ),
        (
            "verse",
            "dataset-01training/rawdata/sub-verse500/sub-verse500_dir-ax_ct.nii.gz",
            "sub-verse500_dir-ax",
            "dataset-01training/derivatives/sub-verse500/sub-verse500_dir-ax_seg-vert_msk.nii.gz",
        ),
        (
            "verse",
            "dataset-verse19training/rawdata/sub-verse004/sub-verse004_ct.nii.gz",
            "sub-verse004",
            "dataset-verse19training/derivatives/sub-verse004/sub-verse004_seg-vert_msk.nii.gz",
        ),
        (
            "abdomenatlas",
            "BDMAP_00001234/ct.nii.gz",
            "BDMAP_00001234",
            "BDMAP_00001234/segmentations",
        ),
        (
            "abdomenct_1k",
            "Image/Case_00007_0000.nii.gz",
            "abdomenct1k_00007",
            "Mask/Case_00007.nii.gz",
        ),
        ("amos22", "imagesVa/amos_0499.nii.gz", "amos_0499", "labelsVa/amos_0499.nii.gz"),
    ],
)
def test_builtin_layouts_read_release_paths(source, path, case_id, label):
    layout = builtin_registry()[source].layout
    values = match_image(layout, path)
    assert values is not None
    assert render(layout.case_id, values) == case_id
    assert render(layout.label, values) == label


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("msd_task03_liver", "imagesTr/._liver_0.nii.gz"),  # macOS AppleDouble
        ("msd_task03_liver", "__MACOSX/imagesTr/liver_0.nii.gz"),
        ("msd_task03_liver", "imagesTs/liver_140.nii.gz"),  # unlabelled test images
        ("msd_task03_liver", "imagesTr/liver_0.json"),
        ("amos22", "imagesTr/amos_0507.nii.gz"),  # MRI
        ("amos22", "imagesTs/amos_0002.nii.gz"),
        ("abdomenct_1k", "Mask/Case_00007.nii.gz"),  # a label, not an image
        ("verse", "dataset-verse19training/derivatives/sub-verse004/sub-verse004_ct.nii.gz"),
        ("totalsegmentator", "s0011/segmentations/liver.nii.gz"),
        ("abdomenatlas", "BDMAP_00000001/combined_labels.nii.gz"),
    ],
)
def test_builtin_layouts_skip_what_is_not_a_case_image(source, path):
    assert match_image(builtin_registry()[source].layout, path) is None


def test_the_default_layout_is_nnunet_raw_with_or_without_a_channel_suffix():
    lay = Layout()
    assert render(lay.case_id, match_image(lay, "imagesTr/la_003_0000.nii.gz")) == "la_003"
    assert render(lay.case_id, match_image(lay, "imagesTr/la_003.nrrd")) == "la_003"
    assert render(lay.label, match_image(lay, "imagesTr/la_003.nrrd")) == "labelsTr/la_003.nrrd"


def test_repeated_placeholders_must_match_the_same_text():
    lay = Layout(image="{sub}/{sub}_ct.nii.gz", label="{sub}/seg.nii.gz", case_id="{sub}")
    assert match_image(lay, "a/a_ct.nii.gz") == {"sub": "a"}
    assert match_image(lay, "a/b_ct.nii.gz") is None


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (Layout(image="{case}.nii.gz", label="{other}.nii.gz"), "does not match"),
        (Layout(image="{case}.nii.gz", label="l/{case}", case_id="x"), "no placeholder"),
        (Layout(image="{case.nii.gz"), "unclosed"),
        (Layout(image="{1x}.nii.gz", case_id="{1x}"), "needs a name"),
        (Layout(image="{case:(}.nii.gz"), "not valid"),
    ],
)
def test_bad_layouts_are_explained(layout, message):
    with pytest.raises(ConfigError, match=message):
        validate_layout(layout, "test")


def test_a_new_dataset_is_yaml_not_code():
    reg = load_registry(
        r"""
sources:
  mysite:
    description: in-house, one folder per patient
    layout:
      image: 'patients/{pid:P\d+}/ct{ext}'
      label: 'patients/{pid}/organs{ext}'
      case_id: 'mysite_{pid}'
    labels: {liver: 1, spleen: 2}
"""
    )
    lay = reg["mysite"].layout
    values = match_image(lay, "patients/P17/ct.nii")
    assert render(lay.case_id, values) == "mysite_P17"
    assert render(lay.label, values) == "patients/P17/organs.nii"
    assert load_registry(reg.to_yaml())["mysite"] == reg["mysite"]
    with pytest.raises(ConfigError, match="layout.kind"):
        load_registry("sources: {a: {format: rtstruct, roi_names: {liver: [Liver]}}}")
