"""The folder tree is the architecture: each layer imports only the layers below it (docs/architecture.md).

Read from the source, as the imports are written (function-level imports included): no
module imports a layer above its own, no import cycle, no module over 400 lines, no
function over 60.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fnlabel"

#: layer of each module, lowest first; tasks and backends share a rank and never import each other
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("contract", ("errors", "types", "formats", "seeds", "validators", "frozen", "redact", "registry", "structured")),
    ("tasks", ("tasks",)),
    ("backends", ("backends",)),
    ("llm", ("llm",)),
    ("combinators", ("combinators",)),
    ("recipes", ("recipes",)),
    ("run", ("run",)),
    ("batches", ("batches",)),
    ("cli", ("cli", "__main__", "")),
]
RANK = {
    "contract": 0,
    "tasks": 1,
    "backends": 1,
    "llm": 2,
    "combinators": 3,
    "recipes": 4,
    "run": 5,
    "batches": 6,
    "cli": 7,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(p for p in parts if p != "__init__")


def _layer(module: str) -> str:
    head = module.split(".")[0]
    for name, members in LAYERS:
        if head in members:
            return name
    raise AssertionError(f"fnlabel.{module} belongs to no layer: add it to LAYERS (and docs/architecture.md)")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The fnlabel modules (relative to ``fnlabel``) that ``module`` imports, anywhere in its code."""
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(["fnlabel", *here[: len(here) - node.level + 1], *([base] if base else [])])
            names = [f"{base}.{a.name}" for a in node.names]  # (resolved to base below when not a module)
        for name in names:
            if name == "fnlabel" or name.startswith("fnlabel."):
                found.add(name.removeprefix("fnlabel").removeprefix("."))
    return found


def _graph() -> dict[str, set[str]]:
    files = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    known = {_module(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        module = _module(path)
        deps = set()
        for name in _imports(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py"):
            while name and name not in known:  # "from fnlabel.tasks import inputs" names the module tasks.inputs
                name = name.rpartition(".")[0]
            # a package's __init__ re-exporting its own children is not a dependency of the design
            if name != module and not (path.name == "__init__.py" and name.startswith(f"{module}.")):
                deps.add(name)
        graph[module] = deps
    return graph


def test_every_module_imports_only_its_own_layer_and_those_below() -> None:
    wrong = []
    for module, deps in _graph().items():
        mine = _layer(module)
        for dep in deps:
            theirs = _layer(dep)
            if RANK[theirs] > RANK[mine] or (RANK[theirs] == RANK[mine] and theirs != mine):
                wrong.append(f"fnlabel.{module} ({mine}) imports fnlabel.{dep} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = []

    def visit(node: str, path: list[str], seen: set[str]) -> None:
        for dep in graph.get(node, ()):
            if dep == path[0]:
                cycles.append(" -> ".join([*path, dep]))
            elif dep not in seen and dep > path[0]:  # each cycle is found once, from its smallest module
                seen.add(dep)
                visit(dep, [*path, dep], seen)

    for start in graph:
        visit(start, [start], {start})
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 400, f"{path.name}: {len(source.splitlines())} lines (at most 400)"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 60, f"{path.name}:{node.lineno} {node.name}: {length} lines (at most 60)"
