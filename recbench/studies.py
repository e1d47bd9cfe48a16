"""Sweeps and ablations: expand a study into ordinary runs, run what is missing, aggregate.

Every variant × experiment × seed is one run directory identified by the hash of its resolved
config, so a study that is started again reuses finished runs, resumes a partial one from its
``last.pt`` and only runs what is missing. Aggregation reads the run directories alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from recbench import runs
from recbench.composite import Choice, run_choice
from recbench.config import (
    ExperimentConfig,
    Strict,
    check_acyclic,
    load_yaml_file,
    parse_override,
    run_hash,
    to_plain,
    unique_seeds,
    validate_file,
)
from recbench.errors import ConfigError, RunError
from recbench.executors import Executor, LocalExecutor
from recbench.experiment import load_experiment, stored_hash, with_overrides
from recbench.stats import Interval, bootstrap_interval, holm, paired_effect, verdict
from recbench.train.api import lower_is_better


class TableColumn(Strict):
    """One column of an extra table: a figure of each run's metrics.json."""

    key: str  # a test metric ('ndcg@10'), 'extra.KEY', a top-level key ('seconds_per_epoch'),
    # or 'A - B' of two of those; in a ``rows`` study a run's figure is KEY|ROW
    format: str = ".4f"  # Python format spec of the value (mean over seeds in a cell table)
    paper: dict[str, dict[str, float]] = Field(default_factory=dict)  # as the study's `paper:`
    # (experiment or dataset -> variant or row -> figure); a column of the study's metric
    # takes the study's `paper:` when it has none


class ExtraTable(Strict):
    """A table beside table.md, written to results/STUDY/FILE: per-seed rows, figures of a
    run's ``extra`` metrics, several metric keys of one run (e.g. every list length N).
    Tables naming the same file are written to it one after the other."""

    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.md$")  # in results/STUDY/
    title: str
    note: str = ""
    per: Literal["cell", "run"] = "cell"  # cell: one row per (experiment, variant[, row]) with
    # the mean over seeds; run: one row per finished run (seed)
    spread: bool = False  # cell tables: mean ± sample std over seeds instead of the mean
    columns: Annotated[dict[str, str | TableColumn], Field(min_length=1)]

    @field_validator("file")
    @classmethod
    def _not_the_study_table(cls, name: str) -> str:
        if name in ("table.md", "extra.md"):
            raise ValueError(f"{name} is the study's own table; name the extra table otherwise")
        return name

    def column_specs(self) -> dict[str, TableColumn]:
        return {label: TableColumn(key=c) if isinstance(c, str) else c
                for label, c in self.columns.items()}


