"""slurm/templates/ are what orgseg renders for the reference run on the spot-GPU profile
(regenerate with ORGSEG_UPDATE_GOLDEN=1), and slurm/site/ defines what they ask for."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import yaml

from orgseg.config import ClusterConfig, load_run_config
from orgseg.configtools import load_dataclass
from orgseg.orchestrate.sbatch import site_templates
from orgseg.pipeline.jobs import JOB_NAMES
from orgseg.pipeline.shards import SHARDING, RunSize, default_count

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "slurm" / "templates"


def reference_on_spot_profile():
    config = load_run_config((ROOT / "jobs" / "reference.yaml").read_text())
    profile = yaml.safe_load((ROOT / "jobs" / "profiles" / "spot-gpu.yaml").read_text())
    cluster = load_dataclass(ClusterConfig, profile["cluster"], where="spot-gpu.yaml")
    # the reference study's 4,082 cases (408 held out): the default shard counts
    size = RunSize(cases=4082, train=3674, test=408, organs=26)
    shards = {j: default_count(j, size) for j in SHARDING}
    return dataclasses.replace(config, cluster=cluster, shards=shards)


def test_templates_are_what_orgseg_renders():
    rendered = site_templates(reference_on_spot_profile())
    assert tuple(rendered) == JOB_NAMES
    for name, text in rendered.items():
        path = TEMPLATES / f"{name}.sbatch"
        if os.environ.get("ORGSEG_UPDATE_GOLDEN"):
            path.write_text(text)
        assert path.read_text() == text, f"{path} is stale: rerun with ORGSEG_UPDATE_GOLDEN=1"
    train = (TEMPLATES / "strategy1-train.sbatch").read_text()
    assert "#SBATCH --array=0-129%64" in train  # 26 organs x 5 folds, 64 at once
    assert "#SBATCH --partition=spot-gpu" in train and "#SBATCH --qos=preemptible" in train
    assert "#SBATCH --signal=USR2@300" in train
    assert "#SBATCH --dependency=afterok:JOBID-strategy1-data" in train
    pseudo = (TEMPLATES / "pseudo-labels.sbatch").read_text()
    assert "#SBATCH --array=0-183%" in pseudo  # 3,674 training cases, 20 per shard
    fusion = (TEMPLATES / "fusion.sbatch").read_text()
    assert "#SBATCH --dependency=afterok:JOBID-cv-dice:JOBID-pseudo-qc" in fusion


def test_site_config_defines_every_partition_qos_and_gres_the_templates_use():
    conf = (ROOT / "slurm" / "site" / "slurm.conf.example").read_text()
    partitions = set(re.findall(r"^PartitionName=(\S+)", conf, re.M))
    used = set()
    for path in TEMPLATES.glob("*.sbatch"):
        used |= set(re.findall(r"^#SBATCH --partition=(\S+)", path.read_text(), re.M))
    assert used and used <= partitions, f"templates use {used}, the site defines {partitions}"
    assert "GresTypes=gpu" in conf and "PreemptMode=REQUEUE" in conf
    assert re.search(r"^PartitionName=spot-gpu .*PreemptMode=REQUEUE", conf, re.M)
    assert "JobRequeue=1" in conf
    gres = (ROOT / "slurm" / "site" / "gres.conf.example").read_text()
    assert re.search(r"^NodeName=\S+ Name=gpu", gres, re.M)
