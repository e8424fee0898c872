"""The executor seam without a cluster: the factory, job ids, the one wait loop (a fake
backend stands in for a scheduler here; tests/cluster/ run the real Slurm and Batch ones)."""

from __future__ import annotations

import pytest

from orgseg.config import EXECUTORS, BatchConfig
from orgseg.errors import ConfigError, JobError
from orgseg.orchestrate.executors import (
    BatchExecutor,
    LocalExecutor,
    SlurmExecutor,
    batch_job_of,
    executor,
    slurm_job_of,
    wait_jobs,
)


def test_every_executor_name_has_its_backend_and_nothing_else_does():
    kinds = {"local": LocalExecutor, "slurm": SlurmExecutor, "awsbatch": BatchExecutor}
    assert set(kinds) == set(EXECUTORS)
    for name in EXECUTORS:
        backend = executor(name, jobs_dir="/shared/jobs", batch=BatchConfig(job_queue="q"))
        assert isinstance(backend, kinds[name]) and backend.name == name
        assert backend.submits == (name != "local")
    assert executor("slurm", jobs_dir="/shared/jobs").jobs_dir == "/shared/jobs"
    with pytest.raises(ConfigError, match=r"'pbs' is not available; use one of \['local'"):
        executor("pbs")


def test_task_ids_name_their_jobs():
    assert slurm_job_of("4711_3") == "4711" and slurm_job_of("4711") == "4711"
    assert batch_job_of("9ccc2fa1-9be8:12") == "9ccc2fa1-9be8"
    assert executor("slurm").job_of("88_1") == "88"
    assert executor("awsbatch").job_of("ab:0") == "ab"


class FakeScheduler:
    """A fake backend whose jobs end after ``polls`` questions."""

    name = "fake"
    submits = True
    active_states = frozenset({"RUNNING"})

    def __init__(self, polls: int) -> None:
        self.polls, self.asked = polls, 0

    def ended(self, job_ids):  # noqa: ANN001, ANN201
        self.asked += 1
        done = self.asked >= self.polls
        return done, {j: "SUCCEEDED" if done else "RUNNING" for j in job_ids}


def test_the_one_wait_loop_returns_final_states_or_times_out():
    fake = FakeScheduler(polls=3)
    assert wait_jobs(fake, ["a", "b"], timeout_s=10, poll_s=0.01) == {
        "a": "SUCCEEDED", "b": "SUCCEEDED"
    }  # fmt: skip
    assert fake.asked == 3
    with pytest.raises(JobError, match=r"\['a'\] not finished after 0 s: \{'a': 'RUNNING'\}"):
        wait_jobs(FakeScheduler(polls=10**9), ["a"], timeout_s=0.05, poll_s=0.01)


def test_local_has_nothing_to_wait_for():
    local = executor("local")
    assert local.ended(["x"]) == (True, {}) and local.states(["x"]) == {}
