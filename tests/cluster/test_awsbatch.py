"""``train-all --executor awsbatch`` against moto's AWS Batch API (its Docker-free mode:
jobs are recorded, never run) and S3 on the same endpoint. What the executor submits is
read from the requests themselves; the children are then run here, each with its
``AWS_BATCH_JOB_ARRAY_INDEX``, as Batch would run the container command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from orgseg.cli import main
from orgseg.config import load_run_config
from orgseg.errors import JobError
from orgseg.io import exists, read_bytes
from orgseg.io.storage import list_files
from orgseg.orchestrate import awsbatch
from orgseg.orchestrate.awsbatch import ARRAY_INDEX_ENV, batch_client, submit_batch
from orgseg.pipeline.phantom_set import PhantomSetConfig, write_phantom_set

from .conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "jobs" / "profiles"
pytestmark = [pytest.mark.slow, pytest.mark.nnunet, pytest.mark.s3]
RECLAIM_RETRY = {
    "attempts": 5,
    "evaluateOnExit": [
        {"onStatusReason": "Host EC2*", "action": "RETRY"},
        {"onReason": "*", "action": "EXIT"},
    ],
}


def _batch_service(endpoint: str) -> None:
    """moto's Batch without Docker, and the queues and job definitions of the profile."""
    import boto3

    body = json.dumps({"batch": {"use_docker": False}}).encode()
    req = urllib.request.Request(
        f"{endpoint}/moto-api/config", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    urllib.request.urlopen(req, timeout=10).read()
    iam = boto3.client("iam", endpoint_url=endpoint)
    role = iam.create_role(RoleName="orgseg-batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = boto3.client("batch", endpoint_url=endpoint)
    ce = batch.create_compute_environment(
        computeEnvironmentName="orgseg-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
    )["computeEnvironmentArn"]
    for queue in ("orgseg-cpu", "orgseg-gpu-spot"):
        batch.create_job_queue(
            jobQueueName=queue, state="ENABLED", priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        )  # fmt: skip
    for definition in ("orgseg-cpu", "orgseg-gpu"):
        batch.register_job_definition(
            jobDefinitionName=definition, type="container",
            containerProperties={"image": "orgseg", "vcpus": 1, "memory": 512,
                                 "command": ["orgseg"]},
        )  # fmt: skip


def _config(tmp: Path, endpoint: str, **training):
    data = yaml.safe_load((ROOT / "jobs" / "ci.yaml").read_text())
    data["run_root"] = "s3://orgseg-test/run"
    data["data_root"] = "s3://orgseg-test/data"
    for key in ("strategy1_training", "strategy2_training"):
        data[key].update(training)
    data["storage"] = {"endpoint_url": endpoint}
    data["shards"] = {"cases": 2, "pseudo-labels": 2}
    data["cluster"] = yaml.safe_load(
        (ROOT / "jobs" / "profiles" / "aws-batch-spot.yaml").read_text()
    )["cluster"]
    data["cluster"]["batch"]["endpoint_url"] = endpoint
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_run_config(path.read_text())


def _capture(client) -> list[dict]:  # noqa: ANN001
    calls: list[dict] = []
    client.meta.events.register(
        "provide-client-params.batch.SubmitJob", lambda params, **kw: calls.append(dict(params))
    )
    return calls


def _operations(client) -> set[str]:  # noqa: ANN001
    """Every Batch API operation the client makes from now on."""
    ops: set[str] = set()
    client.meta.events.register("before-call.batch", lambda model, **kw: ops.add(model.name))
    return ops


def _submit_policy_actions() -> set[str]:
    """The Batch actions of Terraform's submit policy (modules/batch)."""
    import re

    tf = (ROOT / "terraform" / "modules" / "batch" / "main.tf").read_text()
    doc = tf[tf.index('data "aws_iam_policy_document" "submit"') :]
    doc = doc[: doc.index('resource "aws_iam_policy" "submit"')]
    return set(re.findall(r'"batch:(\w+)"', doc))


def _fake_states(status: str) -> None:
    """Set every job moto's Batch holds to ``status`` (its Docker-free mode finishes
    them at once; real Batch keeps them queued or running for a while)."""
    from moto.batch.models import batch_backends

    for backend in batch_backends["123456789012"].values():
        for job in backend._jobs.values():
            job.status = status


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory, s3_server):
    import boto3

    from orgseg.config import StorageConfig
    from orgseg.io.storage import configure_storage

    tmp = tmp_path_factory.mktemp("batch-run")
    s3_server.reset()
    boto3.client("s3", endpoint_url=s3_server.endpoint).create_bucket(Bucket="orgseg-test")
    configure_storage(StorageConfig(endpoint_url=s3_server.endpoint))
    _batch_service(s3_server.endpoint)
    cfg, config = _config(tmp, s3_server.endpoint)
    write_phantom_set(
        config.data_root,
        PhantomSetConfig(n_sources=2, n_cases=6, seed=1, organs=("liver", "lungs", "spleen")),
    )
    return cfg, config, tmp


def test_train_all_on_batch_submits_chained_arrays_once_and_its_children_finish_the_run(
    batch_run, monkeypatch
):
    from orgseg.errors import JobError
    from orgseg.orchestrate.runner import status, wait
    from orgseg.pipeline.jobs import job
    from orgseg.pipeline.shards import with_shard_counts
    from orgseg.pipeline.units import pending

    cfg, config, _ = batch_run
    client = batch_client(config.cluster.batch)
    calls = _capture(client)
    operations = _operations(client)
    # status and wait make their own client: the same one here, so its calls count too
    monkeypatch.setattr("orgseg.orchestrate.awsbatch.batch_client", lambda batch: client)
    todo = pending(with_shard_counts(config, record=False))
    submit_batch(config, client)
    assert [c["jobName"] for c in calls] == [f"orgseg-{j.name}" for j, _ in todo]
    ids: dict[str, str] = {}
    for call, (j, units), sent_id in zip(calls, todo, _job_ids(config), strict=True):
        ids[j.name] = sent_id
        size = call.get("arrayProperties", {}).get("size", 1)
        assert size == len(units) and (("arrayProperties" in call) == (len(units) > 1))
        assert {d["jobId"] for d in call.get("dependsOn", [])} == {
            ids[a] for a in job(j.name).after
        }
        wanted = config.cluster.resources(j.name)
        res = {r["type"]: r["value"] for r in call["containerOverrides"]["resourceRequirements"]}
        assert res["VCPU"] == str(wanted.cpus_per_task)
        assert res["MEMORY"] == str(int(wanted.mem_gb * 1024))
        assert res.get("GPU") == (str(wanted.gpus_per_node) if wanted.gpus_per_node else None)
        assert call["jobQueue"] == ("orgseg-gpu-spot" if j.gpu else "orgseg-cpu")
        assert call["retryStrategy"] == RECLAIM_RETRY
        assert call["timeout"]["attemptDurationSeconds"] == wanted.timeout_min * 60
        command = call["containerOverrides"]["command"]
        assert command[:2] == ["orgseg", "batch-unit"] and "--units" in command
        assert SECRET not in json.dumps(call)  # credentials come from the chain, never a call
    sizes = {j.name: len(u) for j, u in todo}
    assert sizes["strategy1-train"] == 2 and sizes["pseudo-labels"] == 2 and sizes["fusion"] == 1

    # while the array jobs are queued or running, a second train-all submits nothing
    _fake_states("RUNNABLE")
    first = list(calls)
    calls.clear()
    submit_batch(config, client)
    assert calls == []
    assert {s for r in status(config) for s in r.scheduler} == {"RUNNABLE"}
    # --wait on Batch: jobs that failed with nothing left queued or running end the wait
    _fake_states("FAILED")
    with pytest.raises(JobError, match="ended without finishing the run(.|\n)*failed"):
        wait(config, timeout_s=30, poll_s=0.05)

    # Batch runs each child: the container command with its array index
    for call in first:
        for index in range(call.get("arrayProperties", {}).get("size", 1)):
            monkeypatch.setenv(ARRAY_INDEX_ENV, str(index))
            assert main(call["containerOverrides"]["command"][1:]) == 0
    _fake_states("SUCCEEDED")
    assert pending(config) == []  # every unit's marker is committed
    rows = wait(config, timeout_s=30, poll_s=0.05)  # --wait returns once all is committed
    assert rows and all(r.done == r.units for r in rows)
    assert exists(f"{config.run_root}/models/strategy2/orgseg_model.json")
    assert exists(f"{config.run_root}/qc/flags.json")
    # committed units are never submitted again
    submit_batch(config, client)
    assert calls == []
    # the driver's IAM policy (Terraform) allows every Batch call the driver made, and
    # tagging, which SubmitJob with tags needs
    assert {"SubmitJob", "DescribeJobs"} <= operations
    assert operations | {"TagResource"} <= _submit_policy_actions(), (
        f"the driver calls {sorted(operations)}: add what is missing to the submit policy "
        "in terraform/modules/batch/main.tf"
    )


def _settle(client, job_ids: list[str], timeout_s: float = 60.0) -> None:  # noqa: ANN001
    """Wait until moto's Docker-free threads have finished these jobs (at once, nearly)."""
    t0 = time.time()
    while any(
        j["status"] not in ("SUCCEEDED", "FAILED")
        for j in client.describe_jobs(jobs=job_ids)["jobs"]
    ):
        assert time.time() - t0 < timeout_s, "moto did not finish the jobs"
        time.sleep(0.2)


def _set_states(states: dict[str, str]) -> None:
    """Set the status of these jobs in moto's Batch (a shard failed, one still runs)."""
    from moto.batch.models import batch_backends

    for backend in batch_backends["123456789012"].values():
        for job_id, status in states.items():
            if job_id in backend._jobs:
                backend._jobs[job_id].status = status


def _job_ids(config) -> list[str]:
    """The Batch job id of each submitted job, in submission order."""
    sub = json.loads(read_bytes(f"{config.run_root}/jobs/submission.json"))["jobs"]
    return [tasks[0]["task"].split(":")[0] for tasks in sub.values() if tasks]


def test_sigterm_syncs_the_checkpoint_and_the_retried_attempt_resumes(batch_run, tmp_path):
    """A strategy-1 child retrained for longer gets SIGTERM (Batch stopping a reclaimed
    spot container) after its first checkpoints: it syncs them to the bucket and exits;
    the retried attempt (same command) resumes from them."""
    import dataclasses

    from orgseg.io import write_bytes
    from orgseg.io.storage import remove
    from orgseg.orchestrate.awsbatch import config_text
    from orgseg.pipeline.datasets import strategy1_dataset
    from orgseg.pipeline.staging import nnunet_root
    from orgseg.pipeline.strategy1 import configuration_name
    from orgseg.pipeline.units import marker_url

    _, config, _ = batch_run
    longer = dataclasses.replace(
        config,
        strategy1_training=dataclasses.replace(
            config.strategy1_training, epochs=40, save_every_epochs=1, folds=(0,)
        ),
    )
    name = strategy1_dataset(longer, "liver")[1]
    fold = f"{nnunet_root(longer)}/results/{name}/nnUNetTrainer__nnUNetPlans__" \
        f"{configuration_name(longer)}/fold_0"  # fmt: skip
    for f in list_files(f"{nnunet_root(longer)}/results/{name}"):
        if "/fold_0/" in f:
            remove(f)
    remove(marker_url(longer, "strategy1-train", ("liver", 0)))
    config_url = f"{config.run_root}/jobs/awsbatch/longer.yaml"
    units_url = f"{config.run_root}/jobs/awsbatch/strategy1-train-longer.json"
    write_bytes(config_url, config_text(longer).encode())
    write_bytes(units_url, json.dumps([["liver", 0]]).encode())
    scratch = tmp_path / "scratch"
    env = {**os.environ, "ORGSEG_SCRATCH": str(scratch), ARRAY_INDEX_ENV: "0"}
    command = [sys.executable, "-m", "orgseg", "batch-unit", "--config", config_url,
               "--units", units_url, "--endpoint-url", config.storage.endpoint_url]  # fmt: skip
    first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not list(scratch.glob(f"*/results/{name}/*/fold_0/checkpoint_latest.pth")):
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert time.time() - t0 < 600, "no checkpoint"
        time.sleep(0.5)
    time.sleep(2.0)  # a few more epochs
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 128 + signal.SIGTERM, err
    assert "syncing staged checkpoints" in err
    assert exists(f"{fold}/checkpoint_latest.pth")  # synced before the container ended
    assert not exists(marker_url(longer, "strategy1-train", ("liver", 0)))
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr
    unit = json.loads(read_bytes(f"{fold}/orgseg_unit.json"))
    assert unit["epochs"] == 40 and unit["resumed_from_epoch"] >= 1
    assert exists(marker_url(longer, "strategy1-train", ("liver", 0)))


def test_bulk_on_batch_is_a_shard_array_then_finalize_and_a_killed_shard_loses_one_case(
    batch_run, phantom_model_dir, tmp_path, monkeypatch
):
    """The shards as one array job and the finalize job after it; each child run as
    Batch would. Shard 0 is killed (SIGKILL, as a reclaimed host) once it committed a
    case: its retry does only what is left, and every case is done once."""
    from orgseg.config import load_cluster_profile
    from orgseg.core.volume import Volume
    from orgseg.inference.bulk import BulkOptions, discover_archive, write_plan
    from orgseg.inference.model import ModelOptions
    from orgseg.io import write_volume
    from orgseg.orchestrate.awsbatch import submit_bulk_batch
    from orgseg.phantoms import make_phantom

    _, config, _ = batch_run
    archive, dest = "s3://orgseg-test/archive", "s3://orgseg-test/bulk-out"
    for i in range(6):
        ph = make_phantom(shape=(40, 56, 56), spacing_mm=(8.0, 7.5, 7.5), seed=300 + i)
        write_volume(Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), f"{archive}/ph_{i}.nii.gz")
    cases = discover_archive(archive)
    write_plan(dest, cases)
    client = batch_client(config.cluster.batch)
    calls = _capture(client)
    resources = load_cluster_profile(
        str(ROOT / "jobs" / "profiles" / "aws-batch-spot.yaml")
    ).resources("bulk")
    shard_id, _ = submit_bulk_batch(
        dest,
        model_url=str(phantom_model_dir),
        model_options=ModelOptions(),
        options=BulkOptions(shards=2),
        resources=resources,
        batch=config.cluster.batch,
        storage_endpoint=config.storage.endpoint_url,
        client=client,
    )
    shards, final = calls
    assert shards["arrayProperties"] == {"size": 2} and shards["jobQueue"] == "orgseg-gpu-spot"
    assert {"type": "GPU", "value": "1"} in shards["containerOverrides"]["resourceRequirements"]
    assert shards["retryStrategy"] == RECLAIM_RETRY
    # finalize waits for the shards however they end (a dependsOn would fail it with them)
    assert "dependsOn" not in final and "arrayProperties" not in final
    assert final["containerOverrides"]["command"][-3:] == ["--finalize", "--after", shard_id]

    status_dir = f"{dest}/.orgseg/cases"
    command = [sys.executable, "-m", "orgseg", *shards["containerOverrides"]["command"][1:]]
    env = {**os.environ, ARRAY_INDEX_ENV: "0"}
    first = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (exists(status_dir) and list_files(status_dir)):
        assert first.poll() is None and time.time() - t0 < 600, "no case committed"
        time.sleep(0.2)
    first.kill()  # the host is gone: no signal handler runs
    first.wait()
    before = {u: read_bytes(u) for u in list_files(status_dir)}
    assert 1 <= len(before) < 3  # shard 0 holds 3 of the 6 cases
    for index in (0, 1):  # the retried attempt of shard 0, then shard 1
        monkeypatch.setenv(ARRAY_INDEX_ENV, str(index))
        assert main(shards["containerOverrides"]["command"][1:]) == 0
    # Batch says shard 0 failed and shard 1 still runs: finalize keeps waiting ...
    _settle(client, [f"{shard_id}:0", f"{shard_id}:1"])
    _set_states({f"{shard_id}:0": "FAILED", f"{shard_id}:1": "RUNNING"})
    monkeypatch.setattr(awsbatch, "FINALIZE_WAIT_S", 1.0)
    monkeypatch.setattr(awsbatch, "FINALIZE_POLL_S", 0.2)
    with pytest.raises(JobError, match="not finished"):
        awsbatch.run_bulk_child(final["containerOverrides"]["command"][3], finalize=True,
                                after=shard_id, client=client,
                                endpoint_url=config.storage.endpoint_url)  # fmt: skip
    # ... and once shard 1 has ended too, it rebuilds the tables despite shard 0's failure
    _set_states({f"{shard_id}:1": "SUCCEEDED"})
    assert main(final["containerOverrides"]["command"][1:]) == 0
    after = {u: read_bytes(u) for u in list_files(status_dir)}
    assert len(after) == 6 and all(after[u] == b for u, b in before.items())
    summary = json.loads(read_bytes(f"{dest}/summary.json"))
    assert summary["done"] == 6 and summary["pending"] == 0


