"""The documentation says what the code does: the generated references are current, every
config key is explained, and the README's commands and flags exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from orgseg import reference

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
STALE = "is stale: run `.venv/bin/python -m orgseg.reference` and commit the result"


@pytest.mark.parametrize(
    ("rel", "make"),
    [
        (reference.CLI_DOC, reference.cli_reference),
        (reference.CONFIG_DOC, reference.config_reference),
    ],
)
def test_generated_references_are_current(rel, make):
    assert (ROOT / rel).read_text() == make(), f"{rel} {STALE}"


def test_every_config_key_is_explained():
    missing = [
        line.split("|")[1].strip()
        for line in reference.config_reference().splitlines()
        if line.startswith("| `") and line.rstrip().endswith("|  |")
    ]
    assert not missing, f"add a #: comment above these fields in orgseg/config.py: {missing}"


def _readme_commands() -> list[list[str]]:
    """Every ``orgseg ...`` command line of the README's shell blocks, continuations joined."""
    text = README.read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line.startswith("orgseg "):
                out.append(shlex.split(line)[1:])
    return out


def test_the_readme_is_a_front_door_whose_commands_and_flags_exist():
    from orgseg.cli import build_parser

    assert len(README.read_text().splitlines()) < 200
    commands = _readme_commands()
    assert len(commands) >= 10  # the quick starts are there
    parser = build_parser()
    subcommands = dict(reference._subcommands(parser))
    top = {o for a in parser._actions for o in a.option_strings}
    for argv in commands:
        name = argv[0]
        if name.startswith("-"):
            assert name in top, f"README: orgseg has no {name}"
            continue
        assert name in subcommands, f"README: `orgseg {name}` is not a command"
        known = {o for a in subcommands[name]._actions for o in a.option_strings}
        flags = [a.split("=")[0] for a in argv if a.startswith("-")]
        unknown = [f for f in flags if f not in known]
        assert not unknown, f"README: `orgseg {name}` has no {unknown}"


def test_the_readmes_links_lead_somewhere():
    text = README.read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 10
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"
    for doc in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in link:
                assert (doc.parent / link).exists(), f"{doc.name} links to missing {link}"


def test_the_engine_flags_help_is_the_fields_own_description():
    from orgseg.cli import build_parser
    from orgseg.configtools import field_help
    from orgseg.inference.options import EngineOptions

    subcommands = dict(reference._subcommands(build_parser()))
    described = field_help(EngineOptions)
    for command in ("segment", "bulk"):
        helps = {a.dest: a.help for a in subcommands[command]._actions}
        for flag in ("chunk_mode", "chunk_mm", "overlap_mm", "tile_batch"):
            field = "mode" if flag == "chunk_mode" else flag
            assert described[field] in helps[flag], (command, flag)