class StudyConfig(Strict):
    """A named study file (experiments/studies/NAME.yaml)."""

    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # names results/STUDY/
    description: str = ""
    base: list[str] = Field(min_length=1)
    vary: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict)
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] | None = None
    metric: str | None = None
    reference: str | None = None
    x_label: str | None = None
    paper: dict[str, dict[str, float]] = Field(default_factory=dict)
    columns: list[str] = Field(default_factory=list)  # more figures per cell → extra.md: a test
    # metric ('hr@10'), an 'extra.' key of metrics.json ('extra.params_m') or a top-level one
    # one run reports several rows: row R's value is the run's ``metric|R`` (e.g. the ten GLA
    # representation types of one set of nets); rows repeat under every variant of the study
    rows: list[str] = Field(default_factory=list)
    # sanity guard: a row ranking below the best of its listed rows (same experiment and
    # variant) is marked in the table, e.g. {AD: [GD, GP, LD, LP]}
    guard: dict[str, list[str]] = Field(default_factory=dict)
    split: Literal["test", "valid"] = "test"  # valid: the trainer's final validation metrics
    tables: list[ExtraTable] = Field(default_factory=list)  # more files in results/STUDY/

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, seeds: list[int] | None) -> list[int] | None:
        return None if seeds is None else unique_seeds(seeds)

    @field_validator("vary")
    @classmethod
    def _values_once(cls, vary: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """A value listed twice is one variant whose runs the table counted twice."""
        for key, values in vary.items():
            labels = [_label(v) for v in values]
            twice = sorted({lab for lab in labels if labels.count(lab) > 1})
            if twice:
                raise ValueError(f"{key}: value(s) {', '.join(twice)} listed more than once; "
                                 "list each value once")
        return vary

    @model_validator(mode="after")
    def _labels_once(self) -> StudyConfig:
        labels = [label for label, _ in variant_patches(self)]
        twice = sorted({lab for lab in labels if labels.count(lab) > 1})
        if twice:
            raise ValueError(f"variant label(s) {', '.join(twice)} name both a vary value and a "
                             "variant; rename the variant")
        return self


LEDGER = "ledger"  # results/<study>/ledger/: the committed record of its runs (write_ledger)


@dataclass
class PlannedRun:
    base: str  # experiment name
    dataset: str
    variant: str
    seed: int
    cfg: ExperimentConfig
    hash: str
    cached: Path | None
    stale: bool = False  # a finished run or record of this config exists, but of other data


@dataclass
class Cell:
    base: str
    dataset: str
    variant: str
    values: list[float]
    run_dirs: list[Path]
    paper: float | None = None
    p_value: float | None = None
    columns: dict[str, tuple[list[float], float | None]] = field(default_factory=dict)
    group: str = ""  # the study variant a row belongs to (rows studies), else ""
    row: str = ""  # the row label within its group (rows studies), else the variant
    below: tuple[str, float] | None = None  # guard: (best guard row, its mean) when above ours
    keys: list[str] = field(default_factory=list)  # the metric key read from each run
    seeds: list[int] = field(default_factory=list)  # the seed of each run
    ci: Interval | None = None  # bootstrap interval over the units of its runs (seeds pooled)
    effect: Interval | None = None  # figure minus the reference's over paired units
    p_holm: float | None = None  # p_value, Holm-corrected over the table's rows
    verdict: str = ""  # the paper's figure against ``ci``: inside / above / below
    choices: list[Choice] = field(default_factory=list)  # rows studies: what scored an
    # attentive row in each run that records it (recbench.composite), seed order

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


@dataclass
class StudyResult:
    study: StudyConfig
    metric: str
    reference: str
    cells: list[Cell]
    numeric_axis: bool
    variants: list[str] = field(default_factory=list)
    configs: list[tuple[str, str, ExperimentConfig]] = field(default_factory=list)  # per
    # planned config (experiment, cell label, resolved config) for the protocol card
    seeds: list[int] = field(default_factory=list)  # the planned run seeds


def load_study(studies_dir: Path, name: str, overrides: list[str] | None = None) -> StudyConfig:
    known = {s.study: s for s in list_studies(studies_dir)}
    if name not in known:
        raise ConfigError(f"unknown study '{name}'; known studies: {', '.join(sorted(known)) or 'none'}")
    study = known[name]
    if overrides:
        extra = dict(study.set)
        extra.update(dict(parse_override(o) for o in overrides))
        study = study.model_copy(update={"set": extra})
    return study


def read_study(path: Path) -> StudyConfig:
    return validate_file(StudyConfig, load_yaml_file(path, "study file"), path, hint_keys=True)


def list_studies(studies_dir: Path) -> list[StudyConfig]:
    """Every study file; names must be unique because they name results/NAME/."""
    found: dict[str, Path] = {}
    out = []
    for path in sorted(studies_dir.glob("*.yaml")):
        study = read_study(path)
        if study.study in found:
            raise ConfigError(f"study name '{study.study}' is used by both {found[study.study]} "
                              f"and {path}; study names must be unique")
        found[study.study] = path
        out.append(study)
    return out


def _label(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def variant_patches(study: StudyConfig) -> list[tuple[str, dict[str, Any]]]:
    """(label, dotted-key patch) for the grid of ``vary`` and the named ``variants``."""
    out: list[tuple[str, dict[str, Any]]] = []
    if study.vary:
        keys = list(study.vary)
        for combo in itertools.product(*(study.vary[k] for k in keys)):
            if len(keys) == 1:
                label = _label(combo[0])
            else:
                label = ", ".join(f"{k.split('.')[-1]}={_label(v)}" for k, v in zip(keys, combo))
            out.append((label, dict(zip(keys, combo))))
    out.extend((name, dict(patch)) for name, patch in study.variants.items())
    return out or [("base", {})]


def _base_config(path: str, study: StudyConfig, root: Path | None = None) -> ExperimentConfig:
    overrides = [f"{k}={json.dumps(v)}" for k, v in study.set.items()]
    return load_experiment(Path(path) if root is None else root / path, overrides)


def cell_configs(study: StudyConfig, root: Path | None = None
                 ) -> list[tuple[str, str, ExperimentConfig]]:
    """(experiment, variant label, resolved config) of every planned config, no seed set: what
    a protocol card describes. ``root``: the folder the study's base paths are relative to
    (default: the current directory, as for :func:`plan`)."""
    out = []
    for base_path in study.base:
        base = _base_config(base_path, study, root)
        for label, patch in variant_patches(study):
            out.append((base.name, label, with_overrides(base, patch) if patch else base))
    return out


def plan(study: StudyConfig, runs_root: Path, ledger: Path | None = None,
         data=None) -> list[PlannedRun]:
    """Every (experiment, variant, seed) of the study, each with its finished run if one
    exists: a run directory under ``runs_root`` first, else the study's ledger record."""
    out = []
    for base_path in study.base:
        base = _base_config(base_path, study)
        for label, patch in variant_patches(study):
            cfg = with_overrides(base, patch) if patch else base
            for seed in study.seeds if study.seeds is not None else cfg.seeds:
                run_cfg = cfg.model_copy(update={"seed": seed})
                out.append(PlannedRun(base.name, cfg.dataset.name, label, seed, run_cfg,
                                      run_hash(run_cfg), None))
    return refresh(out, runs_root, ledger, data)


def current_data(planned: list[PlannedRun], data) -> dict[str, str | None]:
    """Per planned hash, the content hash of the processed split it trains on here (None
    without ``data`` (DataPaths) or before that split is preprocessed: nothing to compare)."""
    if data is None:
        return {}
    from recbench.data.prepare import data_hash

    by_split: dict[str, str | None] = {}
    out = {}
    for p in planned:
        key = p.cfg.dataset.model_dump_json()
        if key not in by_split:
            by_split[key] = data_hash(p.cfg.dataset, data)
        out[p.hash] = by_split[key]
    return out


def refresh(planned: list[PlannedRun], runs_root: Path,
            ledger: Path | None = None, data=None) -> list[PlannedRun]:
    """The same planned runs (the configs resolved when the study started) with their finished
    runs looked up again. Why not :func:`plan` again: it re-reads the base experiment files,
    and one edited while the study ran would change the hashes under a running study (seen
    2026-12-02: a table and ledger written from the wrong runs)."""
    books = [ledger, *other_ledgers(ledger)] if ledger is not None else []
    trained_on = current_data(planned, data)  # a run of other data is stale (issue 31.5)
    out = []
    for p in planned:
        now = trained_on.get(p.hash)
        found = runs.find_finished(runs_root, p.cfg.name, p.hash, rehash=stored_hash,
                                   data_hash=now)
        if found is None:  # this study's ledger first, then the others'
            found = next((r for book in books if (r := runs.find_record(
                book / p.cfg.name, p.hash, rehash=stored_hash, data_hash=now)) is not None),
                None)
        stale = found is None and now is not None and (
            runs.find_finished(runs_root, p.cfg.name, p.hash, rehash=stored_hash) is not None
            or any(runs.find_record(book / p.cfg.name, p.hash, rehash=stored_hash) is not None
                   for book in books))
        out.append(dataclasses.replace(p, cached=found, stale=stale))
    return out


def other_ledgers(ledger: Path) -> list[Path]:
    """The ledgers of the other studies beside this one (``results/*/ledger``), sorted.

    Why: a ledger record stands for its config hash exactly as a run folder does, whichever
    study trained it. The GLA studies share runs (candidates reads the representations runs;
    the chosen sound setting was trained by stage-patience and global-epochs-loo while choosing
    it), and retraining a run another study has recorded costs up to an hour here and gives the
    identical metrics.json. A borrowed record is copied into this study's ledger by
    :func:`write_ledger` (with the per-unit arrays it has; a paired test whose arrays the other
    study did not keep shows "—"), so each study's table stays reproducible from its own
    ledger."""
    parent = ledger.parent.parent
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.glob(f"*/{LEDGER}") if p.resolve() != ledger.resolve())


def write_ledger(result: StudyResult, planned: list[PlannedRun], ledger: Path) -> int:
    """Record every finished run of the plan in ``ledger/<experiment>/<hash>/``: its config,
    metrics.json and the per-unit arrays the table reads (for the paired tests).

    Why: run directories (checkpoints, GBs over a study) stay out of git and are gone on a
    fresh clone, so a study that outgrows one session (the GLA tables: 3 seeds x 6 experiments
    is about nine core-hours here) could never be finished across sessions or machines: every
    rerun started from nothing and a report of the runs present dropped the others' rows. The
    ledger (a few kB per run) is committed with the table; :func:`plan` counts its records as
    finished, so a fresh clone reproduces the table with ``--report-only`` and trains only the
    runs the ledger lacks. A record stands for its config hash exactly as a cached run does
    (``--rerun`` replaces it). Records of runs no longer in the plan are kept (never read:
    nothing matches their hash), because a study run by another process, or with a base file
    edited since, may still need them; delete them by hand. Returns the number written."""
    import io

    keys: dict[Path, set[str]] = {}
    for cell in result.cells:
        for run_dir, key in zip(cell.run_dirs, cell.keys, strict=False):
            keys.setdefault(run_dir, set()).add(key)
    written = 0
    for p in planned:
        if p.cached is None:
            continue
        if p.cached.resolve().parent.parent == ledger.resolve():
            continue  # the record itself (under its own, possibly legacy, hash)
        entry = ledger / p.cfg.name / p.hash
        metrics = (p.cached / "metrics.json").read_bytes()
        recorded = runs.find_record(ledger / p.cfg.name, p.hash, rehash=stored_hash)
        if recorded is not None and (recorded / "metrics.json").read_bytes() == metrics:
            continue  # recorded already, from this very run (maybe under its legacy hash)
        entry.mkdir(parents=True, exist_ok=True)
        runs.atomic_write_bytes(entry / "config.yaml", (p.cached / "config.yaml").read_bytes())
        source = p.cached / "per_unit.npz"
        if source.is_file():
            with np.load(source) as data:
                need = keys.get(p.cached, set()) | set(result.study.columns) | {"user", "index"}
                if need & {"rmse", "mse", "mae"}:
                    need.add("squared_error")
                kept = {k: data[k] for k in data.files if k in need}
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **kept)
            runs.atomic_write_bytes(entry / "per_unit.npz", buffer.getvalue())
        # metrics.json last: it is what marks the record finished
        runs.atomic_write_bytes(entry / "metrics.json", metrics)
        written += 1
    return written


