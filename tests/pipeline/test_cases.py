from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from orgseg.config import RunConfig
from orgseg.core.crop import crop
from orgseg.core.orientation import to_canonical
from orgseg.io import load_ct, read_volume
from orgseg.pipeline.cases import load_manual_masks
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.manifest import build_manifest
from orgseg.pipeline.phantom_set import PhantomSetConfig, write_phantom_set


@pytest.fixture(scope="module")
def phantom_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_phantom_set(str(root), PhantomSetConfig(n_sources=3, n_cases=4, seed=5))
    return root


def config_for(data, run, **kw) -> RunConfig:
    organs = ("heart", "kidneys", "liver", "lungs", "spleen")
    return RunConfig(
        run_root=str(run),
        data_root=str(data),
        strategy1_organs=organs,
        strategy2_organs=("heart", "liver", "lungs", "spleen"),
        **kw,
    )


def test_manifest_splits_per_source_and_honours_official_tests(phantom_data, tmp_path):
    config = config_for(phantom_data, tmp_path / "run")
    m = build_manifest(config)
    assert len(m.cases) == 12
    assert not set(m.test) & set(m.train)
    assert set(m.test) | set(m.train) == {c.case_id for c in m.cases}
    official = (phantom_data / "phantom_src1" / "test_cases.txt").read_text().split()
    assert [t for t in m.test if t.startswith("phantom_src1")] == official
    for src in ("phantom_src2", "phantom_src3"):  # 10% of 4 cases -> one held out
        assert sum(t.startswith(src) for t in m.test) == 1
    # same seed, fresh run -> same split; another seed -> a recorded different manifest
    again = build_manifest(config_for(phantom_data, tmp_path / "run2"))
    assert (again.train, again.test) == (m.train, m.test)


def test_case_records_hash_crop_and_masks(phantom_data, tmp_path):
    config = config_for(phantom_data, tmp_path / "run")
    m = build_manifest(config)
    layout = RunLayout.of(config)
    meta = json.loads((phantom_data / "phantoms.json").read_text())
    case = m.case("phantom_src2_000")
    assert case.image_sha256 == hashlib.sha256(Path(case.image_url).read_bytes()).hexdigest()
    ct, _ = load_ct(case.image_url)
    cropped = read_volume(layout.cropped_ct(case.case_id))
    np.testing.assert_array_equal(cropped.array, crop(np.asarray(ct.array), case.crop_box))
    assert np.prod(cropped.shape) < np.prod(ct.shape)
    # manual masks: exactly the organs the source labels (within the run's organs)
    masks = load_manual_masks(layout, case.case_id)
    assert set(masks) == set(case.manual_organs)
    truth, _ = to_canonical(
        read_volume(str(phantom_data / "ground_truth" / "phantom_src2_000.nii.gz"))
    )
    for organ, mask in masks.items():
        ref = crop(np.asarray(truth.array) == meta["label_ids"][organ], case.crop_box)
        np.testing.assert_array_equal(mask, ref)
    assert case.size_group in ("adult", "paediatric")


def test_duplicate_case_ids_across_sources_are_excluded_not_fatal(phantom_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(phantom_data, data)
    src = data / "phantom_src2" / "imagesTr" / "phantom_src2_000.nii.gz"
    shutil.copy(src, data / "phantom_src3" / "imagesTr" / "phantom_src2_000.nii.gz")
    shutil.copy(
        data / "phantom_src2" / "labelsTr" / "phantom_src2_000.nii.gz",
        data / "phantom_src3" / "labelsTr" / "phantom_src2_000.nii.gz",
    )
    m = build_manifest(config_for(data, tmp_path / "run"))
    assert len(m.cases) == 12  # the first one kept, the second excluded
    assert m.case("phantom_src2_000").source == "phantom_src2"
    (dup,) = m.excluded
    assert (dup.case_id, dup.source) == ("phantom_src2_000", "phantom_src3")
    assert "also a case of source 'phantom_src2'" in dup.reason
    on_disk = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert on_disk["excluded"][0]["reason"] == dup.reason
