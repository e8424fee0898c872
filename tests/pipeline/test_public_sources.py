"""The `cases` stage on replicas of every public release layout (tests/sources/replicas.py):
each dataset ingests from its own folder and file names with only a folder named in the
config, every manual mask lands on its organ's voxels, broken cases are excluded with
their reason, and the run goes on."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from orgseg.config import RunConfig
from orgseg.io import read_volume
from orgseg.pipeline.cases import load_manual_masks
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.manifest import build_manifest


@pytest.fixture(scope="module")
def releases(public_releases):
    return public_releases


def _config(root, run, reps, **kw) -> RunConfig:
    return RunConfig(
        run_root=str(run),
        data_root=str(root),
        sources={name: rep.folder.name for name, rep in reps.items()},
        **kw,
    )


@pytest.fixture(scope="module")
def ingested(releases, tmp_path_factory):
    root, reps = releases
    config = _config(root, tmp_path_factory.mktemp("run"), reps)
    return config, build_manifest(config), reps


def test_every_release_ingests_from_its_own_layout(ingested):
    config, manifest, reps = ingested
    by_source = Counter(c.source for c in manifest.cases)
    for name, rep in reps.items():
        assert by_source[name] == len(rep.expected), name
    ids = {c.case_id for c in manifest.cases}
    expected_ids = {cid for rep in reps.values() for cid in rep.expected}
    assert ids == expected_ids
    # hidden AppleDouble files, unlabelled test images and MRI ids are not cases
    assert not any(i.startswith("._") for i in ids)
    assert "case_00210" not in ids and "amos_0507" not in ids and "amos_0002" not in ids
    assert "liver_9" not in ids


def test_each_manual_mask_lands_on_its_organs_voxels(ingested):
    config, manifest, reps = ingested
    layout = RunLayout.of(config)
    checked = 0
    for rep in reps.values():
        for case_id, expected in rep.expected.items():
            record = manifest.case(case_id)
            ct = np.asarray(read_volume(layout.cropped_ct(case_id)).array)
            masks = load_manual_masks(layout, case_id)
            assert set(record.manual_organs) == set(expected), case_id
            for organ, hu in expected.items():
                got = Counter(ct[masks[organ]].tolist())
                assert got == hu, (case_id, organ, got, hu)
                checked += 1
    assert checked > 60


def test_broken_cases_are_excluded_with_their_reason(ingested):
    config, manifest, reps = ingested
    excluded = {e.case_id: e for e in manifest.excluded}
    broken = {cid: word for rep in reps.values() for cid, word in rep.broken.items()}
    assert set(excluded) == set(broken)
    for case_id, word in broken.items():
        assert word in excluded[case_id].reason, excluded[case_id]
    on_disk = json.loads(Path(RunLayout.of(config).manifest()).read_text())
    assert {e["case_id"] for e in on_disk["excluded"]} == set(broken)
    assert all(set(e) == {"case_id", "source", "image_url", "reason"} for e in on_disk["excluded"])


def test_totalsegmentator_official_split_and_seeded_splits(ingested):
    config, manifest, reps = ingested
    ts = reps["totalsegmentator"]
    ts_ids = {c.case_id for c in manifest.cases if c.source == "totalsegmentator"}
    assert set(manifest.test) & ts_ids == ts.official_test
    assert "s0042" in manifest.train  # meta.csv's 'val' is cross-validation data
    assert set(manifest.test) | set(manifest.train) == {c.case_id for c in manifest.cases}


def test_records_keep_provenance(ingested):
    config, manifest, reps = ingested
    ped = manifest.case("Pediatric-CT-SEG-00DAFF3B")
    assert ped.series_uid and ped.image_url.endswith("2.000000-CT-0")
    assert ped.label_url.endswith("1-1.dcm") and len(ped.label_sha256) == 64
    assert "Tumor" in ped.unmapped_labels
    assert manifest.case("ctorg_140").unmapped_labels == (7,)
    amos = manifest.case("amos_0001")
    assert amos.unmapped_labels == ()  # 9 (vena cava) is a known, unused label
    lits = manifest.case("lits_28")
    assert lits.label_url.endswith("Training Batch 2/segmentation-28.nii")


def test_config_exclusions_from_a_list_or_a_file(releases, tmp_path):
    root, reps = releases
    subset = {k: reps[k] for k in ("lits", "msd_task09_spleen")}
    config = _config(root, tmp_path / "run", subset, exclude=("lits_0",))
    m = build_manifest(config)
    assert "lits_0" not in {c.case_id for c in m.cases}
    (ex,) = [e for e in m.excluded if e.case_id == "lits_0"]
    assert "excluded by the config" in ex.reason
    # the same run with a file of exclusions (reasons after '#'): the manifest is rebuilt
    listing = tmp_path / "exclude.txt"
    listing.write_text("spleen_3  # motion artefact on visual review\nlits_28\n")
    m2 = build_manifest(_config(root, tmp_path / "run", subset, exclude=str(listing)))
    reasons = {e.case_id: e.reason for e in m2.excluded}
    assert "motion artefact on visual review" in reasons["spleen_3"]
    assert "lits_28" in reasons and "lits_0" in {c.case_id for c in m2.cases}


def test_hostile_header_and_air_scan_are_excluded_by_the_cases_stage(tmp_path):
    """The training reader is the inference reader: both awkward files are exclusions."""
    import shutil

    from orgseg.core.volume import Volume
    from orgseg.io import write_volume
    from orgseg.sources.registry import builtin_registry
    from tests.io.test_hardening import hostile_nifti
    from tests.sources import replicas

    rep = replicas.msd(tmp_path, builtin_registry(), "Task09_Spleen", "msd_task09_spleen", [1])
    images, labels = rep.folder / "imagesTr", rep.folder / "labelsTr"
    hostile_nifti(images / "spleen_50.nii.gz")
    shutil.copy(labels / "spleen_0.nii.gz", labels / "spleen_50.nii.gz")
    air = Volume(np.full(replicas.SHAPE, -1000, np.int16), spacing_mm=replicas.SPACING_MM)
    write_volume(air, str(images / "spleen_51.nii.gz"))
    shutil.copy(labels / "spleen_0.nii.gz", labels / "spleen_51.nii.gz")
    m = build_manifest(
        RunConfig(
            run_root=str(tmp_path / "run"),
            data_root=str(tmp_path),
            sources={"msd_task09_spleen": "Task09_Spleen"},
        )
    )
    reasons = {e.case_id: e.reason for e in m.excluded}
    assert "claims a grid" in reasons["spleen_50"]
    assert "no patient found" in reasons["spleen_51"]
    assert {c.case_id for c in m.cases} == {"spleen_0", "spleen_3"}


def test_orgseg_run_cases_builds_the_run_layout_with_one_summary_line(releases, tmp_path, caplog):
    import logging

    from orgseg.cli import main

    root, reps = releases
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"run_root: {tmp_path / 'run'}\ndata_root: {root}\nsources:\n"
        f"  lits: {reps['lits'].folder.name}\n  paediatric: {reps['paediatric'].folder.name}\n"
    )
    with caplog.at_level(logging.INFO, logger="orgseg"):
        assert main(["run", "cases", "-c", str(cfg)]) == 0
        # the shard committed one record per case, and the exclusion with its reason
        assert (tmp_path / "run" / "cases" / "lits_29.excluded.json").exists()
        assert not (tmp_path / "run" / "manifest.json").exists()
        assert main(["run", "manifest", "-c", str(cfg)]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert set(manifest) >= {"cases", "train", "test", "excluded"}
    for case in manifest["cases"]:
        cid = case["case_id"]
        for name in (f"{cid}.json", f"{cid}_ct.nii.gz", f"{cid}_manual.npz"):
            assert (tmp_path / "run" / "cases" / name).exists()
    (line,) = [r.getMessage() for r in caplog.records if " cases, " in r.getMessage()]
    assert line.startswith("cases: 4 cases, 2 excluded: ")
    assert "lits_29 (" in line and "Pediatric-CT-SEG-0BADCAFE (" in line
