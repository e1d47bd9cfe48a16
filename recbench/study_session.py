"""One study opened for one command: plan, run, report, record.

The use case behind ``recbench ablate``/``sweep``/``tune`` (tune's final study is an ordinary
study whose report carries the search's pages): it joins the planning and aggregation of
:mod:`recbench.studies` with its writer, :mod:`recbench.studies.report`. It sits above both so that
neither imports the other's caller (the report reads the studies' result types; the studies
know nothing of files under results/ except their ledger).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recbench import tune
from recbench.errors import ConfigError, RunError
from recbench.executors import Executor
from recbench.experiment import load_experiment
from recbench.studies import (
    LEDGER,
    PlannedRun,
    StudyConfig,
    StudyResult,
    adhoc,
    aggregate,
    as_recorded,
    execute,
    list_studies,
    plan,
    refresh,
    report,
    select,
    write_ledger,
)
from recbench.studies.search import SearchSummary


@dataclass
class StudyRun:
    """A study opened for one command: its plan (all of it, and the part selected to run)
    and where its results and ledger go. The CLI only parses options, draws progress and
    prints; everything a study does to runs/ and results/ happens here."""

    study: StudyConfig
    runs_root: Path
    folder: Path  # results/STUDY/
    full_plan: list[PlannedRun]
    plan: list[PlannedRun]
    data: object = None  # DataPaths: a cached run counts only for the split it trained on
    search: SearchSummary | None = None  # tune's final study: the search its report shows

    @property
    def ledger(self) -> Path:
        return self.folder / LEDGER

    @property
    def cached(self) -> int:
        return sum(1 for p in self.plan if p.cached is not None)

    @property
    def any_finished(self) -> bool:
        return any(p.cached is not None for p in self.full_plan)


def open_study(study: StudyConfig, runs_root: Path, results_dir: Path,
               only_seeds: str | None = None, only_variants: str | None = None,
               only_experiments: str | None = None, data=None) -> StudyRun:
    """Plan the study (runs found under ``runs_root`` or in its committed ledger; with
    ``data``, only runs of the processed splits there, or runs that recorded none)."""
    folder = results_dir / study.study
    full = plan(study, runs_root, folder / LEDGER, data)
    return StudyRun(study, runs_root, folder, full, select(full, only_seeds, only_variants,
                                                                only_experiments), data)


def report_study(session: StudyRun) -> tuple[StudyResult, int] | None:
    """Write results/STUDY/ (table, extra tables, plot, runs.txt) from the finished runs of the
    configs planned when the study opened (:func:`refresh`), and record them in the ledger;
    the files are written from the ledger's records of those runs (:func:`as_recorded`), so
    runs.txt names records and a ``--report-only`` rebuild writes the same bytes.
    Returns the result and the number of new ledger records; None, writing nothing, when no
    run of the study has finished (a table of '(not run)' would replace a committed one)."""
    session.full_plan = refresh(session.full_plan, session.runs_root, session.ledger,
                                session.data)
    if not session.any_finished:
        return None
    result = aggregate(session.study, session.full_plan)
    lost = lost_cells(result, session.folder)
    if lost:  # the ledger only grows: record what did finish, then leave the tables alone
        recorded = write_ledger(result, session.full_plan, session.ledger)
        shown = "; ".join(lost[:4]) + (f"; … {len(lost) - 4} more" if len(lost) > 4 else "")
        raise RunError(f"study {session.study.study}: {len(lost)} cell(s) of the committed "
                       f"{session.folder / 'table.csv'} have fewer finished runs here ({shown}), "
                       f"so {session.folder}/ is left as it is ({recorded} new ledger record(s)); "
                       "run those cells too, or bring their run folders or ledger records")
    recorded = write_ledger(result, session.full_plan, session.ledger)
    on_ledger = as_recorded(session.full_plan, session.ledger)
    if on_ledger != session.full_plan:  # trained here: report what a fresh clone reads
        session.full_plan = on_ledger
        result = aggregate(session.study, on_ledger)
    report.write_study(result, session.folder, session.search)
    return result, recorded


def sweep_study(experiment: Path, sets: list[str], seeds: str | None, name: str | None,
                metric: str | None, results_dir: Path,
                studies_dir: Path = Path("experiments/studies")) -> StudyConfig:
    """``recbench sweep``'s ad-hoc study (:func:`recbench.studies.adhoc`), refused when its
    name is taken. A sweep never takes the name of a named study or of a results folder that
    another study, search or sweep wrote (`sweep --name gnn-zoo` overwrote that study's
    committed results with a one-row sweep, issue 31.3); sweeping the same experiment again
    may."""
    study = adhoc(experiment, sets, seeds, name, metric)
    name = study.study
    if studies_dir.is_dir() and name in {s.study for s in list_studies(studies_dir)}:
        raise ConfigError(f"--name {name}: that is a named study (experiments/studies/); "
                          "choose another name for the sweep")
    folder = results_dir / name
    if folder.exists():
        table = folder / "table.md"
        lines = table.read_text(encoding="utf-8", errors="replace").splitlines()[:3] \
            if table.is_file() else []
        if len(lines) < 3 or lines[2] != study.description:
            raise ConfigError(f"--name {name}: {folder}/ holds results that are not a sweep of "
                              f"{study.base[0]}; choose another name for the sweep")
    return study


def run_study(session: StudyRun, executor: Executor, rerun: bool = False, device: str = "cpu",
              threads: int | None = None,
              on_done: Callable[[PlannedRun, str], None] | None = None
              ) -> list[tuple[PlannedRun, str]]:
    """Train the selected runs that are not finished (all of them with ``rerun``) on
    ``executor``; returns the failures (one never stops the rest)."""
    return execute(session.plan, session.data, session.runs_root, rerun=rerun, device=device,
                   on_done=on_done, threads=threads, executor=executor)


def open_search(experiment: Path, space: Path, overrides: list[str], name: str | None,
                storage: str | None, runs_root: Path, data, device: str = "cpu",
                threads: int | None = None, open_storage: bool = True) -> tune.TuneSetup:
    """``recbench tune``'s search, checked before any trial: the space file, the experiment,
    the name (it names results/tune-NAME/) and the Optuna storage (default a SQLite file
    under ``runs_root``/tune/; not opened, nor made, for a report from the record), as the
    plain values every worker gets."""
    search_space = tune.read_space(space)
    load_experiment(experiment, overrides)
    name = name or tune.default_name(experiment, space)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,90}", name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_', '-' (it names "
                          "results/tune-NAME/)")
    url = storage or (tune.default_storage(runs_root, name) if open_storage else "")
    if open_storage:
        tune.open_storage(url)  # a bad URL or a missing driver: one line before anything runs
    return tune.TuneSetup(
        experiment=str(experiment), overrides=tuple(overrides),
        space=search_space.model_dump(), name=name, storage=url,
        data_root=str(Path(data.root).resolve()), runs_root=str(runs_root.resolve()),
        device=device, threads=threads, space_file=str(space))


def open_tuned(setup: tune.TuneSetup, search, seeds: list[int] | None, runs_root: Path,
               results_dir: Path, data=None, report_only: bool = False) -> StudyRun:
    """The search's final study, opened like any other: the best trial ('tuned') beside the
    experiment as written ('hand-picked') for every final seed (default the experiment's),
    its report carrying the search's pages.

    The pages are read from the search's record in the folder's ledger
    (:func:`recbench.tune.search_record`), written here first from ``search``; with
    ``report_only`` (``search`` None) the committed record is all there is, as on a fresh
    clone. Reading the record in both cases makes a search write what a rebuild writes."""
    path = tune.record_path(results_dir, setup.name)
    earlier = tune.read_search_record(path)
    if report_only:
        record = _matching_record(earlier, path, setup, seeds)
    else:
        if seeds is None:
            seeds = list(load_experiment(Path(setup.experiment), list(setup.overrides)).seeds)
        record = tune.search_record(search, setup, seeds, earlier)
        tune.write_search_record(path, record)
    search, seeds = tune.study_from_record(record, list(setup.space["params"])), record["seeds"]
    patch = tune.best_patch(search)
    monitor = search.best_trial.user_attrs.get("monitor", "valid metric")
    final = tune.final_study(setup, patch, seeds, monitor)
    session = open_study(final, runs_root, results_dir, data=data)
    session.search = tune.summary(search, setup, patch, monitor)
    return session


def _matching_record(record: dict | None, path: Path, setup: tune.TuneSetup,
                     seeds: list[int] | None) -> dict:
    """The committed search record, if it records this search (a report from another
    experiment, space or --set would label one search's trials with another's setup)."""
    if record is None:
        raise ConfigError(f"{path} does not exist: no recorded search '{setup.name}' to report; "
                          "run `recbench tune` without --report-only")
    asked = {"experiment": setup.experiment, "overrides": list(setup.overrides),
             "space": setup.space, **({"seeds": list(seeds)} if seeds is not None else {})}
    differ = [key for key, value in asked.items() if record.get(key) != value]
    if differ:
        recorded = "; ".join(f"{key}: {record.get(key)}" for key in differ)[:200]
        raise ConfigError(f"{path} records search '{setup.name}' with another "
                          f"{', '.join(differ)} ({recorded}); give the recorded ones, or "
                          "another --name")
    return record


def lost_cells(result: StudyResult, folder: Path) -> list[str]:
    """``experiment | variant (seeds a → b)`` for each cell of the committed ``table.csv`` that
    the new result reports from fewer runs. Why: a study without a ledger was rewritten from
    whatever runs were local, and one trained cell turned 31 of gnn-zoo's 32 figures into
    "(not run)" (issue 31.2). A table is (re)written only when it loses nothing: every cell
    complete, or at least as many runs per cell as the committed table has; a new study has
    nothing to lose. Cells are compared by count, not value: a --rerun may change numbers."""
    path = folder / "table.csv"
    if not path.is_file():
        return []
    now = {(c.base, c.variant): len(c.values) for c in result.cells}
    lost = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                had = int(row.get("seeds") or 0)
            except ValueError:
                continue
            key = (row.get("experiment", ""), row.get("variant", ""))
            if had > now.get(key, 0):
                lost.append(f"{key[0]} | {key[1]} (seeds {had} → {now.get(key, 0)})")
    return lost
