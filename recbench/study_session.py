"""One study opened for one command: plan, run, report, record.

The use case behind ``recbench ablate``/``sweep``: it joins the planning and aggregation of
:mod:`recbench.studies` with the writer of :mod:`recbench.report`. It sits above both so that
neither imports the other's caller (the report reads the studies' result types; the studies
know nothing of files under results/ except their ledger).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recbench import report
from recbench.studies import (
    LEDGER,
    PlannedRun,
    StudyConfig,
    StudyResult,
    aggregate,
    plan,
    refresh,
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
               only_experiments: str | None = None) -> StudyRun:
    """Plan the study (runs found under ``runs_root`` or in its committed ledger)."""
    folder = results_dir / study.study
    full = plan(study, runs_root, folder / LEDGER)
    return StudyRun(study, runs_root, folder, full, select(full, only_seeds, only_variants,
                                                                only_experiments))


def report_study(session: StudyRun) -> tuple[StudyResult, int] | None:
    """Write results/STUDY/ (table, extra tables, plot, runs.txt) from the finished runs of the
    configs planned when the study opened (:func:`refresh`), and record them in the ledger.
    Returns the result and the number of new ledger records; None, writing nothing, when no
    run of the study has finished (a table of '(not run)' would replace a committed one)."""
    session.full_plan = refresh(session.full_plan, session.runs_root, session.ledger)
    if not session.any_finished:
        return None
    result = aggregate(session.study, session.full_plan)
    report.write_study(result, session.folder)
    return result, write_ledger(result, session.full_plan, session.ledger)
