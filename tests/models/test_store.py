"""Installing model sets: fetch (resumable, verified), import (folder or zip), check."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from orgseg.errors import ConfigError, DataContractError, StorageError
from orgseg.models.download import download
from orgseg.models.registry import model_registry
from orgseg.models.store import (
    SET_MANIFEST,
    check_set,
    fetch_set,
    import_set,
    installed_sets,
    resolve_model,
)
from tests.models import layouts


def _registry_serving(tmp_path: Path, base_url: str, sha: dict[str, str] | None = None) -> Path:
    """A user registry whose totalsegmentator-total comes from ``base_url``."""
    entry = dataclasses.asdict(model_registry()["totalsegmentator-total"])
    entry.pop("name")
    entry["url_base"] = base_url
    for part in entry["parts"]:
        part["sha256"] = (sha or {}).get(part["archive"])
    path = tmp_path / "served.yaml"
    path.write_text(yaml.safe_dump({"model_sets": {"totalsegmentator-total": entry}}))
    return path


def test_fetch_resumes_verifies_and_installs_the_released_zips(
    ts_weights, http_root, tmp_path, monkeypatch
):
    served, base, handler = http_root
    sha = {}
    for part in layouts.TS_PARTS:
        z = layouts.zip_folder(ts_weights / part, served / f"{part}.zip")
        sha[z.name] = hashlib.sha256(z.read_bytes()).hexdigest()
    monkeypatch.setenv("ORGSEG_MODEL_REGISTRY", str(_registry_serving(tmp_path, base, sha)))
    registry = model_registry()
    models = tmp_path / "models"
    handler.cut_after.append(1_000_000)  # the first download breaks after 1 MB
    with pytest.raises(StorageError, match="partial download is kept"):
        fetch_set(registry, "totalsegmentator-total", str(models))
    partial = models / ".downloads" / f"{layouts.TS_PARTS[0]}.zip.part"
    assert partial.stat().st_size == 1_000_000
    result = fetch_set(registry, "totalsegmentator-total", str(models))
    assert f"/{layouts.TS_PARTS[0]}.zip bytes=1000000-" in handler.requests  # resumed
    assert len(result.parts) == 5 and not result.missing
    manifest = json.loads((models / "totalsegmentator-total" / SET_MANIFEST).read_text())
    assert [p["archive_sha256"] for p in manifest["parts"]] == [
        sha[f"{p}.zip"] for p in layouts.TS_PARTS
    ]
    ckpt = Path(result.url) / manifest["parts"][0]["folder"] / "fold_0" / "checkpoint_final.pth"
    assert (
        manifest["parts"][0]["files"]["fold_0/checkpoint_final.pth"]
        == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    )
    assert not list((models / ".downloads").iterdir())  # archives removed once installed
    assert "totalsegmentator-total" in installed_sets(str(models))
    checks = check_set(result.url)
    assert [c.problems for c in checks] == [()] * 5
    assert all(c.lean and c.trainer == "nnUNetTrainerNoMirroring" for c in checks)


def test_a_download_that_does_not_match_its_sha256_is_removed(http_root, tmp_path):
    served, base, _ = http_root
    (served / "a.zip").write_bytes(b"not the published bytes")
    target = tmp_path / "dl" / "a.zip"
    with pytest.raises(StorageError, match="does not match"):
        download(f"{base}/a.zip", target, sha256="0" * 64)
    assert not target.exists() and not target.with_name("a.zip.part").exists()
    with pytest.raises(StorageError, match="HTTP 404"):
        download(f"{base}/missing.zip", target)


def test_import_takes_a_folder_or_a_zip_and_names_missing_parts(ts_weights, tmp_path):
    registry = model_registry()
    models = str(tmp_path / "models")
    # a folder fetched by hand, one level deeper than the release
    result = import_set(registry, "totalsegmentator-total", ts_weights, models, allow_missing=False)
    assert len(result.parts) == 5
    one = layouts.zip_folder(ts_weights / layouts.TS_PARTS[0], tmp_path / "part1.zip")
    with pytest.raises(DataContractError, match="Dataset292_TotalSegmentator"):
        import_set(registry, "totalsegmentator-total", one, models, allow_missing=False)
    # the failed import left the installed set as it was
    assert [c.problems for c in check_set(result.url, load=False)] == [()] * 5


def test_reference_binary_set_imports_the_organs_published(phantom_model_dir, tmp_path):
    drive = layouts.reference_strategy1(phantom_model_dir, tmp_path / "drive")
    registry = model_registry()
    with pytest.raises(DataContractError, match="no result folder matches"):
        import_set(registry, "salimi2025-strategy1", drive, str(tmp_path / "m"),
                   allow_missing=False)  # fmt: skip
    result = import_set(
        registry, "salimi2025-strategy1", drive, str(tmp_path / "m"), allow_missing=True
    )
    assert sorted(p.split("/")[0] for p in result.parts) == sorted(
        f for f, _, _ in layouts.REFERENCE_BINARY
    )
    assert len(result.missing) == 26 - len(layouts.REFERENCE_BINARY)
    checks = check_set(result.url, load=False)
    assert sum(bool(c.problems) for c in checks) == len(result.missing)  # named as missing


def test_check_finds_changed_and_missing_files(ts_weights, tmp_path):
    result = import_set(
        model_registry(), "totalsegmentator-total", ts_weights, str(tmp_path), allow_missing=False
    )
    first, second = (Path(result.url) / p for p in result.parts[:2])
    (first / "plans.json").write_text((first / "plans.json").read_text() + " ")
    (second / "fold_0" / "checkpoint_final.pth").unlink()
    problems = [c.problems for c in check_set(result.url, load=False)]
    assert "changed since it was installed" in problems[0][0]
    assert problems[1] == ("missing fold_0/checkpoint_final.pth",)
    assert problems[2:] == [()] * 3


def test_resolve_model_names_installed_sets_and_says_how_to_install(ts_weights, tmp_path):
    models = str(tmp_path / "models")
    with pytest.raises(DataContractError, match="orgseg models fetch totalsegmentator-total"):
        resolve_model("totalsegmentator-total", models)
    with pytest.raises(DataContractError, match="orgseg models import salimi2025-strategy1"):
        resolve_model("salimi2025-strategy1", models)
    with pytest.raises(ConfigError, match="neither a model folder nor a model set"):
        resolve_model("no-such-set", models)
    import_set(model_registry(), "totalsegmentator-total", ts_weights, models, allow_missing=False)
    assert resolve_model("totalsegmentator-total", models) == f"{models}/totalsegmentator-total"
    assert resolve_model("runs/x/models/strategy2", models) == "runs/x/models/strategy2"


def test_models_cli_lists_installs_and_checks(ts_weights, tmp_path, monkeypatch, capsys):
    from orgseg.cli import main

    monkeypatch.setenv("ORGSEG_MODELS", str(tmp_path / "models"))
    assert main(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert "totalsegmentator-total" in listed and "Apache-2.0" in listed
    assert "totalsegmentator-total-fast" in listed and "moose-clin-ct-organs" in listed
    assert main(["models", "check"]) == 2  # no NAME: a one-line error, not a traceback
    assert "needs a model set NAME" in capsys.readouterr().err
    assert main(["models", "import", "totalsegmentator-total", str(ts_weights)]) == 0
    assert "installed totalsegmentator-total: 5 part(s)" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines()
                if x.startswith("totalsegmentator-total "))  # fmt: skip
    assert "installed" in line
    assert main(["models", "check", "totalsegmentator-total"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok      ") == 5 and "lean" in out and "5 of 5 part(s) ok" in out
