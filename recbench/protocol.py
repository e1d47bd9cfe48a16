"""The protocol card printed above a study table: how its figures were measured.

Why: two "same" figures most often differ by protocol (full or sampled ranking, which items are
masked, whether the graph saw test pairs, whether anything was chosen on test), and a reader
had to open docs to learn it. Every line here is derived from the resolved configs of the
study's cells (and the study file), never written by hand, so a card cannot drift from what ran.
A figure selected on test gets a loud ⚠ line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from recbench.config import ExperimentConfig
from recbench.models import registry

FIELDS = ("split", "validation", "ranking", "masked items", "graph source", "selection", "seeds")


def _task(cfg: ExperimentConfig) -> str:
    spec = registry().get(getattr(cfg.model, "name", ""))
    return spec.task if spec is not None else "ranking"


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


def split_text(cfg: ExperimentConfig) -> str:
    """The test split (and the training rows kept)."""
    d = cfg.dataset
    task = _task(cfg)
    if task in ("classification", "next_item"):
        return f"{d.name}: the {task.replace('_', '-')} task's own sample split (made by its trainer)"
    if d.protocol == "fixed":
        text = f"{d.name}: fixed published split '{d.split or 'default'}'"
    elif d.protocol == "random":
        text = (f"{d.name}: random {_pct(d.test_ratio)} of ratings to test "
                f"{'per user' if d.per_user else 'over all rows'}, split seed {d.split_seed}"
                + (" (NumPy RandomState shuffle)" if d.legacy_shuffle else ""))
    elif d.protocol == "holdout":
        text = f"{d.name}: {d.holdout_k} held-out items per user, split seed {d.split_seed}"
    elif d.protocol == "loo":
        text = (f"{d.name}: leave-one-out ({'latest' if d.loo_by_time else 'a random'} "
                f"interaction per user to test)")
    else:
        text = f"{d.name}: the dataset's default split"
    if d.min_rating is not None:
        text += f", ratings ≥ {d.min_rating:g} kept"
    if d.train_ratio < 1:
        text += f", {_pct(d.train_ratio)} of training rows kept"
    return text


def validation_text(cfg: ExperimentConfig) -> str:
    """The validation carve-out from the training rows."""
    d = cfg.dataset
    if _task(cfg) in ("classification", "next_item"):
        return "the task's own validation samples"
    if d.valid_ratio > 0:
        return (f"{_pct(d.valid_ratio)} of training rows "
                f"{'per user' if d.valid_per_user else 'over all rows'} carved out")
    return "none (no validation carve-out)"


def ranking_text(cfg: ExperimentConfig, metric: str) -> str:
    """Full or sampled ranking (and over what), or rating error."""
    task = _task(cfg)
    cut = ", ".join(str(k) for k in cfg.eval.k)
    if task == "rating":
        return f"rating prediction: {metric} over the test ratings"
    if task in ("classification", "next_item"):
        return f"{task.replace('_', '-')}: {metric} over the test samples"
    if cfg.dataset.protocol == "loo":
        return (f"sampled: the held-out item among {cfg.dataset.num_negatives} stored negatives "
                f"per user (cut-offs {cut})")
    model = cfg.model
    if getattr(model, "name", "") == "gl_attention" and getattr(model, "retrieval", "") == "clusters":
        return (f"over the items of the user's {model.candidate_clusters} nearest of "
                f"{model.num_clusters} item clusters (cluster retrieval; cut-offs {cut})")
    return f"full over all items (cut-offs {cut})"


def masked_text(cfg: ExperimentConfig) -> str:
    """Which items leave a user's candidate pool at test time."""
    task = _task(cfg)
    if task == "rating":
        return "none (rating prediction)"
    if task in ("classification", "next_item"):
        return "none (the task scores its own samples)"
    if cfg.dataset.protocol == "loo":
        return "none needed: the stored negatives are items the user never rated"
    return ("the user's training and validation items" if cfg.dataset.valid_ratio > 0
            else "the user's training items")


def graph_text(cfg: ExperimentConfig) -> str:
    task = _task(cfg)
    if task in ("classification", "next_item"):
        return "training samples only (the task's own split)"
    return "training pairs only (validation and test pairs never enter training)"


