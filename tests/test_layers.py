"""The import direction of the package: every module imports only from its own layer or below.

Layers, top to bottom (issue #16): the CLI; studies (ablate/sweep/tune and their reports); the
runner (one run: build, train, evaluate, resume; executors); the experiment schema (which
needs the model registry); models; training; evaluation; data; config and run folders; the
base (seeding, errors, threads). A lazy import inside a function counts too: a circle hidden in
a function body is still a circle, it only fails later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import recbench

PACKAGE = Path(recbench.__file__).parent

# prefix → layer (0 = top); the longest matching prefix decides
LAYERS: dict[str, int] = {
    "recbench.__main__": 0,
    "recbench.cli": 0,
    "recbench.studies": 1,
    "recbench.studies.schema": 1,
    "recbench.studies.cells": 1,
    "recbench.studies.planning": 1,
    "recbench.studies.run": 1,
    "recbench.studies.collect": 1,
    "recbench.studies.statistics": 1,
    "recbench.studies.ledger": 1,
    "recbench.studies.tables": 1,
    "recbench.studies.report": 1,
    "recbench.studies.search": 1,
    "recbench.tune": 1,
    "recbench.summary": 1,
    "recbench.claims": 1,
    "recbench.study_session": 1,
    "recbench.protocol": 1,
    "recbench.stats": 1,
    "recbench.runner": 2,
    "recbench.executors": 2,
    "recbench.experiment": 3,
    "recbench.models": 4,
    "recbench.train": 5,
    "recbench.eval": 6,
    "recbench.data": 7,
    "recbench.config": 8,
    "recbench.runs": 8,
    "recbench.seeding": 9,
    "recbench.errors": 9,
    "recbench.threads": 9,
    "recbench.memory": 9,
    "recbench.plugins": 9,
    "recbench": 9,
}


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every recbench module the file imports, at top level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "recbench":
                # `from recbench.models import mf` imports the module recbench.models.mf;
                # `from recbench.config import Strict` resolves back to recbench.config
                found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "recbench")
    return found


def all_modules() -> dict[str, set[str]]:
    """Each module and the recbench modules it imports (names resolved to their module)."""
    raw = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}

    def resolve(target: str) -> str:
        while target not in raw and "." in target:
            target = target.rpartition(".")[0]
        return target

    return {m: {resolve(t) for t in ts} - {m} for m, ts in raw.items()}


def test_every_module_has_a_layer() -> None:
    for module in all_modules():
        assert layer_of(module) >= 0, module


def test_imports_only_point_down() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in all_modules().items()
        for target in targets
        if layer_of(target) < layer_of(module)
    ]
    upward = sorted(set(upward))
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_no_import_circle() -> None:
    """Modules, not only layers: two modules of one layer must not import each other either."""
    edges = all_modules()
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)
