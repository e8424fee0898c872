"""train-all on the real single-node Slurm cluster, every byte in the S3 bucket.

Tiny config: 2 organs x 2 folds, phantom cases, a few iterations. Slow (minutes).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from orgseg.cli import main
from orgseg.config import load_run_config
from orgseg.io import exists, read_bytes
from orgseg.io.storage import list_files
from orgseg.orchestrate.runner import load_submission, status
from orgseg.pipeline.phantom_set import PhantomSetConfig, write_phantom_set

from .conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.nnunet, pytest.mark.slurm, pytest.mark.s3]


def _write_config(tmp_path: Path, bucket: str, endpoint: str, **training) -> Path:
    data = yaml.safe_load((ROOT / "jobs" / "ci.yaml").read_text())
    data["run_root"] = f"{bucket}/run"
    data["data_root"] = f"{bucket}/data"
    for key in ("strategy1_training", "strategy2_training"):
        data[key]["folds"] = [0, 1]
        data[key].update(training)
    data["storage"] = {"endpoint_url": endpoint}
    # case-level jobs as arrays of several shards (the defaults would give one each here)
    data["shards"] = {"cases": 2, "pseudo-labels": 2}
    data["cluster"] = yaml.safe_load((ROOT / "jobs" / "profiles" / "ci-slurm.yaml").read_text())[
        "cluster"
    ]
    data["cluster"]["jobs_dir"] = str(tmp_path / "jobs")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, s3_server, slurm_cluster):
    import boto3

    from orgseg.config import StorageConfig
    from orgseg.io.storage import configure_storage

    tmp = tmp_path_factory.mktemp("slurm-run")
    s3_server.reset()
    boto3.client("s3", endpoint_url=s3_server.endpoint).create_bucket(Bucket="orgseg-test")
    configure_storage(StorageConfig(endpoint_url=s3_server.endpoint))
    cfg = _write_config(tmp, "s3://orgseg-test", s3_server.endpoint)
    config = load_run_config(cfg.read_text())
    write_phantom_set(
        config.data_root,
        PhantomSetConfig(n_sources=3, n_cases=4, seed=1, organs=("liver", "lungs", "spleen")),
    )
    t0 = time.perf_counter()
    # submit and return at once: the driver does not wait for the jobs
    assert main(["train-all", "-c", str(cfg)]) == 0
    submit_s = time.perf_counter() - t0
    sub = load_submission(config)
    # cases (2 shards), manifest, strategy1-data (2 organs), strategy1-train (2 x 2),
    # pseudo-labels (2 shards), pseudo-qc, cv-dice, fusion, strategy2-data,
    # strategy2-train (2), strategy2-export, test-predictions, report
    units = {name: len(t) for name, t in sub.jobs.items()}
    assert units["cases"] == 2 and units["pseudo-labels"] == 2 and units["fusion"] == 1
    assert units["pseudo-qc"] == 1
    assert sum(units.values()) == 2 + 1 + 2 + 4 + 2 + 1 + 1 + 1 + 1 + 2 + 1 + 1 + 1
    # the S3 endpoint goes away for 3 s while jobs read and write: retries, not data loss
    from orgseg.pipeline.layout import RunLayout

    _wait_for(lambda: exists(RunLayout.of(config).manifest()), 600, "the case table")
    s3_server.restart(down_s=3.0)
    assert main(["train-all", "-c", str(cfg), "--wait", "--wait-timeout", "1500"]) == 0
    return cfg, config, tmp, submit_s, time.perf_counter() - t0


def test_train_all_on_slurm_ends_with_a_strategy2_model_in_the_bucket(finished_run):
    cfg, config, tmp, submit_s, total_s = finished_run
    root = config.run_root
    info = json.loads(read_bytes(f"{root}/models/strategy2/orgseg_model.json"))
    assert info["organs"] == ["liver", "lungs"] and info["folds"] == [0, 1]
    assert exists(f"{root}/models/strategy2/fold_1/checkpoint_final.pth")
    assert "| liver |" in read_bytes(f"{root}/report.md").decode()
    assert all(r.done == r.units for r in status(config))
    # no uncommitted temporaries visible
    assert not [f for f in list_files(root) if ".tmp" in f]
    print(f"submit {submit_s:.1f} s, whole run {total_s:.0f} s")


def test_credentials_never_reach_configs_pickles_or_logs(finished_run):
    cfg, config, tmp, *_ = finished_run
    files = [p for p in (tmp / "jobs").rglob("*") if p.is_file()]
    assert any(p.suffix == ".pkl" for p in files) and any(p.suffix == ".out" for p in files)
    for p in files + [cfg]:
        assert SECRET.encode() not in p.read_bytes(), p
    assert SECRET.encode() not in read_bytes(f"{config.run_root}/jobs/submission.json")


def test_running_train_all_again_submits_nothing(finished_run, capsys):
    cfg, config, *_ = finished_run
    assert main(["train-all", "-c", str(cfg)]) == 0
    assert load_submission(config).jobs == {}
    assert main(["status", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "strategy1-train     4/4" in out


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout_s:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_a_preempted_training_job_resumes_from_its_checkpoint(finished_run, tmp_path, monkeypatch):
    """A strategy-1 unit is retrained for longer and signalled like a preempted spot job
    (USR2) after its first checkpoints: it syncs them to the bucket, requeues itself, and
    the requeued run resumes from the checkpoint instead of starting over."""
    import submitit

    from orgseg.orchestrate.runner import UnitTask
    from orgseg.pipeline.datasets import strategy1_dataset
    from orgseg.pipeline.staging import nnunet_root
    from orgseg.pipeline.units import marker_url

    cfg, config, *_ = finished_run
    scratch = tmp_path / "scratch"
    monkeypatch.setenv("ORGSEG_SCRATCH", str(scratch))  # exported to the job
    longer = dataclasses.replace(
        config,
        strategy1_training=dataclasses.replace(
            config.strategy1_training, epochs=40, save_every_epochs=1, folds=(0,)
        ),
    )
    name = strategy1_dataset(longer, "liver")[1]
    results = f"{nnunet_root(longer)}/results/{name}"
    from orgseg.io.storage import remove

    for f in list_files(results):  # forget the finished fold 0: it trains again, longer
        if "/fold_0/" in f:
            remove(f)
    remove(marker_url(longer, "strategy1-train", ("liver", 0)))
    executor = submitit.SlurmExecutor(folder=str(tmp_path / "jobs"), max_num_timeout=3)
    executor.update_parameters(time=30, cpus_per_task=1, mem="3GB", signal_delay_s=30)
    job = executor.submit(UnitTask(longer, "strategy1-train", ("liver", 0)))
    checkpoints = lambda: list(scratch.glob(f"*/results/{name}/*/fold_0/checkpoint_latest.pth"))  # noqa: E731
    _wait_for(lambda: bool(checkpoints()), 600, "the first checkpoint")
    time.sleep(2.0)  # a few more epochs
    subprocess.run(["scancel", "--signal=USR2", str(job.job_id)], check=True)
    out = job.result()  # follows the requeued job to its end
    assert "done" in out
    unit = json.loads(
        read_bytes(
            f"{results}/nnUNetTrainer__nnUNetPlans__"
            f"{_configuration(longer)}/fold_0/orgseg_unit.json"
        )
    )
    assert unit["epochs"] == 40
    assert unit["resumed_from_epoch"] >= 1  # resumed, not restarted
    log = Path(job.paths.stderr).read_text()
    assert "preempted" in log and "resuming at epoch" in log


def _configuration(config) -> str:
    from orgseg.pipeline.strategy1 import configuration_name

    return configuration_name(config)


def test_a_pseudo_label_task_killed_mid_shard_then_rerun(finished_run):
    """Every (case, organ) ends committed exactly once; nothing uncommitted is visible."""
    from orgseg.io.storage import remove
    from orgseg.pipeline.cases import load_manifest
    from orgseg.pipeline.layout import RunLayout

    cfg, config, *_ = finished_run
    layout = RunLayout.of(config)
    manifest = load_manifest(config)
    todo = [
        (c, o)
        for c in manifest.train
        for o in config.strategy1_organs
        if o not in manifest.case(c).manual_organs
    ]
    assert len(todo) >= 3
    for c, o in todo:  # the shard's work is to be done again
        remove(layout.pseudo_record(c, o))
        remove(layout.pseudo_mask(c, o))
    from orgseg.pipeline.jobs import job
    from orgseg.pipeline.units import marker_url

    for unit in job("pseudo-labels").units(config):  # and its unit is no longer committed
        remove(marker_url(config, "pseudo-labels", unit))
    # with mirroring (8 passes per tile) each case takes long enough to kill the task
    # between two commits
    data = yaml.safe_load(cfg.read_text())
    data["nnunet"]["use_mirroring"] = True
    cfg = cfg.with_name("run-tta.yaml")
    cfg.write_text(yaml.safe_dump(data))
    assert main(["train-all", "-c", str(cfg)]) == 0
    sub = load_submission(config)
    assert list(sub.jobs) == ["pseudo-labels"]  # everything else is committed
    assert len(sub.jobs["pseudo-labels"]) == 2  # both shards
    task = sub.jobs["pseudo-labels"][0]["task"]
    assert sub.jobs["pseudo-labels"][0]["unit"] == [0, 2]
    from orgseg.core.splits import shard_of

    mine = [x for x in todo if x[0] in shard_of(manifest.train, 0, 2)]  # shard 0's work
    assert len(mine) >= 2
    committed = lambda: [x for x in mine if exists(layout.pseudo_record(*x))]  # noqa: E731
    _wait_for(lambda: len(committed()) >= 1, 600, "a first committed pseudo-label")
    subprocess.run(["scancel", "--signal=KILL", "--full", task], check=True)
    _wait_for(
        lambda: "PENDING" not in _state(task) and "RUNNING" not in _state(task), 120, "the kill"
    )
    before = {x: read_bytes(layout.pseudo_record(*x)) for x in committed()}
    assert 1 <= len(before) < len(mine), "killed mid-shard"
    assert not exists(marker_url(config, "pseudo-labels", (0, 2)))
    assert main(["train-all", "-c", str(cfg), "--wait", "--wait-timeout", "900"]) == 0
    for x in todo:
        assert exists(layout.pseudo_mask(*x)) and exists(layout.pseudo_record(*x))
    # what was committed before the kill was not done again
    assert {x: read_bytes(layout.pseudo_record(*x)) for x in before} == before
    assert not [f for f in list_files(config.run_root) if ".tmp" in f]


def _active(task: str) -> bool:
    return any(s in _state(task) for s in ("PENDING", "RUNNING", "REQUEUED"))


def _state(task: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", task], capture_output=True, text=True
    )
    return out.stdout
