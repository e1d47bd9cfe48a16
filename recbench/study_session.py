"""One study opened for one command: plan, run, report, record.

The use case behind ``recbench ablate``/``sweep``: it joins the planning and aggregation of
:mod:`recbench.studies` with its writer, :mod:`recbench.studies.report`. It sits above both so that
neither imports the other's caller (the report reads the studies' result types; the studies
know nothing of files under results/ except their ledger).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from recbench.errors import RunError
from recbench.studies import (
    LEDGER,
    PlannedRun,
    StudyConfig,
    StudyResult,
    aggregate,
    as_recorded,
    plan,
    refresh,
    report,
    select,
    write_ledger,
)


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
    report.write_study(result, session.folder)
    return result, recorded


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