def selection_text(cfg: ExperimentConfig) -> str:
    """What the reported weights were chosen on."""
    task = _task(cfg)
    has_valid = task in ("classification", "next_item") or cfg.dataset.valid_ratio > 0
    if not has_valid:
        return "final epoch (fixed schedule, no validation split)"
    monitor = f"valid {cfg.train.monitor}" if cfg.train.monitor else "the validation split"
    model = cfg.model
    if getattr(model, "name", "") == "gl_attention":
        select = getattr(model, "attention_select", None)
        patience = getattr(model, "stage_patience", None)
        return (f"validation (per-stage early stopping, patience {patience}; "
                f"attention_select={select})")
    return f"validation (the best evaluation on {monitor})"


def describe(cfg: ExperimentConfig, metric: str) -> dict[str, str]:
    """The card's fields (but seeds) for one resolved config."""
    return {"split": split_text(cfg), "validation": validation_text(cfg),
            "ranking": ranking_text(cfg, metric),
            "masked items": masked_text(cfg), "graph source": graph_text(cfg),
            "selection": selection_text(cfg)}


def test_selected_warnings(configs: Iterable[tuple[str, ExperimentConfig]],
                           test_keys: dict[str, list[str]]) -> list[str]:
    """⚠ lines: runs that scored test during training (train.track_test) and the study's
    files whose columns report a test-selected figure (``test_keys``: file -> labels)."""
    out = []
    tracked = sorted({label for label, cfg in configs if cfg.train.track_test})
    if tracked:
        out.append(f"⚠ selected on test: {', '.join(tracked)} set train.track_test (test is scored "
                   "at every validation point; only the test_selected_* figures use it)")
    for name, labels in test_keys.items():
        out.append(f"⚠ selected on test: {name} column(s) {', '.join(labels)} report the best "
                   "test epoch (as the paper's code does), not a validation choice")
    return out


def _merged(values: list[tuple[str, str, str]]) -> str:
    """One field over several cells ((experiment, cell, value) each): the value, or each
    distinct value with the experiments (or, where an experiment's cells differ, the cells)
    that have it."""
    distinct = list(dict.fromkeys(v for _, _, v in values))
    if len(distinct) == 1:
        return distinct[0]
    parts = []
    for value in distinct:
        labels: list[str] = []
        for base in dict.fromkeys(b for b, _, _ in values):
            mine = [(cell, v) for b, cell, v in values if b == base]
            if all(v == value for _, v in mine):
                labels.append(base)
            else:
                labels += [cell for cell, v in mine if v == value]
        shown = ", ".join(labels[:4]) + (f", … {len(labels) - 4} more" if len(labels) > 4 else "")
        parts.append(f"{value} [{shown}]")
    return " · ".join(parts)


def _seeds_text(configs: list[tuple[str, str, ExperimentConfig]],
                seeds: Sequence[int] | Mapping[str, Sequence[int]]) -> str:
    """The planned seeds: one list for every cell, or (a mapping by cell label, for a study
    whose variants name their own seeds: pilots at one seed, headline rows at three) each
    distinct list with the cells that have it."""
    def listed(values: Sequence[int]) -> str:
        return ", ".join(str(s) for s in values) or "—"

    if not isinstance(seeds, Mapping):
        return listed(seeds)
    return _merged([(b, label, listed(seeds.get(label, []))) for b, label, _ in configs]) \
        if configs else "—"


def card(configs: list[tuple[str, str, ExperimentConfig]], metric: str,
         seeds: Sequence[int] | Mapping[str, Sequence[int]], split: str = "test",
         test_keys: dict[str, list[str]] | None = None) -> list[str]:
    """Markdown lines of the card for the cells ``configs`` ((experiment, cell label, resolved
    config) each); ``seeds``: the planned seeds of every cell, or of each by cell label."""
    rows = [(base, label, describe(cfg, metric)) for base, label, cfg in configs]
    lines = ["**Protocol** (derived from the resolved configs of the cells):", ""]
    for name in FIELDS[:-1]:
        text = _merged([(b, label, d[name]) for b, label, d in rows]) if rows else "—"
        if name == "selection" and split == "valid":
            text += "; **this table reports validation figures**"
        lines.append(f"- {name}: {text}")
    lines.append(f"- seeds: {_seeds_text(configs, seeds)} planned (a row's seeds "
                 "column counts its finished runs; the split seed is part of the split)")
    labelled = [(label, cfg) for _, label, cfg in configs]
    lines += [f"- {w}" for w in test_selected_warnings(labelled, test_keys or {})]
    return lines + [""]
