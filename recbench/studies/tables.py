"""The text of a study's tables: table.md, table.csv, table.tex, extra.md and the extra
tables a study file names, the paper's figure beside ours.
"""

from __future__ import annotations

import csv
import io
import math

from recbench import protocol
from recbench.composite import evaluated_label, pooled
from recbench.stats import LEVEL, RESAMPLES, Interval
from recbench.studies.cells import Cell, StudyResult, TableRow
from recbench.studies.collect import table_rows
from recbench.studies.schema import ExtraTable
from recbench.train.api import lower_is_better


def _fmt(x: float | None, digits: int = 4) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def guard_mark(cell: Cell) -> str:
    """The guard's visible mark: a row below the best of the rows it must beat."""
    if cell.below is None:
        return ""
    return f"⚠ below best single space ({cell.below[0]} {cell.below[1]:.4f})"


def _ours(cell: Cell) -> str:
    if not cell.values:
        return "(not run)"
    text = f"{cell.mean:.4f}" if len(cell.values) == 1 else f"{cell.mean:.4f} ± {cell.std:.4f}"
    mark = guard_mark(cell)
    return f"{text} {mark}" if mark else text


def _p(cell: Cell, result: StudyResult, p: float | None = None) -> str:
    if cell.variant == result.reference:
        return "ref"
    if p is None:
        return ""
    mark = " *" if p < 0.05 else ""
    return f"{p:.2g}{mark}"


def _ci(ci: Interval | None) -> str:
    return "" if ci is None else f"[{ci.low:.4f}, {ci.high:.4f}]"


def _effect(cell: Cell, result: StudyResult) -> str:
    if cell.variant == result.reference or cell.effect is None:
        return ""
    e = cell.effect
    return f"{e.estimate:+.4f} [{e.low:+.4f}, {e.high:+.4f}]"


def _verdict(cell: Cell) -> str:
    if cell.verdict:
        return cell.verdict
    return "—" if cell.paper is not None and cell.values else ""


def _rows(result: StudyResult) -> list[list[str]]:
    rows = []
    for c in result.cells:
        diff = c.mean - c.paper if c.paper is not None and c.values else None
        rows.append([c.base, c.dataset, c.variant, _ours(c), str(len(c.values)), _ci(c.ci),
                     _fmt(c.paper), _fmt(diff), _verdict(c), _p(c, result, c.p_value),
                     _p(c, result, c.p_holm), _effect(c, result)])
    return rows


HEADER = ["experiment", "dataset", "variant", "ours (mean ± std)", "seeds", "95% CI (units)",
          "paper", "ours − paper", "verdict", "p vs ref", "p (Holm)", "Δ vs ref [95% CI]"]
COMPOSITE = ["evaluated (per seed)", "valid: head / chosen / best space"]  # after "variant"
COMPOSITE_NOTE = (
    "evaluated: what scored each attentive row in each seed (seed order; ×n = every seed "
    "alike), as the run's validation selector kept it: head = the trained attention head, "
    "uniform = uniform α, ensemble(A+B) = the standardised ensemble of those spaces, a space's "
    "name = that single space alone; blank for single spaces. valid: the mean over seeds of "
    "the trained head's, the evaluated candidate's and the best single space's validation "
    "figure, in the selector's own metric (recall or HR at the run's first cut-off); blank "
    "where no selection ran (no validation split: the head is evaluated as trained). The "
    "head's test figure is not stored, so no table shows it.")


def composite(result: StudyResult) -> bool:
    """Whether the table names what its rows evaluated: a rows study whose runs record it."""
    return bool(result.study.rows) and any(c.choices for c in result.cells)


def _valid(cell: Cell) -> str:
    v = pooled(cell.choices)
    if v.head is None and v.chosen is None:
        return ""
    best = "" if v.best_space is None else f"{v.best_space} {_fmt(v.best_space_value)}"
    return f"{_fmt(v.head) or '—'} / {_fmt(v.chosen) or '—'} / {best or '—'}"


