"""What the jobs of a study hand one another: the planned runs (plan → run → collect) and
the per-cell results (collect → statistics → report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recbench.composite import Choice
from recbench.config import ExperimentConfig
from recbench.stats import Interval
from recbench.studies.schema import StudyConfig


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
    seeds: dict[str, list[int]] = field(default_factory=dict)  # the planned run seeds by
    # card label (a variant may name its own)
    also: list[StudyResult] = field(default_factory=list)  # one per secondary metric of the
    # study (``also``): the same cells and statistics for that metric, no paper figures
    versus: list[StudyResult] = field(default_factory=list)  # per extra reference row of the
    # study (``versus``) and per metric (the main one, then each ``also``): the same cells
    # with that row as the paired tests' reference


@dataclass
class TableRow:
    """One row of an extra table: a cell (mean over its runs) or one run of it (``seed``)."""

    cell: Cell
    seed: int | None
    values: list[list[float]]  # per column, the figures of the row's runs
    paper: list[float | None]  # per column, the paper's figure
