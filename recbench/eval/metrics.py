"""Pure metric functions on tensors. Each returns a per-unit vector; callers take the mean.

Ranking metrics take ``hits``: a (users, N) bool matrix, ``hits[u, r]`` true when the item at
rank r+1 of user u's top-N is relevant, and ``num_relevant`` (users,). Semantics follow the
global/local attention paper's own evaluator (spec §5): precision divides by N, HR is ≥ 1 hit,
ARHR is the *sum* of reciprocal hit ranks (it can exceed 1).
"""

from __future__ import annotations

import torch


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


def ndcg(hits: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    """Binary-relevance NDCG@N; the ideal list puts min(num_relevant, N) hits first."""
    n = hits.shape[1]
    discounts = 1.0 / torch.log2(torch.arange(2, n + 2, dtype=torch.float32))
    dcg = (hits.float() * discounts).sum(1)
    ideal_len = num_relevant.clamp(max=n, min=0)
    cum = torch.cat([torch.zeros(1), torch.cumsum(discounts, 0)])
    idcg = cum[ideal_len]
    return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))


def ranking_metrics(hits: torch.Tensor, num_relevant: torch.Tensor,
                    ks: list[int]) -> dict[str, torch.Tensor]:
    """All ranking metrics at every k in ``ks`` (each ≤ hits.shape[1]), per user."""
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        h = hits[:, :k]
        out[f"recall@{k}"] = recall(h, num_relevant)
        out[f"precision@{k}"] = precision(h)
        out[f"hr@{k}"] = hit_rate(h)
        out[f"arhr@{k}"] = arhr(h)
        out[f"ndcg@{k}"] = ndcg(h, num_relevant)
    return out


def accuracy_at_k(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Per sample: 1 if any of the top-k classes is a target. ``targets``: (B, C) multi-hot."""
    top = logits.topk(k, dim=1).indices
    return targets.gather(1, top).gt(0).any(1).float()
