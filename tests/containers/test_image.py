"""The CPU image, built for real with podman from a Debian base bootstrapped without any
registry, then run offline: ``orgseg --version`` and a small stage.

One slow test (a few minutes the first time; podman's layer cache makes reruns quick).
Needs root, podman, runc and debootstrap: ``make container-tools`` (``.ci/run`` does it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/orgseg:cpu-test"
pytestmark = [pytest.mark.slow, pytest.mark.container]
RUN = [
    "podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--rm",
    "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
]  # fmt: skip


def sh(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def image() -> str:
    missing = [t for t in ("podman", "runc", "debootstrap") if shutil.which(t) is None]
    assert not missing, f"{missing} not installed: run `make container-tools` (as root)"
    base = sh(["bash", "containers/bootstrap-base.sh"], cwd=ROOT, timeout=1200)
    assert base.returncode == 0, base.stdout[-3000:] + base.stderr[-3000:]
    build = sh(
        ["bash", "containers/build.sh", "cpu"],
        cwd=ROOT,
        timeout=2400,
        env={**os.environ, "TAG": TAG},
    )
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-3000:]
    return TAG


def test_cpu_image_runs_orgseg_offline_as_non_root(image, tmp_path):
    version = sh([*RUN, image, "--version"], timeout=120)
    assert version.returncode == 0, version.stderr
    from orgseg import __version__

    assert version.stdout.strip() == f"orgseg {__version__}"
    uid = sh([*RUN, "--entrypoint", "id", image, "-u"], timeout=120)
    assert uid.stdout.strip() not in ("", "0")
    # a small stage, data in and out through a bind mount, no network
    tmp_path.chmod(0o777)
    data = f"{tmp_path}:/data"
    made = sh([*RUN, "-v", data, image, "phantoms", "-o", "/data/ph", "--sources", "1",
               "--cases", "1", "--seed", "3"], timeout=600)  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    ct = next((tmp_path / "ph").rglob("imagesTr/*.nii.gz"))
    inside = "/data/" + str(ct.relative_to(tmp_path))
    body = sh([*RUN, "-v", data, image, "body-mask", "-i", inside, "-o", "/data/body.nii.gz"],
              timeout=600)  # fmt: skip
    assert body.returncode == 0, body.stderr[-2000:]
    from orgseg.io import read_volume

    mask = np.asarray(read_volume(str(tmp_path / "body.nii.gz")).array)
    assert mask.shape == np.asarray(read_volume(str(ct)).array).shape
    assert 0.05 < mask.mean() < 0.9  # a body, not nothing and not the whole field of view
