"""Plan a study: every (experiment, variant, seed) as a resolved config and its run hash, with
the finished run or ledger record that already stands for it, and the part selected to run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from recbench import runs
from recbench.config import ExperimentConfig, run_hash
from recbench.errors import ConfigError
from recbench.experiment import load_experiment, stored_hash, with_overrides
from recbench.studies.cells import PlannedRun
from recbench.studies.ledger import other_ledgers
from recbench.studies.schema import StudyConfig, variant_patches


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


def planned_seeds(study: StudyConfig, cfg: ExperimentConfig) -> list[int]:
    """The seeds a cell runs: the study's list, or without one the variant's own (its
    experiment's ``seeds``), so pilots can stay at one seed beside headline rows at three."""
    return list(study.seeds if study.seeds is not None else cfg.seeds)


def plan(study: StudyConfig, runs_root: Path, ledger: Path | None = None,
         data=None) -> list[PlannedRun]:
    """Every (experiment, variant, seed) of the study, each with its finished run if one
    exists: a run directory under ``runs_root`` first, else the study's ledger record."""
    out = []
    for base_path in study.base:
        base = _base_config(base_path, study)
        for label, patch in variant_patches(study):
            cfg = with_overrides(base, patch) if patch else base
            for seed in planned_seeds(study, cfg):
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