def as_recorded(planned: list[PlannedRun], ledger: Path) -> list[PlannedRun]:
    """The same plan with each finished run replaced by its record in ``ledger`` where the
    record holds that very run (byte-identical metrics.json; a record of another run of the
    config, say before a ``--rerun``, is not it).

    Why (issue 34): runs.txt names what each cell was read from. After training it named
    local runs/ folders that no other checkout has, while ``--report-only`` on a fresh clone
    names the ledger records, so the two wrote different bytes and the committed listing had
    to be regenerated by hand from an empty runs dir. Reading the table from the records the
    ledger now holds makes a training run write what a report-only rebuild writes."""
    out = []
    for p in planned:
        record = None
        if p.cached is not None:
            record = runs.find_record(ledger / p.cfg.name, p.hash, rehash=stored_hash)
        if record is not None and record != p.cached and (
                (record / "metrics.json").read_bytes() == (p.cached / "metrics.json").read_bytes()):
            p = dataclasses.replace(p, cached=record)
        out.append(p)
    return out


def split_names(wanted: str, known: set[str]) -> list[str]:
    """``wanted`` split on commas, the pieces re-joined wherever they spell a known name.

    Why: study labels such as "scores, user α" contain commas themselves; splitting blindly
    made them impossible to select ("not among the study's variants"). The longest known name
    starting at each piece wins; a piece that starts none is kept as it is (an error later)."""
    pieces, names, i = wanted.split(","), [], 0
    while i < len(pieces):
        for j in range(len(pieces), i, -1):
            if ",".join(pieces[i:j]) in known:
                names.append(",".join(pieces[i:j]))
                i = j
                break
        else:
            names.append(pieces[i])
            i += 1
    return names


