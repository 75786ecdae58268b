"""core/'s packages import one way only, read from the source (ast, nothing executed).

Every import counts, top-level, inside a function or under TYPE_CHECKING: a lazy or
type-only import is still a dependency, so it cannot dodge a cycle. Only the CLI imports
inside functions, so that `python -m core --help` starts without torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"

# Lowest first: a package may import only those before it.
LAYERS = (
    "errors",
    "base",
    "loading",
    "runtime",
    "workspace",
    "sae",
    "cache",
    "features",
    "interventions",
    "evaluation",
    "effects",
    "relearning",
    "labels",
    "selection",
    "sweeps",
    "scale",
    "cli",
)
LAZY_ALLOWED = ("cli",)  # command modules import their work when the command runs


def _unit(path: Path) -> str:
    """The layer a file of core/ belongs to: its subpackage, or a top-level module's name."""
    parts = path.relative_to(CORE).with_suffix("").parts
    return parts[0]


def _module(path: Path) -> str:
    parts = ("core", *path.relative_to(CORE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for each import of core in a file."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{alias.name}" for alias in child.names]
            for name in names:
                if name.startswith("core."):
                    found.append((name, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def _edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for every import between units of core/."""
    edges = []
    for path in sorted(CORE.rglob("*.py")):
        source = _unit(path)
        for name, line, _ in _imports(path):
            target = name.split(".")[1]
            if target != source:
                edges.append((source, target, f"{path.relative_to(CORE.parent)}:{line}"))
    return edges


def test_every_unit_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in CORE.iterdir()}
    units -= {"__init__", "__main__", "__pycache__"}
    assert units == set(LAYERS)


def test_imports_only_go_down_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        f"{where}: {source} imports {target}"
        for source, target, where in _edges()
        if source in rank and rank[target] > rank[source]
    ]
    assert not upward, "\n".join(upward)


def test_no_cycle_between_modules():
    """Module by module too (TYPE_CHECKING and function-level imports included)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(CORE.rglob("*.py")):
        module = _module(path)
        graph[module] = {name for name, _, _ in _imports(path)}
    modules = set(graph)

    def resolve(name: str) -> str | None:  # `from core.loading import data` names a module
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: {r for n in names if (r := resolve(n)) and r != m} for m, names in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if not state.get(target) and (cycle := walk(target)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if not state.get(module):
            cycle = walk(module)
            assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_no_lazy_import_outside_the_cli(path: Path):
    if _unit(path) in LAZY_ALLOWED:
        return
    lazy = [f"line {line}: {name}" for name, line, inside in _imports(path) if inside]
    assert not lazy, f"{path.relative_to(CORE.parent)} imports core inside a function: {lazy}"
