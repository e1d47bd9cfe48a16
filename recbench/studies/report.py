"""Write a study's report: every file under results/STUDY/ (the tables, runs.txt, plot.png
and, for a search, its pages), and the console table the commands print.
"""

from __future__ import annotations

import io
from pathlib import Path

from rich.table import Table

from recbench.runs import atomic_write_bytes, atomic_write_text
from recbench.studies.cells import StudyResult
from recbench.studies.schema import table_stem, versus_stem
from recbench.studies.search import (
    SearchSummary,
    final_figures,
    search_files,
    search_markdown,
    trials_csv,
    trials_markdown,
)
from recbench.studies.tables import (
    csv_text,
    extra_markdown,
    extra_tables,
    latex,
    main_table,
    markdown,
)


def plot_png(result: StudyResult) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    bases = list(dict.fromkeys(c.base for c in result.cells))
    fig, axes = plt.subplots(1, len(bases), figsize=(5.5 * len(bases), 4.2), squeeze=False)
    s = result.study
    x_label = s.x_label or (next(iter(s.vary)) if s.vary else "variant")
    for ax, base in zip(axes[0], bases):
        cells = [c for c in result.cells if c.base == base]
        dataset = cells[0].dataset
        if result.numeric_axis:
            xs = [float(c.variant) for c in cells]
            ran = [(x, c) for x, c in zip(xs, cells) if c.values]
            if ran:
                ax.errorbar([x for x, _ in ran], [c.mean for _, c in ran],
                            yerr=[c.std for _, c in ran], marker="o", capsize=3,
                            label="ours (mean ± std)")
            px = [(x, c.paper) for x, c in zip(xs, cells) if c.paper is not None]
            if px:
                ax.plot(*zip(*px), "s--", color="tab:red", label="paper")
            ax.set_xlabel(x_label)
        else:
            pos = np.arange(len(cells))
            ax.bar(pos - 0.2, [c.mean for c in cells], 0.4, yerr=[c.std for c in cells],
                   capsize=3, label="ours (mean ± std)")
            paper = [c.paper if c.paper is not None else np.nan for c in cells]
            if not all(np.isnan(paper)):
                ax.bar(pos + 0.2, paper, 0.4, color="tab:red", alpha=0.7, label="paper")
            ax.set_xticks(pos, [c.variant for c in cells], rotation=30, ha="right")
            ax.set_xlabel("variant")
            lows = [v for c in cells for v in (c.mean - c.std, c.paper)
                    if v is not None and np.isfinite(v)]
            highs = [v for c in cells for v in (c.mean + c.std, c.paper)
                     if v is not None and np.isfinite(v)]
            if lows and highs:
                lo, hi = min(lows), max(highs)
                pad = 0.15 * (hi - lo + 1e-9)
                ax.set_ylim(max(0.0, lo - pad), hi + pad)
        ax.set_ylabel(f"{result.metric} (test)")
        ax.set_title(f"{s.study} — {dataset} ({base})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def runs_listing(result: StudyResult) -> str:
    lines = []
    for c in result.cells:
        lines.append(f"[{c.base} | {c.variant}]")
        lines += [f"  {p}" for p in c.run_dirs] or ["  (no finished run)"]
    return "\n".join(lines) + "\n"


def _versus_file(result: StudyResult, versus: StudyResult) -> str:
    """The file stem of one ``versus`` table: the main or secondary metric's stem, then _vs_ROW."""
    stem = "table" if versus.metric == result.metric else table_stem(versus.metric)
    return versus_stem(stem, versus.reference)


def study_files(result: StudyResult, search: SearchSummary | None = None) -> list[str]:
    """The names :func:`write_study` writes for this result (and search)."""
    names = ["table.md", "table.csv", "table.tex", "runs.txt"]
    names += ["extra.md"] if result.study.columns else []
    names += list(dict.fromkeys(t.file for t in result.study.tables))
    names += [f"{table_stem(a.metric)}.{ext}" for a in result.also for ext in ("md", "csv")]
    names += [f"{_versus_file(result, v)}.{ext}" for v in result.versus for ext in ("md", "csv")]
    names += ["plot.png"] if any(c.values for c in result.cells) else []
    return names + (search_files(search) if search is not None else [])


def write_study(result: StudyResult, folder: Path, search: SearchSummary | None = None) -> Path:
    """Every file of results/STUDY/; with ``search`` (``recbench tune``'s final study) the
    search's pages too, their comparison read from this result."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "table.md", markdown(result))
    atomic_write_text(folder / "table.csv", csv_text(result))
    atomic_write_text(folder / "table.tex", latex(result))
    atomic_write_text(folder / "runs.txt", runs_listing(result))
    if result.study.columns:
        atomic_write_text(folder / "extra.md", extra_markdown(result))
    for name, text in extra_tables(result).items():
        atomic_write_text(folder / name, text)
    for also in result.also:  # the study's secondary metrics: the main table's text for each
        atomic_write_text(folder / f"{table_stem(also.metric)}.md", markdown(also))
        atomic_write_text(folder / f"{table_stem(also.metric)}.csv", csv_text(also))
    for versus in result.versus:  # the same tables against another reference row
        atomic_write_text(folder / f"{_versus_file(result, versus)}.md", markdown(versus))
        atomic_write_text(folder / f"{_versus_file(result, versus)}.csv", csv_text(versus))
    if any(c.values for c in result.cells):
        atomic_write_bytes(folder / "plot.png", plot_png(result))
    if search is not None:
        write_search(search, folder, *final_figures(search, result))
    return folder


def write_search(search: SearchSummary, folder: Path, hand_valid: float | None,
                 test_line: str) -> list[str]:
    """A search's pages (search.md, trials.md/.csv, best.yaml, Optuna's plots) into
    ``folder``; ``hand_valid`` and ``test_line`` come from its final study
    (:func:`recbench.studies.search.final_figures`). Returns the names written."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "trials.md", trials_markdown(search))
    atomic_write_text(folder / "trials.csv", trials_csv(search))
    atomic_write_text(folder / "best.yaml", search.best_yaml)
    atomic_write_text(folder / "search.md", search_markdown(search, hand_valid, test_line))
    for name, png in search.plots.items():
        atomic_write_bytes(folder / name, png)
    return search_files(search)


def rich_table(result: StudyResult) -> Table:
    header, rows = main_table(result)
    table = Table(*header, title=f"{result.study.study}: {result.metric}")
    for r in rows:
        table.add_row(*r)
    return table
