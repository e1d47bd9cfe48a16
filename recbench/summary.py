"""The README's per-paper "ours | paper | gap" tables, generated from committed study tables.

Figures copied by hand into a README drift from the results they quote. Here every number comes
from ``results/<study>/table.csv`` (written by ``recbench ablate``; the paper's figure is the one
the study file quotes), and which row feeds which line is declared once, in
``experiments/summary/papers.yaml``. ``recbench summary --write README.md`` replaces the text between
the two marker comments; a test checks the committed README against the committed results.

The reader is tolerant by design: a study that was never run, a row that is missing, a table in
another format or a metric that does not match becomes a visible marker in the cell (and a
warning), never a crash, so the summary can be written while studies are half done.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from recbench.config import load_yaml_file, validate_file
from recbench.errors import RecbenchError

START = "<!-- summary:start -->"
END = "<!-- summary:end -->"
NEEDED = ("experiment", "dataset", "variant", "metric", "mean", "std", "seeds", "paper", "diff")
HEADER = ["result", "dataset", "metric", "ours (mean ± std)", "seeds", "paper", "ours − paper",
          "95% CI (units)", "verdict", "table"]


class Row(BaseModel):
    """One summary line: which row of which study table it shows."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1)
    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # results/STUDY/table.csv
    experiment: str = Field(min_length=1)  # the table's `experiment` column (the base experiment)
    variant: str = Field(min_length=1)  # the table's `variant` column
    metric: str = Field(min_length=1)  # what the line claims to show; checked against the table


