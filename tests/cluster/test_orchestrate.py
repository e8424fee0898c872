"""The job plan, sbatch text (golden), dry-run and status, without a cluster."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from orgseg.cli import main
from orgseg.config import ClusterConfig, StageResources, load_run_config
from orgseg.errors import ConfigError
from orgseg.orchestrate import dependency_of, gpu_hours, plan_text, render_sbatch
from orgseg.pipeline.units import all_jobs, pending_jobs

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


def _config(tmp_path, **cluster):
    config = load_run_config((ROOT / "jobs" / "ci.yaml").read_text())
    two_folds = dataclasses.replace(config.strategy1_training, folds=(0, 1))
    return dataclasses.replace(
        config,
        run_root=str(tmp_path / "run"),
        data_root=str(tmp_path / "data"),
        strategy1_training=two_folds,
        strategy2_training=dataclasses.replace(config.strategy2_training, folds=(0, 1)),
        cluster=ClusterConfig(**cluster),
    )


def test_the_dag_has_one_unit_per_organ_fold_shard_and_fold(tmp_path):
    jobs = {j.name: j for j in all_jobs(_config(tmp_path))}
    assert list(jobs) == [
        "cases",
        "strategy1-data",
        "strategy1-train",
        "pseudo-labels",
        "fusion",
        "strategy2-train",
        "evaluate",
    ]
    assert jobs["strategy1-train"].units == (("liver", 0), ("liver", 1), ("lungs", 0), ("lungs", 1))
    assert jobs["strategy2-train"].units == ((0,), (1,))
    assert jobs["fusion"].after == ("pseudo-labels",)
    # nothing committed yet: everything is pending, chained as above
    assert [j.name for j in pending_jobs(_config(tmp_path))] == list(jobs)


def test_sbatch_text_matches_the_golden_file(tmp_path):
    resources = StageResources(
        partition="gpu",
        gpus_per_node=1,
        cpus_per_task=8,
        mem_gb=30,
        timeout_min=720,
        account="radonc",
        qos="normal",
        array_parallelism=16,
        container="apptainer exec --nv /images/orgseg.sif",
    )
    job = next(j for j in all_jobs(_config(tmp_path)) if j.name == "strategy1-train")
    text = render_sbatch(
        job,
        resources,
        folder="/shared/orgseg-jobs/strategy1-train",
        dependency=dependency_of(["101", "99"]),
    )
    golden = GOLDEN / "strategy1-train.sbatch"
    if os.environ.get("ORGSEG_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    for line in (
        "#SBATCH --array=0-3%4",  # 4 units; at most 16 at once
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --dependency=afterok:99:101",
        "#SBATCH --partition=gpu",
    ):
        assert line in text
    assert "apptainer exec --nv /images/orgseg.sif python3 -u -m submitit.core._submit" in text


def test_dry_run_prints_the_plan_and_gpu_hours(tmp_path, capsys):
    reference = load_run_config((ROOT / "jobs" / "reference.yaml").read_text())
    jobs = {j.name: j for j in all_jobs(reference)}
    assert len(jobs["strategy1-train"].units) == 26 * 5
    assert len(jobs["strategy2-train"].units) == 5
    # 130 units x 2000 epochs x epoch_seconds
    expected = 130 * 2000 * reference.cluster.epoch_seconds / 3600
    assert gpu_hours(reference, jobs["strategy1-train"]) == pytest.approx(expected)
    text = plan_text(reference, list(jobs.values()))
    assert "strategy1-train" in text and "array x130" in text and "estimated GPU hours" in text

    import yaml

    data = yaml.safe_load((ROOT / "jobs" / "reference.yaml").read_text())
    data.update(run_root=str(tmp_path / "run"), data_root=str(tmp_path / "data"))
    del data["storage"]  # a local run root: what is done is read from it
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["train-all", "-c", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "array x130" in out and "afterok" not in out  # the plan, nothing submitted


def test_unknown_stage_resources_and_credentials_are_refused(tmp_path):
    text = (ROOT / "jobs" / "ci.yaml").read_text()
    with pytest.raises(ConfigError, match="unknown jobs"):
        load_run_config(text + "cluster:\n  stages:\n    strategy3-train: {}\n")
    with pytest.raises(ConfigError, match="secret_access_key"):
        load_run_config(text + "storage:\n  secret_access_key: abc\n")


@pytest.mark.parametrize("profile", sorted((ROOT / "jobs" / "profiles").glob("*.yaml")))
def test_resource_profiles_load_into_a_run_config(profile, tmp_path):
    import yaml

    from orgseg.config import parse_run_config

    data = yaml.safe_load((ROOT / "jobs" / "ci.yaml").read_text())
    data["cluster"] = yaml.safe_load(profile.read_text())["cluster"]
    config = parse_run_config(data)
    assert config.cluster.executor == "slurm"
    train = config.cluster.resources("strategy1-train")
    assert train.gpus_per_node == 1 and train.timeout_min > 0
