"""The package's layers, as docs/code-layout.md states them: every import (lazy ones
inside functions included) goes down or sideways within a package, never up, and no two
modules import each other at import time."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "orgseg"

#: each top-level package or module of orgseg, lowest first; an import may only reach a
#: lower layer (or its own package)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "defaults"),
    ("catalog", "configtools"),
    ("core",),
    ("io", "render"),
    ("sources", "nnunet"),
    ("phantoms", "models"),
    ("inference",),
    ("config", "evaluation"),
    ("pipeline",),
    ("orchestrate",),
    ("cli_eval", "cli_models"),
    ("cli",),
    ("reference", "__main__"),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The orgseg modules ``path`` imports (``from orgseg.x import y`` counts as x.y when
    that is a module, else x); top-level only: not inside functions or TYPE_CHECKING."""
    modules = _modules()
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("orgseg"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("orgseg.")}
    return out - {"orgseg"}


def test_every_package_is_in_a_layer():
    units = {_unit(m) for m in _modules() if m != "orgseg"}
    assert units <= set(LAYER), f"add {sorted(units - set(LAYER))} to LAYERS"


def test_no_import_goes_up_a_layer():
    upward = []
    for module, path in _modules().items():
        if module == "orgseg":
            continue
        src = _unit(module)
        for target in _imports(path, top_level_only=False):
            dst = _unit(target)
            if dst != src and LAYER[dst] >= LAYER[src]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that go up (or sideways between packages):\n" + "\n".join(
        sorted(upward)
    )


def test_no_import_cycle_at_import_time():
    graph: dict[str, set[str]] = defaultdict(set)
    modules = _modules()
    for module, path in modules.items():
        graph[module] = {m for m in _imports(path, top_level_only=True) if m in modules}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "modules that import each other: " + "; ".join(
        " -> ".join(c) for c in cycles
    )


def test_the_checks_catch_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a core module importing the orchestration layer is caught."""
    fake = tmp_path / "orgseg"
    (fake / "core").mkdir(parents=True)
    (fake / "orchestrate").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "core" / "__init__.py").write_text("")
    (fake / "orchestrate" / "__init__.py").write_text("")
    (fake / "core" / "bad.py").write_text("def f():\n    from orgseg.orchestrate import x\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    try:
        test_no_import_goes_up_a_layer()
    except AssertionError as exc:
        assert "orgseg.core.bad -> orgseg.orchestrate" in str(exc)
    else:
        raise AssertionError("an upward import went unnoticed")


def test_run_root_paths_come_from_the_run_layout():
    """RunLayout is the one map of a run folder: no other module joins onto the run root."""
    import re

    pattern = re.compile(r"join_url\(\s*(config\.run_root|run_root|layout\.root)\b")
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{n}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "layout.py"
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not offenders, f"build these paths with RunLayout (pipeline/layout.py): {offenders}"
