"""AWS Batch (``cluster.executor: awsbatch``): the job table as array jobs on spot.

Each job of the table with units left becomes one Batch array job, one child per unit
(a plain job for a single unit), after the array jobs of the jobs it follows
(``dependsOn``: the whole array). The driver uploads the run config and each job's unit
list next to the run (``<run_root>/jobs/awsbatch/``); a child runs
``orgseg batch-unit --config URL --units URL``, which picks its unit by
``AWS_BATCH_JOB_ARRAY_INDEX`` and runs it through the same path as every executor
(staging, done checks, unit markers). Resources come from the cluster profile's stage
resources (vCPUs, memory, GPUs, timeout); queue, job definition and attempts from
``cluster.batch``.

Retries: a child whose host was reclaimed (status reason ``Host EC2*``) is retried, up
to ``attempts``; anything else exits. On SIGTERM (what Batch sends before it stops a
container) a unit syncs its staged checkpoint to the bucket first, as on Slurm's USR2,
so the retried attempt resumes. Units whose array job is still queued or running are
not submitted again; committed units (markers) never are. boto3 takes credentials from
the standard chain only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from orgseg.config import BatchConfig, StageResources, run_config_data
from orgseg.errors import ConfigError, JobError
from orgseg.io import join_url, read_bytes, write_bytes
from orgseg.orchestrate.executors import batch_job_of
from orgseg.orchestrate.submission import submit_pending
from orgseg.pipeline.layout import RunLayout
from orgseg.pipeline.markers import UnitKey

if TYPE_CHECKING:
    from orgseg.config import RunConfig
    from orgseg.pipeline.jobs import Job

log = logging.getLogger(__name__)

#: Batch's status reason for a spot instance taken back (the only failure retried)
RECLAIMED_REASON = "Host EC2*"
ACTIVE_STATES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"})
#: the unit's index in its array job
ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"


def retry_strategy(attempts: int) -> dict[str, Any]:
    """Retry a reclaimed host, exit on anything else."""
    return {
        "attempts": int(attempts),
        "evaluateOnExit": [
            {"onStatusReason": RECLAIMED_REASON, "action": "RETRY"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }


def resource_requirements(resources: StageResources) -> list[dict[str, str]]:
    """Batch's vCPU, memory (MiB) and GPU requirements of one unit."""
    out = [
        {"type": "VCPU", "value": str(resources.cpus_per_task)},
        {"type": "MEMORY", "value": str(int(resources.mem_gb * 1024))},
    ]
    if resources.gpus_per_node:
        out.append({"type": "GPU", "value": str(resources.gpus_per_node)})
    return out


def batch_client(batch: BatchConfig):  # noqa: ANN201
    """The one AWS Batch client builder: ``batch``'s endpoint (moto, a region) and region;
    credentials from the standard AWS sources."""
    import boto3

    return boto3.client("batch", endpoint_url=batch.endpoint_url, region_name=batch.region)


def state_dir(config: RunConfig) -> str:
    return RunLayout.of(config).jobs_file("awsbatch")


def config_text(config: RunConfig) -> str:
    """The run config as YAML a child loads back (every value, nothing left to defaults
    that could differ between the driver's and the image's version)."""

    def plain(v: object) -> object:
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return yaml.safe_dump(plain(run_config_data(config)), sort_keys=False)