class Paper(BaseModel):
    """One generated table: a paper (or model family) and its lines."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1)
    doc: str | None = None  # the docs/ page with the discussion, as linked from the README
    note: str = ""  # one sentence printed under the title; words, not figures
    rows: list[Row] = Field(min_length=1)


class SummaryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    papers: list[Paper] = Field(min_length=1)


def load_config(path: Path) -> SummaryConfig:
    """Read and validate experiments/summary/papers.yaml; a bad file is one ConfigError line."""
    return validate_file(SummaryConfig, load_yaml_file(path, "summary file"), path)


@dataclass(frozen=True)
class HeadCheck:
    """A composite row's trained attention head against its best single space, on validation
    (means over seeds, from the study table's valid_* columns)."""

    dataset: str
    study: str
    variant: str
    head: float
    best_space: str
    best_value: float


@dataclass
class Line:
    """A rendered summary line and, when the table could not supply it, why."""

    cells: list[str]
    problem: str | None = None
    head: HeadCheck | None = None  # a composite row whose table has the head's validation figure


@dataclass
class Summary:
    markdown: str
    problems: list[str] = field(default_factory=list)  # one per line that is not a real figure


def read_table(path: Path) -> list[dict[str, str]] | None:
    """The rows of a study's table.csv, or None when it is missing or not a study table."""
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not set(NEEDED) <= set(reader.fieldnames):
                return None
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _float(text: str | None) -> float | None:
    try:
        x = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return None if x is None or math.isnan(x) else x


def _ours(rec: dict[str, str]) -> str | None:
    mean, std, seeds = _float(rec.get("mean")), _float(rec.get("std")), _float(rec.get("seeds"))
    if mean is None or not seeds:
        return None
    text = f"{mean:.4f}" if seeds == 1 or std is None else f"{mean:.4f} ± {std:.4f}"
    guard = (rec.get("guard") or "").split()
    if len(guard) == 3 and guard[0] == "below" and _float(guard[2]) is not None:
        text += f" ⚠ below {guard[1]} {_float(guard[2]):.4f}"
    return text


def _gap(rec: dict[str, str]) -> str:
    diff = _float(rec.get("diff"))
    if diff is None:
        mean, paper = _float(rec.get("mean")), _float(rec.get("paper"))
        diff = mean - paper if mean is not None and paper is not None else None
    return "—" if diff is None else f"{diff:+.4f}"


def _study_split(studies_dir: Path | None, study: str) -> str:
    """'valid' when the study file says its table reports validation figures (else 'test')."""
    path = studies_dir / f"{study}.yaml" if studies_dir else None
    if path is None or not path.is_file():
        return "test"  # e.g. tune-NAME: its final study is tested; table.csv carries no split
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return "test"
    return "valid" if isinstance(raw, dict) and raw.get("split") == "valid" else "test"


def render_line(row: Row, results_dir: Path, studies_dir: Path | None,
                tables: dict[tuple[str, str], list[dict[str, str]] | None],
                link_root: Path) -> Line:
    """One table line from the study table; a marker instead of a figure when it cannot be read."""
    stem = _table_stem(row, results_dir, tables)
    table = tables[(row.study, stem)]
    md = results_dir / row.study / f"{stem}.md"
    link = Path(os.path.relpath(md.resolve(), link_root.resolve())).as_posix()
    source = f"[{row.study}]({link})" if md.is_file() else f"`{row.study}`"
    metric = row.metric + (" (validation)" if _study_split(studies_dir, row.study) == "valid"
                           else "")
    blank = [row.label, "", metric, "", "", "", "", "", "", source]

    def marked(marker: str, problem: str) -> Line:
        cells = list(blank)
        cells[3] = marker
        return Line(cells, f"{row.label} ({row.study}): {problem}")

    if table is None:
        exists = (results_dir / row.study / f"{stem}.csv").is_file()
        return (marked("(unreadable table)", "table.csv is not a study table") if exists
                else marked("(not run)", f"no {results_dir.as_posix()}/{row.study}/{stem}.csv"))
    found = [r for r in table if r["experiment"] == row.experiment and r["variant"] == row.variant]
    if not found:
        return marked("(no such row)", f"no row experiment={row.experiment!r} "
                                       f"variant={row.variant!r}")
    if len(found) > 1:
        return marked(f"({len(found)} rows match)", "the selector is ambiguous")
    rec = found[0]
    blank[1] = rec["dataset"]
    if rec["metric"] != row.metric:
        return marked(f"(table reports {rec['metric']})",
                      f"summary.yaml says {row.metric}, the table {rec['metric']}")
    ours = _ours(rec)
    if ours is None:
        return marked("(not run)", "the table has no finished run for this row")
    paper = rec.get("paper") or "—"
    label = row.label + (f" — evaluated: {rec['evaluated']}" if rec.get("evaluated") else "")
    return Line([label, rec["dataset"], metric, ours, str(int(_float(rec["seeds"]) or 0)),
                 paper, _gap(rec), _interval(rec), rec.get("verdict") or "—", source],
                head=_head_check(rec, row))


def _table_stem(row: Row, results_dir: Path,
                tables: dict[tuple[str, str], list[dict[str, str]] | None]) -> str:
    """Which table of the study shows the row: table.csv, or the study's table of a secondary
    metric (table_<metric>.csv, :func:`recbench.studies.schema.table_stem`) when table.csv
    reports another metric and that table exists. Why: a study's headline metric may tie every
    model (GConv's accuracy@1) while a secondary one separates them (issue 34)."""
    from recbench.studies.schema import table_stem

    def read(stem: str) -> list[dict[str, str]] | None:
        if (row.study, stem) not in tables:
            tables[(row.study, stem)] = read_table(results_dir / row.study / f"{stem}.csv")
        return tables[(row.study, stem)]

    main = read("table")
    if main and main[0]["metric"] != row.metric \
            and (results_dir / row.study / f"{table_stem(row.metric)}.csv").is_file():
        read(table_stem(row.metric))
        return table_stem(row.metric)
    return "table"


def _head_check(rec: dict[str, str], row: Row) -> HeadCheck | None:
    head, best = _float(rec.get("valid_head")), _float(rec.get("valid_best_space_value"))
    if head is None or best is None or not rec.get("valid_best_space"):
        return None
    return HeadCheck(rec["dataset"], row.study, row.variant, head, rec["valid_best_space"], best)


def head_sentences(checks: list[HeadCheck]) -> list[str]:
    """One plain sentence per dataset (and study: the split protocols differ) saying whether the
    trained attention head beats its best single space on validation. Why: most composite
    rows evaluate an ensemble the selector chose instead of the head, so the rows themselves
    do not answer whether the trained attention works (issue 34)."""
    groups: dict[tuple[str, str], list[HeadCheck]] = {}
    for c in checks:
        groups.setdefault((c.dataset, c.study), []).append(c)
    if not groups:
        return []
    out = ["Does the trained attention head beat its best single space? On validation (the "
           "selector's figures, mean over seeds; the head's test figure is not stored; rows "
           "without a validation split have none):", ""]
    for (dataset, study), group in groups.items():
        wins = [c for c in group if c.head > c.best_value]
        losses = [c.variant for c in group if c not in wins]
        answer = ("yes" if not losses else "no" if not wins else
                  f"only for {', '.join(c.variant for c in wins)}, not for {', '.join(losses)}")
        detail = "; ".join(f"{c.variant} head {c.head:.4f} {'>' if c in wins else '≤'} "
                           f"{c.best_space} {c.best_value:.4f}" for c in group)
        out.append(f"- {dataset} ({study}): {answer} — {detail}.")
    return out + [""]


def _interval(rec: dict[str, str]) -> str:
    """The row's bootstrap interval from table.csv ('—' for a table written before it had one)."""
    low, high = _float(rec.get("ci_low")), _float(rec.get("ci_high"))
    return "—" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"


def block_card(paper: Paper, studies_dir: Path | None) -> list[str]:
    """The protocol card of one paper's block, derived from the resolved configs of the cells
    its rows show. Rows whose study file or experiments cannot be read here are left out of
    the card (the line itself says what is wrong); no readable row, no card."""
    from recbench.errors import RecbenchError
    from recbench.protocol import card
    from recbench.studies import cell_configs, list_studies
    from recbench.studies.planning import planned_seeds

    if studies_dir is None or not studies_dir.is_dir():
        return []
    try:
        known = {s.study: s for s in list_studies(studies_dir)}
    except RecbenchError:
        return []
    root = studies_dir.resolve().parent.parent  # experiments/studies/ -> the repository
    resolved: dict[str, list] = {}
    chosen: list = []
    seeds: list[list[int]] = []  # per chosen cell: a variant may plan its own seeds
    for row in paper.rows:
        study = known.get(row.study)
        if study is None:
            continue
        if row.study not in resolved:
            try:
                resolved[row.study] = cell_configs(study, root)
            except (RecbenchError, OSError):
                resolved[row.study] = []
        for base, label, cfg in resolved[row.study]:
            shown = {label} if not study.rows else (
                set(study.rows) if label == "base" else {f"{label} · {r}" for r in study.rows})
            if base == row.experiment and row.variant in shown and all(
                    (b, c) != (base, cfg) for b, _, c in chosen):
                chosen.append((base, label, cfg))
                seeds.append(planned_seeds(study, cfg))
    if not chosen:
        return []
    metrics = list(dict.fromkeys(r.metric for r in paper.rows))
    metric = metrics[0] if len(metrics) == 1 else "the row's metric"
    bases = [b for b, _, _ in chosen]
    named = [(b, b if bases.count(b) == 1 else f"{b} · {label}", cfg) for b, label, cfg in chosen]
    by_label = {label: mine for (_, label, _), mine in zip(named, seeds, strict=True)}
    return card(named, metric, by_label)


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def render(config: SummaryConfig, results_dir: Path, studies_dir: Path | None = None,
           link_root: Path | None = None) -> Summary:
    """The Markdown of every paper's table (the text that goes between the README's markers).

    Links to each study's table.md are relative to ``link_root`` (the README's folder; default
    the current directory), so they resolve inside the repository wherever the README sits.
    """
    link_root = link_root or Path.cwd()
    tables: dict[tuple[str, str], list[dict[str, str]] | None] = {}
    out = ["<!-- generated by `recbench summary --write README.md` from results/*/table.csv as "
           "declared in experiments/summary/papers.yaml: edit those, not this block -->", "",
           "Test split unless a metric says otherwise; mean ± sample std over the seeds "
           "shown; \"paper\" is the figure the study file quotes; ⚠ marks an attentive model "
           "below the best single space it attends over. 95% CI: bootstrap over evaluation "
           "units pooled over seeds (— where the study table predates it or has no per-unit "
           "data); verdict: the paper's figure inside / above / below that interval. "
           "\"— evaluated:\" names what scored a composite row in each seed, from its study "
           "table: the trained attention head, uniform α, the standardised ensemble of the "
           "spaces named, or one single space.", ""]
    problems: list[str] = []
    for paper in config.papers:
        title = f"### {paper.title}"
        if paper.doc:
            title += f" ([{Path(paper.doc).name}]({paper.doc}))"
        out += [title, ""]
        if paper.note:
            out += [" ".join(paper.note.split()), ""]
        out += block_card(paper, studies_dir)
        out += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        checks = []
        for row in paper.rows:
            line = render_line(row, results_dir, studies_dir, tables, link_root)
            out.append("| " + " | ".join(_escape(c) for c in line.cells) + " |")
            if line.problem:
                problems.append(line.problem)
            if line.head is not None:
                checks.append(line.head)
        out.append("")
        out += head_sentences(checks)
    return Summary("\n".join(out).rstrip("\n") + "\n", problems)


def _parts(text: str, origin: str) -> tuple[str, str, str]:
    """(before START, between the markers, after END); a RecbenchError when they are not there."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise RecbenchError(f"{origin}: needs one '{START}' line and, after it, one '{END}' line "
                            "around the generated summary")
    head, rest = text.split(START, 1)
    body, tail = rest.split(END, 1)
    return head, body.removeprefix("\n"), tail


def splice(text: str, block: str, origin: str = "README") -> str:
    """``text`` with everything between the START and END markers replaced by ``block``."""
    head, _, tail = _parts(text, origin)
    return f"{head}{START}\n{block}{END}{tail}"


def current_block(text: str, origin: str = "README") -> str:
    """What is between the markers now (for --check and the drift test)."""
    return _parts(text, origin)[1]


def write(path: Path, block: str) -> bool:
    """Replace the block in ``path`` atomically; False when it was already up to date."""
    from recbench.runs import atomic_write_text

    if not path.is_file():
        raise RecbenchError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    new = splice(text, block, str(path))
    if new == text:
        return False
    atomic_write_text(path, new)
    return True