def _keep_named(planned: list[PlannedRun], wanted: str, option: str, what: str,
                attr: str) -> list[PlannedRun]:
    """The planned runs whose ``attr`` is one of the comma-separated names ``wanted``."""
    known = {getattr(p, attr) for p in planned}
    names = set(split_names(wanted, known))
    if not names <= known:
        raise ConfigError(f"{option}: {sorted(names - known)} not among the study's {what} "
                          f"({', '.join(sorted(known))})")
    return [p for p in planned if getattr(p, attr) in names]


def select(planned: list[PlannedRun], seeds: str | None, variants: str | None,
           experiments: str | None = None) -> list[PlannedRun]:
    """The planned runs of the given seeds / variant labels / base experiment names
    (comma-separated; None: all). Unknown values are an error naming the allowed ones, never
    an empty plan."""
    out = planned
    if experiments:
        out = _keep_named(out, experiments, "--only-experiments", "experiments", "base")
    if seeds:
        try:
            wanted = {int(s) for s in seeds.split(",")}
        except ValueError:
            raise ConfigError(f"--only-seeds {seeds!r}: give comma-separated integers, e.g. 0,1") from None
        known = {p.seed for p in planned}
        if not wanted <= known:
            raise ConfigError(f"--only-seeds: {sorted(wanted - known)} not among the study's "
                              f"seeds {sorted(known)}")
        out = [p for p in out if p.seed in wanted]
    if variants:
        out = _keep_named(out, variants, "--only-variants", "variants", "variant")
    return out


