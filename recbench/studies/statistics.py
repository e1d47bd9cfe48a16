"""The statistics of a study's table: mean ± std per cell, the bootstrap interval over units,
the paired Wilcoxon test and effect against the reference, Holm's correction, the paper's
verdict and the guard marks (the arithmetic itself is :mod:`recbench.stats`').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recbench import runs
from recbench.stats import bootstrap_interval, holm, paired_effect, verdict
from recbench.studies.cells import Cell, PlannedRun, StudyResult
from recbench.studies.collect import card_label, collect, column_value, default_metric, row_cells
from recbench.studies.schema import StudyConfig
from recbench.train.api import lower_is_better


def _per_unit(run_dir: Path, metric: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    path = run_dir / "per_unit.npz"
    if not path.is_file():
        return None, None
    data = np.load(path)
    if metric in data:
        values = data[metric]
    elif metric in ("rmse", "mse") and "squared_error" in data:
        values = data["squared_error"]
    elif metric == "mae" and "squared_error" in data:
        values = np.sqrt(data["squared_error"])
    else:
        return None, None
    ids = next((data[k] for k in ("user", "index") if k in data), np.arange(len(values)))
    return ids, values


def paired_units(pairs: list[tuple[Path, Path]], metric: str,
                 keys: list[tuple[str, str]] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The per-unit vectors of both sides over the units both scored, seeds pooled (None when
    a run lacks them). ``keys`` gives per pair the per-unit key of each side; default ``metric``."""
    xs, ys = [], []
    for n, (run_a, run_b) in enumerate(pairs):
        key_a, key_b = keys[n] if keys is not None else (metric, metric)
        ids_a, va = _per_unit(run_a, key_a)
        ids_b, vb = _per_unit(run_b, key_b)
        if va is None or vb is None:
            return None
        common, ia, ib = np.intersect1d(ids_a, ids_b, return_indices=True)
        if len(common) == 0:
            return None
        xs.append(va[ia])
        ys.append(vb[ib])
    return np.concatenate(xs), np.concatenate(ys)


def wilcoxon_p(units: tuple[np.ndarray, np.ndarray] | None) -> float | None:
    """Paired Wilcoxon signed-rank p of aligned per-unit vectors (1.0 when they agree)."""
    from scipy.stats import wilcoxon

    if units is None:
        return None
    x, y = units
    if np.allclose(x, y):
        return 1.0
    return float(wilcoxon(x, y).pvalue)


def paired_p_value(pairs: list[tuple[Path, Path]], metric: str,
                   keys: list[tuple[str, str]] | None = None) -> float | None:
    """Paired Wilcoxon signed-rank over units (users, ratings or samples), seeds pooled.

    ``keys`` gives per pair the per-unit key of each side (rows studies); default ``metric``.
    """
    return wilcoxon_p(paired_units(pairs, metric, keys))


def pooled_units(run_dirs: list[Path], keys: list[str]) -> np.ndarray | None:
    """One cell's per-unit vectors of its runs, concatenated (None when a run lacks them)."""
    parts = []
    for run_dir, key in zip(run_dirs, keys, strict=True):
        _, values = _per_unit(run_dir, key)
        if values is None:
            return None
        parts.append(np.asarray(values, dtype=np.float64))
    return np.concatenate(parts) if parts else None