def test_bulk_on_batch_with_a_model_set_loads_each_part_once_per_task(
    batch_run, ts_weights, tmp_path, monkeypatch
):
    """A model set installed under an s3:// ORGSEG_MODELS, bulk-segmented on Batch: each
    shard task stages the set and builds each of its five parts once for all its cases."""
    from orgseg.config import load_cluster_profile
    from orgseg.core.volume import Volume
    from orgseg.inference import model_set
    from orgseg.inference.bulk import BulkOptions, discover_archive, write_plan
    from orgseg.inference.model import ModelOptions
    from orgseg.io import write_volume
    from orgseg.models.store import resolve_model
    from orgseg.orchestrate.awsbatch import submit_bulk_batch
    from orgseg.phantoms import make_phantom

    _, config, _ = batch_run
    monkeypatch.setenv("ORGSEG_MODELS", "s3://orgseg-test/models")
    assert main(["models", "import", "totalsegmentator-total", str(ts_weights)]) == 0
    model_url = resolve_model("totalsegmentator-total")
    assert model_url == "s3://orgseg-test/models/totalsegmentator-total"
    archive, dest = "s3://orgseg-test/set-archive", "s3://orgseg-test/set-out"
    for i in range(4):
        ph = make_phantom(shape=(40, 56, 56), spacing_mm=(8.0, 7.5, 7.5), seed=320 + i)
        write_volume(Volume(ph.ct_hu, spacing_mm=ph.spacing_mm), f"{archive}/ph_{i}.nii.gz")
    write_plan(dest, discover_archive(archive))
    client = batch_client(config.cluster.batch)
    calls = _capture(client)
    submit_bulk_batch(
        dest,
        model_url=model_url,
        model_options=ModelOptions(classes="native"),
        options=BulkOptions(shards=2),
        resources=load_cluster_profile(
            str(ROOT / "jobs" / "profiles" / "aws-batch-spot.yaml")
        ).resources("bulk"),
        batch=config.cluster.batch,
        storage_endpoint=config.storage.endpoint_url,
        client=client,
    )
    shards, final = calls
    built: list[str] = []

    class Counted(model_set.SegmentationModel):
        def __init__(self, model_dir, options=None) -> None:  # noqa: ANN001
            built.append(Path(model_dir).parent.name)
            super().__init__(model_dir, options)

    monkeypatch.setattr(model_set, "SegmentationModel", Counted)
    for index in (0, 1):
        monkeypatch.setenv(ARRAY_INDEX_ENV, str(index))
        before = len(built)
        assert main(shards["containerOverrides"]["command"][1:]) == 0
        assert len(built) - before == 5  # five parts, once each, for the shard's two cases
    assert main(final["containerOverrides"]["command"][1:]) == 0
    summary = json.loads(read_bytes(f"{dest}/summary.json"))
    assert summary["done"] == 4 and summary["failed"] == 0
    stats = json.loads(read_bytes(f"{dest}/ph_0/statistics.json"))
    assert stats["model"]["model_set"] == "totalsegmentator-total"
    assert stats["model"]["classes"] == "native"
    assert len(stats["organs"]) == 117  # TotalSegmentator's classes, under their own names
    assert stats["organs"]["kidney_right"]["volume_ml"] > 0  # part 1's one class here
