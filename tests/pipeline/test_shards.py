"""Shard counts of the case-level jobs: named in the config, else scaled with the case
count, worked out once per run and recorded so every process agrees."""

from __future__ import annotations

import dataclasses
import json

import pytest

from orgseg.config import RunConfig
from orgseg.core.splits import shard_of
from orgseg.errors import ConfigError
from orgseg.pipeline import shards
from orgseg.pipeline.jobs import check_config, job
from orgseg.pipeline.shards import RunSize, default_count, shard_counts, with_shard_counts


def _run_with_manifest(tmp_path, n_cases: int, n_test: int) -> RunConfig:
    config = RunConfig(run_root=str(tmp_path / "run"), data_root=str(tmp_path / "data"))
    (tmp_path / "run").mkdir()
    cases = [{"case_id": f"c{i}"} for i in range(n_cases)]
    test = [f"c{i}" for i in range(n_test)]
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"cases": cases, "test": test}))
    return config


def test_default_counts_scale_with_the_cases_each_job_works_on():
    size = RunSize(cases=4082, train=3674, test=408, organs=26)
    assert {j: default_count(j, size) for j in shards.SHARDING} == {
        "cases": 82,  # 50 per shard
        "pseudo-labels": 184,  # 20 training cases per shard
        "fusion": 37,  # 100
        "test-predictions": 41,  # 10 test cases
    }
    tiny = RunSize(cases=3, train=2, test=1, organs=2)
    assert all(default_count(j, tiny) == 1 for j in shards.SHARDING)
    huge = RunSize(cases=10**6, train=10**6, test=10**5, organs=26)
    assert default_count("pseudo-labels", huge) == shards.MAX_SHARDS  # Slurm's array limit


def test_counts_are_worked_out_once_and_recorded_in_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "_RECORDED", {})
    config = _run_with_manifest(tmp_path, n_cases=250, n_test=25)
    counts = shard_counts(config)
    assert counts == {"cases": 5, "pseudo-labels": 12, "fusion": 3, "test-predictions": 3}
    recorded = json.loads((tmp_path / "run" / "jobs" / "shards.json").read_text())
    assert recorded == counts
    # another process (the cache emptied) after the case count changed: the record wins
    monkeypatch.setattr(shards, "_RECORDED", {})
    (tmp_path / "run" / "manifest.json").write_text(
        json.dumps({"cases": [{"case_id": "a"}], "test": []})
    )
    assert shard_counts(config) == counts
    # a count the config names wins over the record, the others stay
    named = dataclasses.replace(config, shards={"pseudo-labels": 7})
    assert shard_counts(named)["pseudo-labels"] == 7
    assert shard_counts(named)["fusion"] == 3
    assert job("pseudo-labels").units(named) == tuple((s, 7) for s in range(7))
    # what array tasks are given: every count written in, so they need no lookup
    assert with_shard_counts(named).shards == {**counts, "pseudo-labels": 7}


def test_a_plan_does_not_write_the_record(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "_RECORDED", {})
    config = _run_with_manifest(tmp_path, n_cases=100, n_test=10)
    assert with_shard_counts(config, record=False).shards["cases"] == 2
    assert not (tmp_path / "run" / "jobs" / "shards.json").exists()


def test_bad_shard_counts_are_refused_with_the_job_names():
    config = RunConfig(run_root="r", data_root="d", shards={"pseudo_labels": 4})
    with pytest.raises(ConfigError, match="unknown jobs \\['pseudo_labels'\\]"):
        check_config(config)
    with pytest.raises(ConfigError, match="bad counts"):
        check_config(RunConfig(run_root="r", data_root="d", shards={"fusion": 0}))


def test_shards_cover_every_case_once():
    ids = [f"case{i:03d}" for i in range(23)]
    parts = [shard_of(reversed(ids), s, 4) for s in range(4)]
    assert sorted(c for p in parts for c in p) == ids
    assert all(len(p) in (5, 6) for p in parts)
    with pytest.raises(ValueError):
        shard_of(ids, 4, 4)