def main_table(result: StudyResult) -> tuple[list[str], list[list[str]]]:
    """The header and rows of table.md (and the console table)."""
    rows = _rows(result)
    if not composite(result):
        return HEADER, rows
    at = HEADER.index("variant") + 1
    header = HEADER[:at] + COMPOSITE + HEADER[at:]
    rows = [r[:at] + [evaluated_label(c.choices), _valid(c)] + r[at:]
            for r, c in zip(rows, result.cells, strict=True)]
    return header, rows


def test_selected_columns(result: StudyResult) -> dict[str, list[str]]:
    """Per file of the study, the labels of its columns that report a test-selected figure."""
    out: dict[str, list[str]] = {}
    cols = [c for c in result.study.columns if "test_selected" in c]
    if cols:
        out["extra.md"] = cols
    for table in result.study.tables:
        labels = [label for label, spec in table.column_specs().items()
                  if "test_selected" in spec.key]
        if labels:
            out.setdefault(table.file, []).extend(labels)
    return out


def protocol_card(result: StudyResult) -> list[str]:
    """The card's Markdown lines (empty for a result that carries no configs)."""
    if not result.configs:
        return []
    return protocol.card(result.configs, result.metric, result.seeds, result.study.split,
                         test_selected_columns(result))


def markdown(result: StudyResult) -> str:
    s = result.study
    better = "lower" if lower_is_better(result.metric) else "higher"
    lines = [f"# {s.study}", "", s.description, "", *protocol_card(result),
             f"Metric: **{result.metric}** ({s.split} split; mean ± sample std over seeds; "
             f"{better} is better). 95% CI: percentile bootstrap of the figure over evaluation "
             f"units (users, ratings or samples) pooled over seeds, {RESAMPLES:,} resamples, "
             "fixed seed (blank without per-unit data). Verdict: the paper's figure against that "
             "interval. Reference variant for the paired Wilcoxon signed-rank test: "
             f"`{result.reference}` (* = p < 0.05, units pooled over seeds); p (Holm): "
             "Holm-corrected over this table's rows; Δ vs ref: this row minus the reference "
             f"over the units both scored, with its paired bootstrap {LEVEL:.0%} interval.", ""]
    header, rows = main_table(result)
    if composite(result):
        lines += [COMPOSITE_NOTE, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(result: StudyResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    more = composite(result)  # the composite columns, last, so other tables keep their bytes
    w.writerow(["experiment", "dataset", "variant", "metric", "mean", "std", "seeds", "paper",
                "diff", "p_value", "values", "guard", "ci_low", "ci_high", "units", "verdict",
                "p_holm", "effect", "effect_low", "effect_high"]
               + (["evaluated", "valid_head", "valid_chosen", "valid_best_space",
                   "valid_best_space_value"] if more else []))
    for c in result.cells:
        v = pooled(c.choices)
        tail = [evaluated_label(c.choices), _fmt(v.head, 6), _fmt(v.chosen, 6),
                v.best_space or "", _fmt(v.best_space_value, 6)] if more else []
        diff = c.mean - c.paper if c.paper is not None and c.values else ""
        w.writerow([c.base, c.dataset, c.variant, result.metric, _fmt(c.mean, 6),
                    _fmt(c.std, 6), len(c.values), "" if c.paper is None else c.paper,
                    diff if diff == "" else f"{diff:.6f}",
                    "" if c.p_value is None else f"{c.p_value:.6g}",
                    " ".join(f"{v:.6f}" for v in c.values),
                    "" if c.below is None else f"below {c.below[0]} {c.below[1]:.6f}",
                    *_interval_csv(c.ci, units=True), c.verdict,
                    "" if c.p_holm is None else f"{c.p_holm:.6g}",
                    *_interval_csv(c.effect), *tail])
    return buf.getvalue()


def _interval_csv(ci: Interval | None, units: bool = False) -> list[str]:
    """(low, high, units) of a row's interval, or (estimate, low, high) of its effect."""
    if ci is None:
        return ["", "", ""]
    if units:
        return [f"{ci.low:.6f}", f"{ci.high:.6f}", str(ci.units)]
    return [f"{ci.estimate:.6f}", f"{ci.low:.6f}", f"{ci.high:.6f}"]


def latex(result: StudyResult) -> str:
    def esc(t: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"),
                     ("#", r"\#"), ("±", r"$\pm$")):
            t = t.replace(a, b)
        return t

    lines = [r"\begin{tabular}{lllrrrl}", r"\toprule",
             r"Experiment & Dataset & Variant & Ours & Paper & $\Delta$ & $p$ \\", r"\midrule"]
    for r in _rows(result):
        lines.append(" & ".join(esc(x) for x in (r[0], r[1], r[2], r[3], r[6], r[7], r[9]))
                     + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              f"% {result.study.study}: {result.metric}, mean $\\pm$ std over seeds"]
    return "\n".join(lines) + "\n"


def extra_markdown(result: StudyResult) -> str:
    """Every figure the study's ``columns`` names, mean ± std over seeds, with the paired
    Wilcoxon p-value against the reference variant where per-unit vectors exist."""
    s = result.study
    cols = s.columns
    lines = [f"# {s.study}: all columns", "",
             f"Test split; mean ± std over finished seeds; (p) = paired Wilcoxon vs "
             f"`{result.reference}` (units pooled over seeds, * = p < 0.05). Timings are CPU "
             "figures of the machine each run used (env.json); compare them within a table.", "",
             "| experiment | variant | seeds | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(cols) + 3)]
    for c in result.cells:
        row = [c.base, c.variant, str(len(c.values))]
        for col in cols:
            values, p = c.columns.get(col, ([], None))
            if not values:
                row.append("")
                continue
            mean = sum(values) / len(values)
            std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 \
                if len(values) > 1 else 0.0
            digits = 4 if abs(mean) < 10 else 1
            cell = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(values) > 1 else "")
            if p is not None:
                cell += f" ({p:.2g}{'*' if p < 0.05 else ''})"
            row.append(cell)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _figure(values: list[float], fmt: str, spread: bool) -> str:
    if not values:
        return ""
    mean = sum(values) / len(values)
    text = format(mean, fmt)
    if spread and len(values) > 1:
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        text += " ± " + format(std, fmt.lstrip("+"))
    return text


def table_markdown(result: StudyResult, table: ExtraTable, heading: str) -> str:
    """One of the study's ``tables``: a heading, its note and the rows (the paper's figure
    after each column that has one)."""
    specs = table.column_specs()
    rows: list[TableRow] = table_rows(result, table)
    with_paper = [any(r.paper[i] is not None for r in rows) for i in range(len(specs))]
    header = ["experiment", "variant", "seed" if table.per == "run" else "seeds"]
    for (label, _), paper in zip(specs.items(), with_paper, strict=True):
        header += [label] + ([f"paper {label}"] if paper else [])
    lines = [f"{heading} {table.title}", ""] + ([table.note.strip(), ""] if table.note else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out = [r.cell.base, r.cell.variant,
               str(r.seed) if table.per == "run" else str(len(r.cell.run_dirs))]
        for i, spec in enumerate(specs.values()):
            out.append(_figure(r.values[i], spec.format, table.spread))
            if with_paper[i]:
                out.append(_fmt(r.paper[i]))
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def extra_tables(result: StudyResult) -> dict[str, str]:
    """The text of each file the study's ``tables`` name (tables sharing a file follow one
    another in it under the study's name)."""
    files: dict[str, list[ExtraTable]] = {}
    for table in result.study.tables:
        files.setdefault(table.file, []).append(table)
    out = {}
    for name, tables in files.items():
        s = result.study.study
        if len(tables) == 1:
            out[name] = table_markdown(result, tables[0], f"# {s}:")
        else:
            out[name] = f"# {s}\n\n" + "\n".join(table_markdown(result, t, "##") for t in tables)
    return out
