"""What a composite row of a study actually evaluated, read from its runs' metrics.json.

Why: an attentive representation type (GLA's AD, GAD, LAD, ...) is scored with whatever its
validation selector kept: the trained attention head, a uniform α, a standardised ensemble of
some of its spaces, or one single space. A table row labelled "AD" was, in most seeds of the
sound variant, an ensemble, not the head (issue 34). The run records the choice per type
(``extra.alpha_choice``) and every candidate's validation figure (``extra.alpha_select_valid``);
this module turns those into what a table row says: the evaluated candidate per seed, the
trained head's validation figure beside the chosen one's, and the best single space's.

Only validation figures exist for the candidates the selector did not keep: the head's own test
figure is not stored, so nothing here claims one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

HEAD = "head"
_NOT_SPACES = (HEAD, "uniform")


@dataclass(frozen=True)
class Choice:
    """One run's record for one attentive row."""

    evaluated: str  # 'head', 'uniform', 'ensemble(A+B)' or a single space's name
    scores: dict[str, float]  # candidate -> validation figure ({} when no selection ran)
    key: str = ""  # the selector's own name of the evaluated candidate (default: evaluated)

    @property
    def head_valid(self) -> float | None:
        return self.scores.get(HEAD)

    @property
    def chosen_valid(self) -> float | None:
        return self.scores.get(self.key or self.evaluated)

    @property
    def spaces(self) -> dict[str, float]:
        """The single spaces' validation figures (the selector scores each alone)."""
        return {k: v for k, v in self.scores.items()
                if k not in _NOT_SPACES and not k.startswith("ensemble")}


def row_type(row: str, main: str | None) -> str | None:
    """The representation type a row reports: the row itself, or for a candidate-count row
    ('K3': the main type within K nearest clusters) the run's main type."""
    if re.fullmatch(r"K\d+", row):
        return main
    return row


def run_choice(metrics: dict, row: str, main: str | None = None) -> Choice | None:
    """What scored ``row`` in one run (None for a single space or a run that records no
    choice). 'ensemble' (all the type's spaces) is spelt out as ensemble(A+B+...) from the
    single spaces the selector scored, so a row never just says 'ensemble'."""
    extra = metrics.get("extra", {})
    choices = extra.get("alpha_choice")
    kind = row_type(row, main)
    if not isinstance(choices, dict) or kind not in choices:
        return None
    scores_all = extra.get("alpha_select_valid") or {}
    scores = {k: float(v) for k, v in (scores_all.get(kind) or {}).items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    evaluated = str(choices[kind])
    choice = Choice(evaluated, scores)
    if evaluated == "ensemble" and choice.spaces:
        choice = Choice(f"ensemble({'+'.join(choice.spaces)})", scores, evaluated)
    return choice


def evaluated_label(choices: list[Choice]) -> str:
    """Compact per-seed text: 'ensemble(LD+LP) ×3' when every seed agrees, else the seeds'
    choices in seed order ('head, ensemble(GD+GP), GD')."""
    names = [c.evaluated for c in choices]
    if not names:
        return ""
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{names[0]} ×{len(names)}"
    return ", ".join(names)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept and len(kept) == len(values) else None


@dataclass(frozen=True)
class Validation:
    """Validation figures of one row pooled over its seeds (mean of the per-seed figures)."""

    head: float | None
    chosen: float | None
    best_space: str | None  # the single space with the best pooled figure
    best_space_value: float | None


def pooled(choices: list[Choice]) -> Validation:
    """Means over seeds of the head's, the chosen candidate's and each single space's
    validation figure; None where any seed lacks it (no selection ran: nothing to pool)."""
    if not choices:
        return Validation(None, None, None, None)
    head = _mean([c.head_valid for c in choices])
    chosen = _mean([c.chosen_valid for c in choices])
    names = list(dict.fromkeys(s for c in choices for s in c.spaces))
    spaces = {s: m for s in names if (m := _mean([c.spaces.get(s) for c in choices])) is not None}
    if not spaces:
        return Validation(head, chosen, None, None)
    best = max(spaces, key=spaces.__getitem__)  # first of equals, in the selector's order
    return Validation(head, chosen, best, spaces[best])
