"""Collect a study's results: read the finished runs (or ledger records) of its plan into
per-cell figures, and the figures an extra table reads from each run.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from recbench import runs
from recbench.composite import run_choice
from recbench.errors import ConfigError, RunError
from recbench.studies.cells import Cell, PlannedRun, StudyResult, TableRow
from recbench.studies.schema import ExtraTable, StudyConfig, TableColumn


def column_value(metrics: dict, column: str) -> float | None:
    """A figure of one run's metrics.json: a test metric, ``extra.KEY`` or a top-level key."""
    if column.startswith("extra."):
        value = metrics.get("extra", {}).get(column[len("extra."):])
    else:
        value = metrics["test"].get(column, metrics.get(column))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def figure(metrics: dict, key: str, row: str = "") -> float | None:
    """A figure of one run for an extra table's column: :func:`column_value` of ``key``
    (``key|row`` in a rows study), or the difference ``A - B`` of two such figures."""
    pair = re.fullmatch(r"(\S+)\s+-\s+(\S+)", key)
    if pair:
        a, b = figure(metrics, pair.group(1), row), figure(metrics, pair.group(2), row)
        return None if a is None or b is None else a - b
    return column_value(metrics, f"{key}|{row}" if row else key)


def _column_paper(result: StudyResult, cell: Cell, column: TableColumn) -> float | None:
    source = column.paper or (result.study.paper if column.key == result.metric else {})
    figures = source.get(cell.base, source.get(cell.dataset, {}))
    return figures.get(cell.variant, figures.get(cell.row))


def table_rows(result: StudyResult, table: ExtraTable) -> list[TableRow]:
    """The rows of one of the study's ``tables`` from the finished runs of its cells (cells
    without a finished run are left out, as in the files the side scripts wrote before)."""
    specs = list(table.column_specs().values())
    out = []
    for cell in result.cells:
        if not cell.run_dirs:
            continue
        row = cell.row if result.study.rows else ""
        per_run = [[figure(runs.read_metrics(r), c.key, row) for c in specs] for r in cell.run_dirs]
        paper = [_column_paper(result, cell, c) for c in specs]
        if table.per == "run":
            out += [TableRow(cell, seed, [[] if v is None else [v] for v in figs], paper)
                    for seed, figs in zip(cell.seeds, per_run, strict=True)]
        else:
            columns = [[figs[i] for figs in per_run if figs[i] is not None]
                       for i in range(len(specs))]
            out.append(TableRow(cell, None, columns, paper))
    return out


def default_metric(planned: list[PlannedRun]) -> str:
    for p in planned:
        if p.cached is not None:
            return runs.read_metrics(p.cached)["monitor"]
    return "rmse"


def row_cells(study: StudyConfig, p: PlannedRun) -> list[tuple[str, str, str]]:
    """(label, group, row) of the cells one planned run feeds."""
    if not study.rows:
        return [(p.variant, "", p.variant)]
    if p.variant == "base":
        return [(r, "", r) for r in study.rows]
    return [(f"{p.variant} · {r}", p.variant, r) for r in study.rows]


def per_unit_means(run_dir: Path) -> dict[str, float]:
    """The test metrics that ``per_unit.npz`` of a run (or ledger record) restates: the mean
    of each per-unit vector named like a metric, and rmse/mse/mae from ``squared_error``."""
    path = run_dir / "per_unit.npz"
    if not path.is_file():
        return {}
    out: dict[str, float] = {}
    with np.load(path) as data:
        for key in data.files:
            values = np.asarray(data[key], dtype=np.float64)
            if key in ("user", "index") or values.size == 0:
                continue
            if key == "squared_error":
                out.update(mse=float(values.mean()), rmse=float(np.sqrt(values.mean())),
                           mae=float(np.sqrt(values).mean()))
            else:
                out[key] = float(values.mean())
    return out


def check_per_unit(run_dir: Path) -> None:
    """metrics.json's test means must be the means of the run's per-unit vectors. Why: the
    table publishes the mean from metrics.json beside a p-value from per_unit.npz, so an
    edited or swapped metrics.json was published next to an unchanged p-value (issue 31.10).
    Float tolerance: both are means of the same float32 vectors, summed in another order."""
    reported = runs.read_metrics(run_dir)["test"]
    for key, mean in per_unit_means(run_dir).items():
        value = reported.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if not np.isclose(float(value), mean, rtol=1e-5, atol=1e-6, equal_nan=True):
            raise RunError(f"{run_dir / 'metrics.json'} does not match its per_unit.npz ({key}: "
                           f"reported {float(value):.6g}, per-unit mean {mean:.6g}); it was "
                           "edited or damaged — restore the run or train it again")


def _run_metrics(study: StudyConfig, run_dir: Path) -> dict[str, float]:
    m = runs.read_metrics(run_dir)
    if study.split == "valid":
        return m.get("extra", {}).get("valid", {})
    return m["test"]


def collect(study: StudyConfig, planned: list[PlannedRun], metric: str
            ) -> tuple[dict[tuple[str, str], Cell], dict[tuple[str, str, int], tuple[Path, str]]]:
    """The cells of the study keyed by (experiment, label), each with the figures, run folders,
    metric keys and seeds of its finished runs (every run checked against its per-unit vectors
    first), and per (experiment, label, seed) the run and key read: what the paired statistics
    match up."""
    cells: dict[tuple[str, str], Cell] = {}
    by_seed: dict[tuple[str, str, int], tuple[Path, str]] = {}
    for run_dir in dict.fromkeys(p.cached for p in planned if p.cached is not None):
        check_per_unit(run_dir)
    for p in planned:
        for label, group, row in row_cells(study, p):
            cell = cells.setdefault((p.base, label), Cell(p.base, p.dataset, label, [], [],
                                                          group=group, row=row))
            if p.cached is None:
                continue
            values = _run_metrics(study, p.cached)
            key = f"{metric}|{row}" if study.rows else metric
            if key not in values:
                raise ConfigError(f"study {study.study}: metric '{key}' not in "
                                  f"{p.cached}/metrics.json (has {', '.join(values)})")
            cell.values.append(float(values[key]))
            cell.run_dirs.append(p.cached)
            cell.keys.append(key)
            cell.seeds.append(p.seed)
            by_seed[(p.base, label, p.seed)] = (p.cached, key)
            if study.rows:
                choice = run_choice(runs.read_metrics(p.cached), row, _main_type(p.cached))
                if choice is not None:
                    cell.choices.append(choice)
    return cells, by_seed


def _main_type(run_dir: Path) -> str | None:
    """The run's main representation type (what its 'K<k>' rows score), if its config names
    one."""
    model = runs.read_config(run_dir).get("model")
    main = model.get("representation") if isinstance(model, dict) else None
    return main if isinstance(main, str) else None


def card_label(study: StudyConfig, p: PlannedRun) -> str:
    """How the protocol card names the cells of one planned config."""
    if p.variant == "base":
        return p.base
    return p.variant if len(study.base) == 1 else f"{p.base} · {p.variant}"
