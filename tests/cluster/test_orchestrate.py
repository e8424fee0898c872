"""The job plan, sbatch text (golden), dry-run and status, without a cluster."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from orgseg.cli import main
from orgseg.config import ClusterConfig, StageResources, load_run_config
from orgseg.errors import ConfigError
from orgseg.orchestrate.plan import plan
from orgseg.orchestrate.sbatch import dependency_of, job_resources, render_sbatch
from orgseg.pipeline.jobs import JOB_NAMES, JOBS, job
from orgseg.pipeline.units import marker_url, pending

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


def test_the_job_table_has_one_unit_per_organ_fold_shard_and_fold(tmp_path):
    config = _config(tmp_path)
    config = dataclasses.replace(config, shards={"cases": 3, "pseudo-labels": 2})
    assert JOB_NAMES == (
        "cases",
        "manifest",
        "strategy1-data",
        "strategy1-train",
        "pseudo-labels",
        "pseudo-qc",
        "cv-dice",
        "fusion",
        "strategy2-data",
        "strategy2-train",
        "strategy2-export",
        "test-predictions",
        "report",
    )
    units = {j.name: j.units(config) for j in JOBS}
    assert units["strategy1-train"] == (("liver", 0), ("liver", 1), ("lungs", 0), ("lungs", 1))
    assert units["strategy2-train"] == ((0,), (1,))
    # case-level jobs are arrays of (shard, count): named counts, else one shard per
    # cases_per_shard of the cases found (none here: one shard, recorded in the run)
    assert units["cases"] == ((0, 3), (1, 3), (2, 3))
    assert units["pseudo-labels"] == ((0, 2), (1, 2))
    assert units["fusion"] == ((0, 1),) and units["test-predictions"] == ((0, 1),)
    assert (tmp_path / "run" / "jobs" / "shards.json").exists()
    assert units["manifest"] == units["report"] == ((),)
    assert job("pseudo-qc").after == ("pseudo-labels",)
    assert job("fusion").after == ("pseudo-qc", "cv-dice")
    assert job("cv-dice").after == ("strategy1-train",)
    assert job("test-predictions").after == ("strategy2-export", "cv-dice")
    index = {name: i for i, name in enumerate(JOB_NAMES)}
    for j in JOBS:  # run order respects every dependency
        assert all(index[a] < index[j.name] for a in j.after), j.name
    # nothing committed yet: everything is pending, in run order
    assert [j.name for j, _ in pending(config)] == list(JOB_NAMES)


def test_committed_units_come_from_their_markers_in_one_listing(tmp_path):
    from orgseg.io import write_bytes
    from orgseg.pipeline.units import committed

    config = _config(tmp_path)
    for unit in (("liver", 0), ("lungs", 1)):
        write_bytes(marker_url(config, "strategy1-train", unit), b'{"wall_s": 100.0}')
    write_bytes(marker_url(config, "manifest", ()), b'{"wall_s": 5.0}')
    done = committed(config)
    assert set(done["strategy1-train"]) == {"liver_0", "lungs_1"}
    left = dict((j.name, u) for j, u in pending(config))
    assert "manifest" not in left
    assert left["strategy1-train"] == (("liver", 1), ("lungs", 0))
    costs, _ = plan(config)
    s1 = next(c for c in costs if c.job.name == "strategy1-train")
    assert s1.unit_s == 100.0 and s1.basis == "median of 2 committed unit(s)"


def test_cpu_jobs_never_ask_for_the_profiles_gpus(tmp_path):
    config = _config(tmp_path, default=StageResources(gpus_per_node=1))
    assert job_resources(config, job("cases")).gpus_per_node == 0
    assert job_resources(config, job("strategy1-train")).gpus_per_node == 1


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
    text = render_sbatch(
        "strategy1-train",
        resources,
        n_tasks=len(job("strategy1-train").units(_config(tmp_path))),
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


def test_dry_run_prices_the_reference_run_from_documented_rates(tmp_path, capsys):
    import yaml

    reference = load_run_config((ROOT / "jobs" / "reference.yaml").read_text())
    assert len(job("strategy1-train").units(reference)) == 26 * 5
    data = yaml.safe_load((ROOT / "jobs" / "reference.yaml").read_text())
    data.update(run_root=str(tmp_path / "run"), data_root=str(tmp_path / "data"))
    del data["storage"], data["exclude"]  # a local run root: what is done is read from it
    data["sources"] = ["totalsegmentator"]
    ts = tmp_path / "data" / "totalsegmentator"
    for i in range(40):  # cases are counted from the sources before the manifest exists
        (ts / f"s{i:04d}" / "segmentations").mkdir(parents=True)
        (ts / f"s{i:04d}" / "ct.nii.gz").write_bytes(b"x")
        (ts / f"s{i:04d}" / "segmentations" / "liver.nii.gz").write_bytes(b"x")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(data))
    config = load_run_config(cfg.read_text())
    costs, counted_from = plan(config)
    assert counted_from == "the sources (listing)"
    by = {c.job.name: c for c in costs}
    rates = config.cluster.rates
    assert by["strategy1-train"].gpu_h == pytest.approx(130 * 2000 * rates.epoch_s / 3600)
    # pseudo-labels: training cases x organs x the documented 20 s, not a constant
    train = 40 - round(40 * 0.1)
    expected = train * 26 * rates.pseudo_label_s_per_case_organ / 3600
    assert by["pseudo-labels"].gpu_h == pytest.approx(expected)
    assert by["cases"].gpu_h == 0.0 and by["cases"].cpu_h > 0
    # the critical path is the longest chain: cv-dice runs beside pseudo-labels, off it
    from orgseg.orchestrate.plan import critical_path_h

    chain = [n for n in by if n != "cv-dice"]
    assert critical_path_h(costs) == pytest.approx(sum(by[n].wall_h for n in chain))
    assert critical_path_h(costs) < sum(c.wall_h for c in costs)
    assert main(["train-all", "-c", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cluster.rates.pseudo_label_s_per_case_organ" in out and "critical path" in out
    assert "afterok" not in out  # the plan, nothing submitted


def test_unknown_stage_resources_and_credentials_are_refused(tmp_path):
    text = (ROOT / "jobs" / "ci.yaml").read_text()
    from orgseg.pipeline.jobs import check_config

    bad = load_run_config(text + "cluster:\n  stages:\n    strategy3-train: {}\n")
    with pytest.raises(ConfigError, match="unknown jobs"):
        check_config(bad)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text + "cluster:\n  stages:\n    strategy3-train: {}\n")
    assert main(["status", "-c", str(cfg)]) == 2  # every command checks it on loading
    with pytest.raises(ConfigError, match="secret_access_key"):
        load_run_config(text + "storage:\n  secret_access_key: abc\n")


@pytest.mark.parametrize("profile", sorted((ROOT / "jobs" / "profiles").glob("*.yaml")))
def test_resource_profiles_load_into_a_run_config(profile, tmp_path):
    import yaml

    from orgseg.config import parse_run_config

    data = yaml.safe_load((ROOT / "jobs" / "ci.yaml").read_text())
    data["cluster"] = yaml.safe_load(profile.read_text())["cluster"]
    config = parse_run_config(data)
    assert config.cluster.executor == ("awsbatch" if "batch" in profile.name else "slurm")
    train = config.cluster.resources("strategy1-train")
    assert train.gpus_per_node == 1 and train.timeout_min > 0