def aggregate(study: StudyConfig, planned: list[PlannedRun]) -> StudyResult:
    """Mean ± std per (experiment, variant[, row]) over finished seeds, the paper's figure,
    p-values, and the guard marks."""
    metric = study.metric or default_metric(planned)
    labels = list(dict.fromkeys(lab for p in planned for lab, _, _ in row_cells(study, p)))
    reference = study.reference or labels[0]
    cells, by_seed = collect(study, planned, metric)
    for cell in cells.values():
        paper = study.paper.get(cell.base, study.paper.get(cell.dataset, {}))
        cell.paper = paper.get(cell.variant, paper.get(cell.row))
        ref = f"{cell.group} · {reference}" if cell.group and study.rows else reference
        if cell.variant != ref and cell.values and study.split == "test":
            found = [(run, by_seed[(cell.base, ref, seed)])
                     for (b, v, seed), run in by_seed.items()
                     if b == cell.base and v == cell.variant and (b, ref, seed) in by_seed]
            units = (paired_units([(a[0], b[0]) for a, b in found], metric,
                                  [(a[1], b[1]) for a, b in found]) if found else None)
            cell.p_value = wilcoxon_p(units)
            cell.effect = paired_effect(*units, metric) if units is not None else None
        if cell.values and study.split == "test":
            units = pooled_units(cell.run_dirs, cell.keys)
            cell.ci = bootstrap_interval(units, metric) if units is not None else None
        cell.verdict = verdict(cell.paper, cell.ci, lower_is_better(metric))
        for column in study.columns:
            values = [v for v in (column_value(runs.read_metrics(r), column) for r in cell.run_dirs)
                      if v is not None]
            p = None
            if cell.variant != ref and values and study.split == "test" and not study.rows \
                    and column in runs.read_metrics(cell.run_dirs[0])["test"]:
                found = [(run[0], by_seed[(cell.base, ref, seed)][0])
                         for (b, v, seed), run in by_seed.items()
                         if b == cell.base and v == cell.variant and (b, ref, seed) in by_seed]
                p = paired_p_value(found, column) if found else None
            cell.columns[column] = (values, p)
    for cell, p in zip(cells.values(), holm([c.p_value for c in cells.values()]), strict=True):
        cell.p_holm = p
    mark_guard(study, list(cells.values()))
    configs = list({(p.base, p.variant): (p.base, card_label(study, p), p.cfg)
                    for p in planned if p.cfg is not None}.values())
    numeric = len(study.vary) == 1 and not study.variants and not study.rows and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in next(iter(study.vary.values())))
    seeds: dict[str, list[int]] = {}  # per card label: variants may plan their own seeds
    for p in planned:
        mine = seeds.setdefault(card_label(study, p), [])
        if p.seed not in mine:
            mine.append(p.seed)
    return StudyResult(study, metric, reference, list(cells.values()), numeric, labels,
                       configs, seeds, [aggregate(secondary(study, m), planned) for m in study.also],
                       [aggregate(against(study, r, m, metric), planned)
                        for r in study.versus for m in [metric, *study.also]])


def secondary(study: StudyConfig, metric: str) -> StudyConfig:
    """The study as it reads for one of its ``also`` metrics: that metric, the same reference,
    and none of the main metric's paper figures or side tables (one statistics path for both)."""
    return study.model_copy(update={"metric": metric, "also": [], "versus": [], "paper": {},
                                    "columns": [], "tables": []})


def against(study: StudyConfig, reference: str, metric: str, main: str) -> StudyConfig:
    """The study read with another reference row (``versus``) for ``metric``: the main
    metric keeps its paper figures, a secondary one reads as :func:`secondary`."""
    base = study if metric == main else secondary(study, metric)
    return base.model_copy(update={"metric": metric, "reference": reference, "also": [],
                                   "versus": [], "columns": [], "tables": []})


def mark_guard(study: StudyConfig, cells: list[Cell]) -> None:
    """Set ``cell.below`` where a guarded row's mean is below the best of its guard rows in
    the same experiment and variant (an attentive type below its best single space)."""
    by_row = {(c.base, c.group, c.row): c for c in cells}
    for c in cells:
        parts = study.guard.get(c.row, [])
        ran = [by_row[(c.base, c.group, r)] for r in parts if (c.base, c.group, r) in by_row]
        ran = [o for o in ran if o.values]
        if not c.values or not ran:
            continue
        low = lower_is_better(study.metric or "")
        best = min(ran, key=lambda o: o.mean) if low else max(ran, key=lambda o: o.mean)
        if (c.mean > best.mean) if low else (c.mean < best.mean):
            c.below = (best.row, best.mean)
