"""The import direction of the package: every module imports only from its own layer or below.

Layers, top to bottom (issue #16): the CLI; studies (ablate/sweep/tune and their reports); the
runner (one run: build, train, evaluate, resume; executors); the experiment schema (which
needs the model registry); models; training; evaluation; data; config and run folders; the
base (seeding, errors, threads). Above them all sits bench/ (issue 35): it may import anything
from recbench, and nothing imports it. A lazy import inside a function counts too: a circle
hidden in a function body is still a circle, it only fails later.

The table is explicit: a module is placed by its own name or by the subpackage it lives in
(``recbench.data`` places ``recbench.data.parsers``); the package root ``recbench`` is placed by
its exact name only, so a new top-level module that nobody placed fails
``test_every_module_has_a_layer`` instead of falling into a catch-all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

import recbench

PACKAGE = Path(recbench.__file__).parent
BENCH = PACKAGE.parent / "bench"
ROOT_PACKAGE = "recbench"  # placed by its exact name only: no catch-all for its modules
TOPS = {"recbench", "bench"}  # whose imports the test follows

# module or subpackage → layer (0 = the CLI; bench above it); the longest matching name decides
LAYERS: dict[str, int] = {
    "bench": -1,
    "recbench.__main__": 0,
    "recbench.cli": 0,
    "recbench.cli.common": 0,
    "recbench.cli.options": 0,
    "recbench.cli.data": 0,
    "recbench.cli.runs": 0,
    "recbench.cli.studies": 0,
    "recbench.cli.summary": 0,
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
    "recbench.process": 2,
    "recbench.experiment": 3,
    "recbench.models": 4,
    "recbench.train": 5,
    "recbench.eval": 6,
    "recbench.data": 7,
    "recbench.data.datasets": 7,
    "recbench.data.atomic": 7,
    "recbench.config": 8,
    "recbench.runs": 8,
    "recbench.tracking": 8,
    "recbench.seeding": 9,
    "recbench.errors": 9,
    "recbench.threads": 9,
    "recbench.memory": 9,
    "recbench.plugins": 9,
    "recbench.checksums": 9,
    "recbench.native": 9,
    "recbench.composite": 1,
    "recbench.csr": 9,
    "recbench.cpu": 9,
    "recbench": 9,
}


def layer_of(module: str, layers: dict[str, int] = LAYERS) -> int | None:
    """The layer of ``module``, or None where the table does not place it."""
    names = [p for p in layers
             if module == p or (p != ROOT_PACKAGE and module.startswith(p + "."))]
    return layers[max(names, key=len)] if names else None


def check_placed(modules: Iterable[str], layers: dict[str, int] = LAYERS) -> None:
    """Fail naming every module the table does not place."""
    missing = sorted(m for m in modules if layer_of(m, layers) is None)
    assert not missing, ("modules without a layer (add each to LAYERS in tests/test_layers.py):\n"
                         + "\n".join(missing))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every recbench or bench module the file imports, at top level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in TOPS:
                # `from recbench.models import mf` imports the module recbench.models.mf;
                # `from recbench.config import Strict` resolves back to recbench.config
                found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in TOPS)
    return found


def all_modules() -> dict[str, set[str]]:
    """Each module of recbench and bench and the modules it imports (names resolved to their
    module)."""
    files = sorted(PACKAGE.rglob("*.py")) + sorted(BENCH.rglob("*.py"))
    raw = {module_name(p): imports_of(p) for p in files}

    def resolve(target: str) -> str:
        while target not in raw and "." in target:
            target = target.rpartition(".")[0]
        return target

    return {m: {resolve(t) for t in ts} - {m} for m, ts in raw.items()}


def test_every_module_has_a_layer() -> None:
    modules = all_modules()
    assert "bench.common" in modules and "recbench.cli" in modules  # both trees are read
    check_placed(modules)


def test_the_layer_check_fails_on_an_unplaced_module() -> None:
    """The check itself, on a synthetic module set: a new top-level module nobody placed fails
    it (the old ``"recbench"`` catch-all gave every such module the base layer, so it could
    not fail); a new module inside a placed subpackage, or a new benchmark, is placed."""
    placed = {"recbench", "recbench.cli", "recbench.data.new_format", "bench.bench_new"}
    check_placed(placed)
    with pytest.raises(AssertionError, match=r"recbench\.brand_new\b") as failure:
        check_placed(placed | {"recbench.brand_new"})
    assert "recbench.data.new_format" not in str(failure.value)
    assert layer_of("recbench.brand_new") is None and layer_of("recbench") == 9
    assert layer_of("bench.bench_new") < layer_of("recbench.cli")


def test_imports_only_point_down() -> None:
    layer = {m: layer_of(m) for m in all_modules()}  # an unplaced one fails the test above
    upward = [
        f"{module} (layer {layer[module]}) imports {target} (layer {layer[target]})"
        for module, targets in all_modules().items()
        for target in targets
        if None not in (layer[module], layer.get(target)) and layer[target] < layer[module]
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
