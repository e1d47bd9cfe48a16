"""Metric functions on tensors and the one registry of metrics every evaluator consults.

Each function returns a per-unit vector (per user, per sample) that callers average, except the
rating metrics, which are whole-split numbers. Inputs by evaluator (the registry's keys):

- ``TOP_N`` (full ranking, cluster retrieval): ``hits`` (users, k) bool, ``hits[u, r]`` true
  when the item at rank r+1 of user u's top-k is relevant, and ``num_relevant`` (users,).
  Semantics follow the global/local attention paper's own evaluator (spec §5): precision
  divides by N, HR is ≥ 1 hit, ARHR is the *sum* of reciprocal hit ranks (it can exceed 1).
- ``SAMPLED`` (leave-one-out, the target among its stored negatives) and ``NEXT_ITEM``: the
  0-based rank of the one target of each sample, and the cutoff k; ``NEXT_ITEM_SAMPLED`` the
  same on the rank among a next-item sample's sampled negatives.
- ``RATING``: predicted and true ratings. ``CLASSIFICATION``: logits, multi-hot targets, k.

Adding a metric is one function here and one line in :data:`METRICS`; ``eval.metrics`` then
selects it by name (empty: every metric registered for the evaluator, the task's defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

TOP_N = "top_n"
SAMPLED = "sampled"
NEXT_ITEM = "next_item"
NEXT_ITEM_SAMPLED = "next_item_sampled"
RATING = "rating"
CLASSIFICATION = "classification"

# a model's task (recbench.models.Task) → the evaluators that may score it
TASK_EVALUATORS: dict[str, tuple[str, ...]] = {
    "ranking": (TOP_N, SAMPLED),
    "next_item": (NEXT_ITEM, NEXT_ITEM_SAMPLED),
    "rating": (RATING,),
    "classification": (CLASSIFICATION,),
}


def squared_errors(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    return (pred - true) ** 2


def rmse(pred: torch.Tensor, true: torch.Tensor) -> float:
    return float(torch.sqrt(squared_errors(pred, true).mean()))


def mae(pred: torch.Tensor, true: torch.Tensor) -> float:
    return float((pred - true).abs().mean())


def recall(hits: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    return hits.sum(1).float() / num_relevant.clamp(min=1).float()


def precision(hits: torch.Tensor) -> torch.Tensor:
    return hits.sum(1).float() / hits.shape[1]


def hit_rate(hits: torch.Tensor) -> torch.Tensor:
    return hits.any(1).float()


def arhr(hits: torch.Tensor) -> torch.Tensor:
    ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float32)
    return (hits.float() / ranks).sum(1)


def discount(rank: torch.Tensor) -> torch.Tensor:
    """DCG's gain of a relevant item at 0-based ``rank``: 1 / log2(rank + 2). The one place
    NDCG's discount is written; every NDCG (list or single target) reads it from here."""
    return 1.0 / torch.log2(rank.float() + 2)


def ndcg(hits: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    """Binary-relevance NDCG@N; the ideal list puts min(num_relevant, N) hits first."""
    n = hits.shape[1]
    discounts = discount(torch.arange(n))
    dcg = (hits.float() * discounts).sum(1)
    ideal_len = num_relevant.clamp(max=n, min=0)
    cum = torch.cat([torch.zeros(1), torch.cumsum(discounts, 0)])
    idcg = cum[ideal_len]
    return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))


def hit_at(rank: torch.Tensor, k: int) -> torch.Tensor:
    """HR@k of one target per sample: 1 when its 0-based ``rank`` is inside the top k."""
    return (rank < k).float()


