"""The pages of a hyperparameter search beside its final study's table (results/tune-NAME/):
search.md, trials.md, trials.csv and best.yaml, written by :mod:`recbench.studies.report`.

Why here and not in :mod:`recbench.tune`: a search's report is a study report with more pages,
so one writer writes both. The search hands it a :class:`SearchSummary` of plain values read
from its Optuna study (:func:`recbench.tune.summary`); nothing here imports Optuna.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recbench import runs
from recbench.studies.cells import StudyResult


@dataclass
class SearchSummary:
    """A search as its pages show it."""

    name: str  # the search's name (the Optuna study's; results/tune-NAME/)
    experiment: str  # the experiment file searched
    params: list[str]  # the searched keys, in the space file's order
    sampler: str
    sampler_seed: int
    pruner: str
    monitor: str  # the validation metric optimised
    direction: str  # "minimize" or "maximize"
    rows: list[dict[str, Any]]  # one per trial (recbench.tune.trials_rows; "epochs" it trained)
    complete: int
    pruned: int
    failed: int
    best_number: int
    best_value: float
    patch: dict[str, Any]  # the best trial's values of the searched keys
    best_yaml: str  # the experiment file with the patch written in
    search_seed: int  # the seed every trial ran with: the hand-picked run it is compared to
    plots: dict[str, bytes] = field(default_factory=dict)  # Optuna's own figures, PNG bytes


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def epochs_run(run: str) -> int:
    """Training epochs a trial's run directory holds (finished or .partial)."""
    path = Path(run) / "history.jsonl" if run else None
    return len(path.read_text().splitlines()) if path and path.is_file() else 0


def compute_line(rows: list[dict[str, Any]]) -> str:
    """Trial-epochs spent vs what the same trials would have cost unpruned, estimated by the
    completed trials' mean length (the issue's measure of what pruning saves)."""
    spent = sum(r["epochs"] for r in rows)
    full = [r["epochs"] for r in rows if r["state"] == "complete"]
    if not full or not spent:
        return ""
    unpruned = len(rows) * sum(full) / len(full)
    pruned = sum(r["state"] == "pruned" for r in rows)
    return (f"Compute: {spent} trial-epochs run over {len(rows)} trials ({pruned} pruned); "
            f"unpruned, at the completed trials' mean of {sum(full) / len(full):.0f} epochs, "
            f"about {unpruned:.0f}: pruning spent {spent / unpruned:.0%} of it.")


def trials_markdown(search: SearchSummary) -> str:
    rows, params = search.rows, search.params
    lines = [f"# search {search.name}: {len(rows)} trials",
             "", f"Objective: best validation {search.monitor} of each trial's run "
             f"({search.direction}); pruned trials show their last validation "
             "value. Test metrics were not read.", "",
             "| trial | state | valid | evaluations | " + " | ".join(params) + " | run |",
             "|---|---|---|---|" + "---|" * len(params) + "---|"]
    for r in rows:
        cells = [str(r["trial"]), r["state"], "" if r["valid"] is None else f"{r['valid']:.4f}",
                 str(r["evaluations"])]
        cells += [fmt(r.get(p)) for p in params]
        cells.append(Path(r["run"]).name if r["run"] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def trials_csv(search: SearchSummary) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["trial", "state", "valid", "evaluations",
                                             *search.params, "run"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(search.rows)
    return buf.getvalue()


def final_figures(search: SearchSummary, result: StudyResult) -> tuple[float | None, str]:
    """From the final study: the hand-picked run's best validation value at the search seed
    (what the best trial is compared with) and the test line of search.md."""
    cells = {c.variant: c for c in result.cells}
    t, h = cells.get("tuned"), cells.get("hand-picked")
    hand = next((run for run, seed in zip(h.run_dirs, h.seeds, strict=True)
                 if seed == search.search_seed), None) if h else None
    hand_valid = runs.read_metrics(hand).get("best_valid") if hand else None
    test_line = (f"tuned {t.mean:.4f} ± {t.std:.4f} vs hand-picked {h.mean:.4f} ± {h.std:.4f} "
                 f"(p {t.p_value:.2g})" if t and h and t.values and h.values
                 and t.p_value is not None else "see table.md")
    return hand_valid, test_line


def search_markdown(search: SearchSummary, hand_valid: float | None, test_line: str) -> str:
    if hand_valid is None:
        verdict = "the hand-picked run at the search seed is missing, so no comparison"
    else:
        better = (search.best_value < hand_valid) if search.direction == "minimize" else (
            search.best_value > hand_valid)
        verdict = (f"hand-picked at the same seed: {hand_valid:.4f} — the search "
                   f"{'beats' if better else 'does not beat'} it on validation "
                   f"({search.best_value - hand_valid:+.4f})")
    return "\n".join([
        f"# tune-{search.name}", "",
        f"`recbench tune {search.experiment} --space …` over "
        f"{', '.join(search.params)}; {search.sampler} sampler (seed {search.sampler_seed}), "
        f"{search.pruner} pruner; objective: best validation {search.monitor} (test never read "
        "during the search).", "",
        f"Trials: {search.complete} complete, {search.pruned} pruned, "
        f"{search.failed} failed (trials.md).", "",
        f"Best trial {search.best_number}: validation {search.monitor} {search.best_value:.4f} "
        f"with {', '.join(f'{k} = {fmt(v)}' for k, v in search.patch.items())} (best.yaml); "
        f"{verdict}.", "",
        compute_line(search.rows), "",
        f"Test, once per final seed (table.md, paired Wilcoxon over users): {test_line}", ""])


def search_files(search: SearchSummary) -> list[str]:
    """The names :func:`recbench.studies.report.write_search` writes."""
    return ["search.md", "trials.md", "trials.csv", "best.yaml", *search.plots]