def count_runs(study: StudyConfig) -> int:
    n_variants = len(variant_patches(study))
    n_seeds = len(study.seeds) if study.seeds is not None else 0
    return len(study.base) * n_variants * n_seeds if n_seeds else len(study.base) * n_variants


def run_planned(plain: dict, data_root: str, runs_root: str, device: str,
                threads: int | None, rerun: bool = False) -> str:
    """Train one planned run, resuming its .partial folder if one exists (the body of
    every executor's call, so it takes plain, picklable arguments). With ``rerun`` a new run
    is trained from the first epoch even when a finished or partial one exists: --rerun used
    to reach this lookup, find the finished run and report it as done (issue 31.4)."""
    import torch

    from recbench.data.prepare import DataPaths
    from recbench.experiment import validate
    from recbench.runner import train_run

    if threads:  # the caller's choice (--threads, or the CPUs split over --jobs) wins
        torch.set_num_threads(threads)
        plain = {**plain, "train": {**plain.get("train", {}), "num_threads": threads}}
    cfg = validate(plain, plain.get("name", "study run"))
    root, h = Path(runs_root), run_hash(cfg)
    with runs.claim(root, cfg.name, h):  # another worker may be training this very config
        if rerun:
            return str(train_run(cfg, DataPaths(Path(data_root)), root, device))
        from recbench.data.prepare import data_hash

        now = data_hash(cfg.dataset, DataPaths(Path(data_root)))
        finished = runs.find_finished(root, cfg.name, h, rehash=stored_hash, data_hash=now)
        if finished is not None:
            return str(finished)
        partial = runs.find_partial(root, cfg.name, h, rehash=stored_hash, data_hash=now)
        return str(train_run(cfg, DataPaths(Path(data_root)), root, device, partial))


def execute(planned: list[PlannedRun], paths, runs_root: Path, jobs: int = 1,
            rerun: bool = False, device: str = "cpu",
            on_done: Callable[[PlannedRun, str], None] | None = None,
            threads: int | None = None,
            executor: Executor | None = None) -> list[tuple[PlannedRun, str]]:
    """Run every planned run not cached (all with ``rerun``) on ``executor`` (default: local
    processes, ``jobs`` at once); one failure never stops the rest. Planned runs of one
    config (two labels for one setting) are trained once and reported for each."""
    executor = executor or LocalExecutor(jobs=jobs)
    todo = [p for p in planned if rerun or p.cached is None]
    for p in planned:
        if p not in todo and on_done:
            on_done(p, "cached")
    groups: dict[tuple[str, str], list[PlannedRun]] = {}
    for p in todo:
        groups.setdefault((p.cfg.name, p.hash), []).append(p)
    heads = [group[0] for group in groups.values()]
    per_call = executor.threads_per_call(threads)
    calls = [(to_plain(p.cfg), str(Path(paths.root).resolve()), str(Path(runs_root).resolve()),
              device, per_call, rerun) for p in heads]
    failures: list[tuple[PlannedRun, str]] = []

    def on_result(index: int, run_dir: Any, error: BaseException | None) -> None:
        head = heads[index]
        for p in groups[(head.cfg.name, head.hash)]:
            if error is not None:
                failures.append((p, str(error) or type(error).__name__))
            if on_done:
                on_done(p, "failed" if error is not None else _outcome(Path(run_dir)))

    executor.run(run_planned, calls, on_result)
    return failures


