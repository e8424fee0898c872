"""`orgseg run JOB` on an s3:// run root goes the train-all way: nnU-Net's folders staged to
scratch and synced to the bucket, done checks, unit markers (it used to write a local
folder named `s3:` that nothing ever saw)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orgseg.cli import main
from orgseg.io import exists, read_bytes
from orgseg.io.storage import list_files
from orgseg.pipeline.phantom_set import PhantomSetConfig, write_phantom_set

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.s3, pytest.mark.nnunet, pytest.mark.slow]


def test_orgseg_run_on_an_s3_run_root(bucket, s3_server, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a stray local "s3:" folder would appear here
    data = yaml.safe_load((ROOT / "jobs" / "ci.yaml").read_text())
    data.update(run_root=f"{bucket}/run", data_root=f"{bucket}/data")
    data["storage"] = {"endpoint_url": s3_server.endpoint}
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(data))
    write_phantom_set(
        f"{bucket}/data",
        PhantomSetConfig(n_sources=2, n_cases=6, seed=2, organs=("liver", "lungs")),
    )
    assert main(["run", "cases", "-c", str(cfg)]) == 0
    assert main(["run", "manifest", "-c", str(cfg)]) == 0
    assert main(["run", "strategy1-data", "-c", str(cfg), "--unit", "liver"]) == 0
    out = capsys.readouterr().out
    assert "cases 0_1: done in" in out and "manifest all: done in" in out
    assert "strategy1-data liver: done in" in out
    files = list_files(f"{bucket}/run")
    assert any(f.endswith("/splits_final.json") and "/preprocessed/" in f for f in files)
    marker = json.loads(read_bytes(f"{bucket}/run/units/strategy1-data/liver.json"))
    assert marker["job"] == "strategy1-data" and marker["wall_s"] > 0
    assert not exists(f"{bucket}/run/units/strategy1-data/lungs.json")  # only the named unit
    assert not (tmp_path / "s3:").exists()
    # a second run finds the unit committed
    assert main(["run", "strategy1-data", "-c", str(cfg), "--unit", "liver"]) == 0
    assert "already done" in capsys.readouterr().out
    assert main(["run", "strategy1-data", "-c", str(cfg), "--unit", "kidney"]) == 2