def ndcg_at(rank: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@k of one target per sample: :func:`ndcg` with one relevant item, whose ideal DCG
    is 1, so it is the target's discount when it ranks inside k, else 0."""
    return torch.where(rank < k, discount(rank), 0.0)


def reciprocal_rank(rank: torch.Tensor, _k: int | None = None) -> torch.Tensor:
    return 1.0 / (rank.float() + 1)


def accuracy_at_k(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Per sample: 1 if any of the top-k classes is a target. ``targets``: (B, C) multi-hot."""
    top = logits.topk(k, dim=1).indices
    return targets.gather(1, top).gt(0).any(1).float()


@dataclass(frozen=True)
class Metric:
    """One registered metric: its function for each evaluator that computes it.

    ``at_k``: written once per cutoff of ``eval.k`` as ``name@k``; otherwise once, as ``name``.
    """

    forms: dict[str, Callable]
    at_k: bool = True


# name → Metric. The order is the order metrics are computed and written: a run of adjacent
# cutoff metrics goes cutoff by cutoff (recall@10, ndcg@10, recall@20, ndcg@20).
METRICS: dict[str, Metric] = {
    "accuracy@1": Metric({NEXT_ITEM: lambda rank, _k: hit_at(rank, 1)}, at_k=False),
    "recall": Metric({TOP_N: recall}),
    "precision": Metric({TOP_N: lambda hits, _rel: precision(hits)}),
    "hr": Metric({TOP_N: lambda hits, _rel: hit_rate(hits), SAMPLED: hit_at, NEXT_ITEM: hit_at}),
    "arhr": Metric({TOP_N: lambda hits, _rel: arhr(hits)}),
    "ndcg": Metric({TOP_N: ndcg, SAMPLED: ndcg_at, NEXT_ITEM: ndcg_at}),
    "sampled_hr": Metric({NEXT_ITEM_SAMPLED: hit_at}),
    "sampled_ndcg": Metric({NEXT_ITEM_SAMPLED: ndcg_at}),
    "mrr": Metric({NEXT_ITEM: reciprocal_rank}, at_k=False),
    "rmse": Metric({RATING: rmse}, at_k=False),
    "mae": Metric({RATING: mae}, at_k=False),
    "accuracy": Metric({CLASSIFICATION: accuracy_at_k}),
}


def known_metrics(task: str) -> list[str]:
    """The metric names a model of ``task`` can compute, in registry order."""
    evaluators = TASK_EVALUATORS.get(task, ())
    return [name for name, m in METRICS.items() if any(e in m.forms for e in evaluators)]


def unknown_metric(names: Sequence[str], task: str) -> str | None:
    """A one-line complaint about the first name of ``eval.metrics`` a ``task`` model cannot
    compute, or None when all are known."""
    known = known_metrics(task)
    for name in names:
        if name not in known:
            return (f"eval.metrics: unknown metric '{name}' for a {task} model; known: "
                    f"{', '.join(known)} (the cutoffs come from eval.k)")
    return None


def monitor_unselected(names: Sequence[str], monitor: str) -> str | None:
    """A one-line complaint when ``eval.metrics`` leaves out the metric a run validates on
    (its monitor would never be computed), else None. A monitor that is no registered metric
    (a trainer's own key) is the trainer's to produce."""
    base = monitor if monitor in METRICS else monitor.split("@")[0]
    if not names or base not in METRICS or base in names:
        return None
    return (f"the validation monitor '{monitor}' is not computed: eval.metrics lists "
            f"{', '.join(names)}; add {base} there or set train.monitor to one of them")


def compute(calls: dict[str, Callable[[Callable, int | None], torch.Tensor | float]],
            names: Sequence[str], ks: Sequence[int]) -> dict[str, torch.Tensor | float]:
    """The selected metrics (``names``; empty: every one registered for these evaluators) in
    registry order.

    ``calls`` maps each evaluator at work to ``call(fn, k)``, which applies one registered
    function to that evaluator's own inputs at cutoff k (None for a metric without a cutoff).
    """
    chosen = [(name, m, next(e for e in calls if e in m.forms)) for name, m in METRICS.items()
              if any(e in m.forms for e in calls) and (not names or name in names)]
    out: dict[str, torch.Tensor | float] = {}
    start = 0
    while start < len(chosen):
        name, m, evaluator = chosen[start]
        if not m.at_k:
            out[name] = calls[evaluator](m.forms[evaluator], None)
            start += 1
            continue
        end = start
        while end < len(chosen) and chosen[end][1].at_k:
            end += 1
        for k in ks:
            for name, m, evaluator in chosen[start:end]:
                out[f"{name}@{k}"] = calls[evaluator](m.forms[evaluator], k)
        start = end
    return out


def ranking_metrics(hits: torch.Tensor, num_relevant: torch.Tensor, ks: list[int],
                    names: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """The selected top-N metrics at every k in ``ks`` (each ≤ hits.shape[1]), per user."""
    return compute({TOP_N: lambda fn, k: fn(hits[:, :k], num_relevant)}, names, ks)
