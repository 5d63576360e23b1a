"""The package's structure: layers import only those below them, no import circle, and the
analytic core runs without torch or optuna (docs/architecture.md)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nasopt"

# lowest first; a module may import its own layer and the layers before it
LAYERS = [
    "errors",
    "spec",
    "core",
    "presets",
    "space",
    "describe",
    "accuracy",
    "samplers",
    "study",
    "deploy",
    "views",
    "cli",
]
TOP = {"__init__", "__main__"}  # the public face may import every layer


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every nasopt module `name` imports, anywhere in the file (TYPE_CHECKING and function
    bodies included: a lazy import is still a dependency)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.startswith("nasopt"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base])
            if not base.startswith("nasopt"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None
    head = parts[1]
    if head in TOP:
        return None
    return LAYERS.index(head)


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def test_every_module_belongs_to_a_layer() -> None:
    for module in _modules():
        parts = module.split(".")
        if len(parts) > 1 and parts[1] not in TOP:
            assert parts[1] in LAYERS, f"{module} is in no layer; add it to docs/architecture.md and here"


def test_layers_import_only_those_below() -> None:
    bad = []
    for module, deps in _graph().items():
        mine = _layer(module)
        if mine is None:
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs is None or theirs > mine:
                bad.append(f"{module} -> {dep}")
    assert not bad, "imports that go up a layer:\n" + "\n".join(sorted(bad))


def test_no_import_circle() -> None:
    graph = _graph()
    # a package's __init__ re-exports its modules: an edge from a module to its own package
    # would be a circle through the __init__
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_spec_calls_nothing_in_the_core() -> None:
    for module, deps in _graph().items():
        if module.startswith("nasopt.spec"):
            assert all(not d.startswith(("nasopt.core", "nasopt.presets")) for d in deps), module


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("nasopt.core", ["torch", "optuna"]),
        ("nasopt.presets", ["torch", "optuna"]),
        ("nasopt.space", ["torch", "optuna"]),
        ("nasopt", ["torch", "optuna"]),
        ("nasopt.study.objective", ["torch"]),
    ],
)
def test_light_layers_import_neither_torch_nor_optuna(module: str, forbidden: list[str]) -> None:
    code = (
        f"import json, sys; import {module}; "
        f"print(json.dumps([m for m in {forbidden!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [], f"importing {module} pulled in {out.stdout.strip()}"


def test_the_core_evaluates_a_preset_without_torch_or_optuna() -> None:
    code = (
        "import json, sys\n"
        "from nasopt import SearchSpace, build_system, evaluate, load_objective, load_space\n"
        "system = build_system(load_objective('jmsnas-chain'))\n"
        "space = SearchSpace(load_space('mbconv-jmsnas-32'), system)\n"
        "ev = evaluate(space.network(space.largest()), system)\n"
        "print(json.dumps([ev.latency_ms > 0, 'torch' in sys.modules, 'optuna' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [True, False, False]
