"""What the last submission sent to a scheduler (Slurm or AWS Batch): job name -> its
tasks and their units, in ``<run_root>/jobs/submission.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from orgseg.config import RunConfig
from orgseg.io import exists, join_url, read_bytes


@dataclass
class Submission:
    """What the last submission sent: job name -> its tasks (scheduler ids) and units."""

    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"jobs": self.jobs}, indent=1).encode()


def submission_url(config: RunConfig) -> str:
    return join_url(config.run_root, "jobs", "submission.json")


def load_submission(config: RunConfig) -> Submission:
    url = submission_url(config)
    if not exists(url):
        return Submission()
    return Submission(jobs=json.loads(read_bytes(url))["jobs"])
