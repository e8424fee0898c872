"""What the last submission sent to a scheduler (Slurm or AWS Batch): job name -> its
tasks and their units, in ``<run_root>/jobs/submission.json``; and the one plan both
executors submit by (:func:`submit_pending`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orgseg.config import RunConfig
from orgseg.io import exists, read_bytes, write_bytes
from orgseg.pipeline.layout import RunLayout

if TYPE_CHECKING:
    from orgseg.pipeline.jobs import Job, UnitKey

#: ``send(job, units, after)`` submits ``units`` of ``job`` after the scheduler jobs
#: ``after``; returns the scheduler's job id and one task id per unit
Send = Callable[["Job", Sequence["UnitKey"], Sequence[str]], tuple[str, Sequence[str]]]


@dataclass
class Submission:
    """What the last submission sent: job name -> its tasks (scheduler ids) and units."""

    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"jobs": self.jobs}, indent=1).encode()


def submission_url(config: RunConfig) -> str:
    return RunLayout.of(config).jobs_file("submission.json")


def load_submission(config: RunConfig) -> Submission:
    url = submission_url(config)
    if not exists(url):
        return Submission()
    return Submission(jobs=json.loads(read_bytes(url))["jobs"])


def submit_pending(
    config: RunConfig,
    states_of: Callable[[Sequence[str]], Mapping[str, str]],
    active_states: Collection[str],
    job_of_task: Callable[[str], str],
    send: Send,
) -> Submission:
    """Every job with pending units, in the job table's order: units whose task of the last
    submission is still queued or running (``states_of`` in ``active_states``) are kept,
    not sent again; the rest go through ``send`` after the jobs that the job follows
    (their in-flight and new scheduler jobs). Committed units are not pending, so never
    sent. The result is also written to ``<run_root>/jobs/submission.json``."""
    from orgseg.pipeline.units import pending

    previous = load_submission(config)
    known = [t["task"] for tasks in previous.jobs.values() for t in tasks]
    states = states_of(known) if known else {}
    sent = Submission()
    job_ids: dict[str, list[str]] = {}
    for job, units in pending(config):
        active = {
            tuple(t["unit"]): t
            for t in previous.jobs.get(job.name, [])
            if states.get(t["task"]) in active_states
        }
        todo = [u for u in units if tuple(u) not in active]
        ids = sorted({job_of_task(t["task"]) for t in active.values()})
        sent.jobs[job.name] = list(active.values())
        if todo:
            after = [jid for name in job.after for jid in job_ids.get(name, [])]
            job_id, tasks = send(job, todo, after)
            sent.jobs[job.name] += [
                {"unit": list(u), "task": t} for u, t in zip(todo, tasks, strict=True)
            ]
            ids.append(job_id)
        job_ids[job.name] = ids
    write_bytes(submission_url(config), sent.to_json())
    return sent