def _outcome(run_dir: Path) -> str:
    """'done: <monitor> <value>' for the progress line."""
    m = runs.read_metrics(run_dir)
    value = m["test"].get(m["monitor"])
    return f"done: test {m['monitor']} {value:.4f}" if value is not None else "done"


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


@dataclass
class TableRow:
    """One row of an extra table: a cell (mean over its runs) or one run of it (``seed``)."""

    cell: Cell
    seed: int | None
    values: list[list[float]]  # per column, the figures of the row's runs
    paper: list[float | None]  # per column, the paper's figure


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


def _default_metric(planned: list[PlannedRun]) -> str:
    for p in planned:
        if p.cached is not None:
            return runs.read_metrics(p.cached)["monitor"]
    return "rmse"


def _row_cells(study: StudyConfig, p: PlannedRun) -> list[tuple[str, str, str]]:
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


def aggregate(study: StudyConfig, planned: list[PlannedRun]) -> StudyResult:
    """Mean ± std per (experiment, variant[, row]) over finished seeds, the paper's figure,
    p-values, and the guard marks."""
    metric = study.metric or _default_metric(planned)
    labels = list(dict.fromkeys(lab for p in planned for lab, _, _ in _row_cells(study, p)))
    reference = study.reference or labels[0]
    cells: dict[tuple[str, str], Cell] = {}
    by_seed: dict[tuple[str, str, int], tuple[Path, str]] = {}
    for run_dir in dict.fromkeys(p.cached for p in planned if p.cached is not None):
        check_per_unit(run_dir)
    for p in planned:
        for label, group, row in _row_cells(study, p):
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
    configs = list({(p.base, p.variant): (p.base, _card_label(study, p), p.cfg)
                    for p in planned if p.cfg is not None}.values())
    numeric = len(study.vary) == 1 and not study.variants and not study.rows and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in next(iter(study.vary.values())))
    seeds = list(dict.fromkeys(p.seed for p in planned))
    return StudyResult(study, metric, reference, list(cells.values()), numeric, labels,
                       configs, seeds)


def _main_type(run_dir: Path) -> str | None:
    """The run's main representation type (what its 'K<k>' rows score), if its config names
    one."""
    model = runs.read_config(run_dir).get("model")
    main = model.get("representation") if isinstance(model, dict) else None
    return main if isinstance(main, str) else None


def _card_label(study: StudyConfig, p: PlannedRun) -> str:
    """How the protocol card names the cells of one planned config."""
    if p.variant == "base":
        return p.base
    return p.variant if len(study.base) == 1 else f"{p.base} · {p.variant}"


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


def adhoc(experiment: Path, sets: list[str], seeds: str | None, name: str | None,
          metric: str | None) -> StudyConfig:
    """A study built in memory from ``recbench sweep EXP --set key=v1,v2``."""
    vary: dict[str, list[Any]] = {}
    for text in sets:
        if "=" not in text:
            raise ConfigError(f"--set takes key=v1,v2 (e.g. model.emb_dim=32,64), got '{text}'")
        key, values = text.split("=", 1)
        try:
            parsed = yaml.safe_load(f"[{values}]")
        except yaml.YAMLError:
            parsed = values.split(",")
        check_acyclic(parsed, f"--set {text!r}")
        if not parsed or not key.strip():
            raise ConfigError(f"--set {text!r} names no key or no values; give key=v1,v2")
        vary[key.strip()] = parsed
    if not vary:
        raise ConfigError("sweep needs at least one --set key=v1,v2")
    base = load_experiment(experiment)
    stem = "-".join(k.split(".")[-1] for k in vary)
    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError:
        raise ConfigError(f"--seeds {seeds!r}: give comma-separated integers, e.g. 0,1") from None
    study = name or f"sweep-{base.name}-{stem}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", study):
        raise ConfigError(f"--name {study!r}: the study's results folder needs a plain name "
                          "(letters, digits, '.', '_', '-')")
    try:
        return StudyConfig(study=study, description=f"ad-hoc sweep of {experiment}",
                           base=[str(experiment)], vary=vary, seeds=seed_list, metric=metric)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        option = "--seeds" if loc.startswith("seeds") else "--set" if loc.startswith("vary") else loc
        raise ConfigError(f"{option}: {loc}: {err['msg']}") from None