def _chunks(items: Sequence[str], n: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def describe(client, ids: Sequence[str]) -> list[dict]:  # noqa: ANN001
    """Batch's description of each job or task (``<job id>`` or ``<array job id>:<index>``),
    asked 100 at a time (DescribeJobs' limit)."""
    return [
        j
        for chunk in _chunks(sorted(set(ids)), 100)
        for j in client.describe_jobs(jobs=list(chunk))["jobs"]
    ]


def batch_states(client, task_ids: Sequence[str]) -> dict[str, str]:  # noqa: ANN001
    """Batch status of each task."""
    return {j["jobId"]: j["status"] for j in describe(client, task_ids)}


def submit_batch(config: RunConfig, client=None):  # noqa: ANN001, ANN201
    """Submit every pending unit as chained Batch array jobs; returns what was sent (also
    ``<run_root>/jobs/submission.json``, the file ``orgseg status`` reads)."""
    from orgseg.pipeline.shards import with_shard_counts

    if config.cluster.executor != "awsbatch":
        raise ConfigError(
            f"submit_batch needs cluster.executor 'awsbatch', got {config.cluster.executor!r}"
        )
    client = client or batch_client(config.cluster.batch)
    config = with_shard_counts(config)  # every child is given the same shard counts
    b = config.cluster.batch
    config_url = join_url(state_dir(config), "config.yaml")
    write_bytes(config_url, config_text(config).encode())

    def send(job: Job, units: Sequence[UnitKey], after: Sequence[str]) -> tuple[str, list[str]]:
        resources = config.cluster.resources(job.name)
        units_url = join_url(state_dir(config), f"{job.name}-{uuid.uuid4().hex[:12]}.json")
        write_bytes(units_url, json.dumps([list(u) for u in units]).encode())
        request: dict[str, Any] = {
            "jobName": f"orgseg-{job.name}",
            "jobQueue": (b.gpu_job_queue if job.gpu else None) or b.job_queue,
            "jobDefinition": (b.gpu_job_definition if job.gpu else None) or b.job_definition,
            "containerOverrides": {
                "command": unit_command(config_url, units_url, config),
                "resourceRequirements": resource_requirements(resources),
            },
            "retryStrategy": retry_strategy(b.attempts),
            "timeout": {"attemptDurationSeconds": max(60, resources.timeout_min * 60)},
            "tags": {"orgseg-run": config.run_root, "orgseg-job": job.name},
            "propagateTags": True,
        }
        if len(units) > 1:
            request["arrayProperties"] = {"size": len(units)}
        if after:
            request["dependsOn"] = [{"jobId": d} for d in after]
        job_id = client.submit_job(**request)["jobId"]
        log.info(
            "submitted %s: %d units as Batch job %s%s", job.name, len(units), job_id,
            f" after {list(after)}" if after else "",
        )  # fmt: skip
        return job_id, [f"{job_id}:{i}" for i in range(len(units))] if len(units) > 1 else [job_id]

    return submit_pending(
        config,
        lambda tasks: batch_states(client, tasks),
        ACTIVE_STATES,
        batch_job_of,
        send,
    )


def unit_command(config_url: str, units_url: str, config: RunConfig) -> list[str]:
    """The container command of one array child."""
    command = ["orgseg", "batch-unit", "--config", config_url, "--units", units_url]
    if config.storage.endpoint_url:
        command += ["--endpoint-url", config.storage.endpoint_url]
    return command


def _sync_then_exit(signum: int, frame: object) -> None:
    from orgseg.pipeline.staging import checkpoint_staged

    log.warning("signal %d: syncing staged checkpoints to the bucket, then exiting", signum)
    checkpoint_staged()
    raise SystemExit(128 + signum)


def run_array_child(
    config_url: str, units_url: str, *, index: int | None = None, endpoint_url: str | None = None
) -> str:
    """``orgseg batch-unit``: the unit at ``index`` (default ``$AWS_BATCH_JOB_ARRAY_INDEX``,
    0 for a plain job) of ``units_url``, in the run whose config is at ``config_url``."""
    from orgseg.config import StorageConfig, load_run_config
    from orgseg.io.storage import configure_storage
    from orgseg.orchestrate.slurm import start_task
    from orgseg.pipeline.units import run_unit

    start_task(StorageConfig(endpoint_url=endpoint_url))
    config = load_run_config(read_bytes(config_url).decode(), where=config_url)
    configure_storage(config.storage)
    units = [tuple(u) for u in json.loads(read_bytes(units_url))]
    if index is None:
        index = int(os.environ.get(ARRAY_INDEX_ENV, "0"))
    if not 0 <= index < len(units):
        raise JobError(f"array index {index} outside the {len(units)} units of {units_url}")
    job_name = units_url.rsplit("/", 1)[-1].rsplit("-", 1)[0]
    unit: UnitKey = units[index]
    before = signal.signal(signal.SIGTERM, _sync_then_exit)
    try:
        out = run_unit(config, job_name, unit)
    finally:
        signal.signal(signal.SIGTERM, before)
    log.info("%s", out)
    return out


def _ended(job: Mapping[str, Any]) -> bool:
    """Whether a Batch job has ended: an array parent once every child has (SUCCEEDED or
    FAILED: a parent can turn FAILED while other children still run), else its status."""
    size = job.get("arrayProperties", {}).get("size")
    if size:
        summary = job["arrayProperties"].get("statusSummary", {})
        return summary.get("SUCCEEDED", 0) + summary.get("FAILED", 0) >= size
    return job["status"] not in ACTIVE_STATES


def jobs_ended(client, job_ids: Sequence[str]) -> tuple[bool, dict[str, str]]:  # noqa: ANN001
    """Whether every one of these jobs has ended (an array job: all its children), and
    their statuses."""
    jobs = describe(client, job_ids)
    return bool(jobs) and all(_ended(j) for j in jobs), {j["jobId"]: j["status"] for j in jobs}


# --- orgseg bulk on Batch: the shards as one array job, then the finalize job ------------


def bulk_spec_url(dest: str) -> str:
    return join_url(dest, ".orgseg", "batch", "bulk.json")


#: how long a bulk run's finalize job waits for its shards before it gives up
FINALIZE_WAIT_S = 14 * 24 * 3600.0
#: how often the finalize job asks Batch whether the shards have ended
FINALIZE_POLL_S = 60.0


def submit_bulk_batch(
    dest: str,
    *,
    model_url: str,
    model_options,  # noqa: ANN001
    options,  # noqa: ANN001
    resources: StageResources,
    batch: BatchConfig,
    storage_endpoint: str | None = None,
    client=None,  # noqa: ANN001
) -> list[str]:
    """The shards of a bulk run as one Batch array job (a child per shard, each resuming
    at its first uncommitted case), then the finalize job; returns both ids. What a child
    runs is uploaded to ``<dest>/.orgseg/batch/bulk.json``.

    The finalize job does not ``dependsOn`` the shards: Batch fails a dependent job when
    a dependency fails, so one failed shard would leave ``manifest.csv`` and
    ``summary.json`` unbuilt. It waits instead until every shard has ended, succeeded or
    failed (Slurm's ``afterany``), asking Batch every minute (its job role needs
    ``batch:DescribeJobs``)."""
    client = client or batch_client(batch)
    spec = {
        "model_url": model_url,
        "model_options": dataclasses.asdict(model_options),
        "options": dataclasses.asdict(options),
        "batch": {"endpoint_url": batch.endpoint_url, "region": batch.region},
    }
    spec_url = bulk_spec_url(dest)
    write_bytes(spec_url, json.dumps(spec).encode())
    base = ["orgseg", "batch-bulk", "--spec", spec_url]
    if storage_endpoint:
        base += ["--endpoint-url", storage_endpoint]
    common: dict[str, Any] = {
        "retryStrategy": retry_strategy(batch.attempts),
        "tags": {"orgseg-bulk": dest},
        "propagateTags": True,
    }
    gpu = bool(resources.gpus_per_node)
    shards: dict[str, Any] = {
        "jobName": "orgseg-bulk",
        "jobQueue": (batch.gpu_job_queue if gpu else None) or batch.job_queue,
        "jobDefinition": (batch.gpu_job_definition if gpu else None) or batch.job_definition,
        "containerOverrides": {
            "command": base,
            "resourceRequirements": resource_requirements(resources),
        },
        "timeout": {"attemptDurationSeconds": max(60, resources.timeout_min * 60)},
        **common,
    }
    if options.shards > 1:
        shards["arrayProperties"] = {"size": options.shards}
    shard_id = client.submit_job(**shards)["jobId"]
    small = StageResources(cpus_per_task=1, mem_gb=2, timeout_min=30)
    final = client.submit_job(
        jobName="orgseg-bulk-finalize",
        jobQueue=batch.job_queue,
        jobDefinition=batch.job_definition,
        containerOverrides={
            "command": [*base, "--finalize", "--after", shard_id],
            "resourceRequirements": resource_requirements(small),
        },
        **common,
    )["jobId"]
    log.info("bulk: %d shard(s) as Batch job %s, finalize %s", options.shards, shard_id, final)
    return [shard_id, final]


def run_bulk_child(
    spec_url: str, *, finalize: bool = False, index: int | None = None,
    endpoint_url: str | None = None, after: str | None = None, client=None,  # noqa: ANN001
) -> dict:  # fmt: skip
    """``orgseg batch-bulk``: shard ``index`` (default ``$AWS_BATCH_JOB_ARRAY_INDEX``) of
    the bulk run the spec describes, or its finalize step (once the Batch job ``after``,
    the shards, has ended however it ended)."""
    from orgseg.config import StorageConfig
    from orgseg.configtools import load_dataclass
    from orgseg.inference.bulk import BulkOptions, run_shard
    from orgseg.inference.bulk import finalize as finalize_run
    from orgseg.inference.model import ModelOptions
    from orgseg.orchestrate.slurm import start_task

    start_task(StorageConfig(endpoint_url=endpoint_url))
    dest = spec_url.rsplit("/.orgseg/", 1)[0]
    spec = json.loads(read_bytes(spec_url))
    if finalize:
        if after:
            from orgseg.orchestrate.executors import BatchExecutor, wait_jobs

            shards = BatchExecutor(BatchConfig(**spec.get("batch", {})), client)
            states = wait_jobs(shards, [after], timeout_s=FINALIZE_WAIT_S, poll_s=FINALIZE_POLL_S)
            log.info("bulk finalize: the shards ended %s", states)
        return finalize_run(dest)
    options = load_dataclass(BulkOptions, spec["options"], where=spec_url)
    if index is None:
        index = int(os.environ.get(ARRAY_INDEX_ENV, "0"))
    if not 0 <= index < options.shards:
        raise JobError(f"array index {index} outside the {options.shards} shards of {spec_url}")
    return run_shard(
        dest,
        index,
        model_url=spec["model_url"],
        model_options=load_dataclass(ModelOptions, spec["model_options"], where=spec_url),
        options=options,
    )
