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


def test_a_stage_override_keeps_the_defaults_other_fields():
    cfg = load_run_config(
        """
run_root: r
data_root: d
cluster:
  default: {partition: cpu, account: lab, qos: normal, container: apptainer exec x.sif}
  stages:
    strategy1-train: {gpus_per_node: 1}
    bulk: {partition: null, timeout_min: 240}
"""
    )
    train = cfg.cluster.resources("strategy1-train")
    assert train.gpus_per_node == 1
    assert (train.partition, train.account, train.qos) == ("cpu", "lab", "normal")
    assert train.container == "apptainer exec x.sif"  # still runs inside its image
    bulk = cfg.cluster.resources("bulk")
    assert bulk.partition is None and bulk.timeout_min == 240 and bulk.account == "lab"
    assert cfg.cluster.resources("cases") == cfg.cluster.default


@pytest.mark.parametrize("text", ["cluster:\n", "cluster: null\n", "", "run_root: r\n"])
def test_an_empty_cluster_profile_is_the_defaults(tmp_path, text):
    from orgseg.config import ClusterConfig, load_cluster_profile

    profile = tmp_path / "p.yaml"
    profile.write_text(text)
    assert load_cluster_profile(str(profile)) == ClusterConfig()
    assert load_cluster_profile(None) == ClusterConfig()


def test_a_bad_cluster_profile_is_explained(tmp_path):
    from orgseg.config import load_cluster_profile

    profile = tmp_path / "p.yaml"
    profile.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping with a cluster: section"):
        load_cluster_profile(str(profile))
    profile.write_text("cluster:\n  stages:\n    bulk: {gpus: 1}\n")
    with pytest.raises(ConfigError, match=r"cluster.stages.bulk: unknown key\(s\) \['gpus'\]"):
        load_cluster_profile(str(profile))


def test_every_shipped_profile_loads():
    from orgseg.config import load_cluster_profile

    for profile in sorted((ROOT / "jobs" / "profiles").glob("*.yaml")):
        cluster = load_cluster_profile(str(profile))
        assert cluster.executor in ("slurm", "awsbatch")
        # the profiles' stages are overrides: a stage left without a container is on purpose
        for name, r in cluster.stages.items():
            assert r.mem_gb > 0 and r.timeout_min > 0, (profile.name, name)


@pytest.mark.parametrize("key", ["body_crop", "body_margin_mm"])
def test_inference_crop_keys_are_refused_and_follow_body_crop(key):
    base = "run_root: r\ndata_root: d\n"
    with pytest.raises(ConfigError, match=r"set body_crop\.(enabled|margin_mm) instead"):
        load_run_config(base + f"inference: {{{key}: 0}}\n")
    cfg = load_run_config(base + "body_crop: {enabled: false, margin_mm: 25}\n")
    assert (cfg.inference.body_crop, cfg.inference.body_margin_mm) == (False, 25.0)
    from orgseg.pipeline.organ_masks import run_engine_options

    assert run_engine_options(cfg) == cfg.inference
    assert cfg.inference.tile_batch == 2  # the rest of the run's engine is untouched


def test_a_run_config_round_trips_through_its_plain_data():
    from orgseg.config import parse_run_config, run_config_data

    demo = load_run_config((ROOT / "jobs" / "demo.yaml").read_text())
    custom = load_run_config(
        "run_root: r\ndata_root: d\nbody_crop: {margin_mm: 15}\n"
        "cluster:\n  stages:\n    bulk: {gpus_per_node: 1}\n"
    )
    for cfg in (demo, custom):
        assert parse_run_config(run_config_data(cfg)) == cfg
