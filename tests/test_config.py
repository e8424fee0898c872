from __future__ import annotations

from pathlib import Path

import pytest

from orgseg.config import load_run_config
from orgseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_jobs_configs_parse():
    demo = load_run_config((ROOT / "jobs" / "demo.yaml").read_text())
    assert demo.strategy1_training.folds == (0,)
    assert set(demo.strategy2_organs) <= set(demo.strategy1_organs)
    assert len(demo.strategy2_organs) >= 4


def test_reference_config_names_release_folders():
    from orgseg.config import source_folders

    ref = load_run_config((ROOT / "jobs" / "reference.yaml").read_text())
    folders = source_folders(ref)
    assert folders["totalsegmentator"] == "s3://my-bucket/ct-sources/Totalsegmentator_dataset_v201"
    assert folders["paediatric"].endswith("/Pediatric-CT-SEG")
    assert isinstance(ref.exclude, str) and ref.exclude.endswith("excluded.txt")


def test_sources_as_a_list_or_a_mapping_and_exclusions_in_three_forms(tmp_path):
    from orgseg.config import source_folders
    from orgseg.pipeline.exclusions import load_exclusions

    listed = load_run_config("run_root: r\ndata_root: /data\nsources: [lits, kits19]\n")
    assert source_folders(listed) == {"lits": "/data/lits", "kits19": "/data/kits19"}
    mapped = load_run_config(
        "run_root: r\ndata_root: /data\nsources:\n  lits: LiTS/\n  verse: s3://b/VerSe\n"
        "exclude: [a, b]\n"
    )
    assert source_folders(mapped) == {"lits": "/data/LiTS", "verse": "s3://b/VerSe"}
    assert load_exclusions(mapped) == {"a": "excluded in the config", "b": "excluded in the config"}
    with_reasons = load_run_config("run_root: r\ndata_root: d\nexclude: {s0001: 'metal'}\n")
    assert load_exclusions(with_reasons) == {"s0001": "metal"}
    listing = tmp_path / "ex.txt"
    listing.write_text("# reviewed 2026-11\ns0002 # cut off at the liver dome\n\ns0003\n")
    from_file = load_run_config(f"run_root: r\ndata_root: d\nexclude: {listing}\n")
    assert load_exclusions(from_file) == {
        "s0002": "cut off at the liver dome",
        "s0003": f"listed in {listing}",
    }
    missing = load_run_config("run_root: r\ndata_root: d\nexclude: /nope.txt\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_exclusions(missing)


def test_an_unknown_source_name_lists_the_registered_ones(tmp_path):
    from orgseg.pipeline.manifest import build_manifest

    config = load_run_config(
        f"run_root: {tmp_path / 'run'}\ndata_root: {tmp_path}\nsources: {{totalseg: TS}}\n"
    )
    with pytest.raises(ConfigError, match="registered sources are .*totalsegmentator"):
        build_manifest(config)


def test_defaults_are_the_reference_setup():
    c = load_run_config("run_root: r\ndata_root: d\n")
    assert len(c.strategy1_organs) == 26 and len(c.strategy2_organs) == 19
    assert c.strategy1_training.epochs == 2000 and c.strategy1_training.folds == (0, 1, 2, 3, 4)
    assert c.nnunet.configuration == "3d_fullres"


def test_the_runs_engine_batches_two_tiles_and_a_partial_section_keeps_that():
    from orgseg.inference.options import DEFAULTS

    base = "run_root: r\ndata_root: d\n"
    assert load_run_config(base).inference.tile_batch == 2
    assert DEFAULTS.tile_batch == 1  # orgseg segment: stock nnU-Net bit for bit
    partial = load_run_config(base + "inference: {chunk_mm: 100}\n").inference
    assert (partial.chunk_mm, partial.tile_batch, partial.overlap_mm) == (100.0, 2, 50.0)
    assert load_run_config(base + "inference: {tile_batch: 1}\n").inference.tile_batch == 1
    with pytest.raises(ConfigError, match=r"inference: unknown key\(s\) \['tile'\]"):
        load_run_config(base + "inference: {tile: 1}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run_root: r\n", "missing required key 'data_root'"),
        ("run_root: r\ndata_root: d\nepochs: 3\n", "valid keys are"),
        ("run_root: r\ndata_root: d\nstrategy1_training: {epoch: 3}\n", "epochs"),
        ("run_root: r\ndata_root: d\nstrategy1_training: {epochs: three}\n", "integer"),
        ("run_root: r\ndata_root: d\nstrategy1_organs: [livr]\n", "unknown organ"),
        (
            "run_root: r\ndata_root: d\nstrategy1_organs: [liver]\nstrategy2_organs: [spleen]\n",
            "not in strategy1_organs",
        ),
        ("run_root: r\ndata_root: d\nstrategy1_training: {folds: [5]}\n", "folds"),
        ("run_root: r\ndata_root: d\nnnunet: {device: tpu}\n", "one of"),
        ("run_root: r\ndata_root: d\nnnunet: {features_scale: 2}\n", "features_scale"),
        ("run_root: [\n", "YAML"),
    ],
)
def test_bad_configs_are_explained(text, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(text)
