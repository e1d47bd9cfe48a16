"""Next-item ranking metrics: one target per sample, full ranking and sampled candidates.

Ranks are **pessimistic on ties**: an item scoring exactly the target's score counts as ranked
above it, so a count-based floor with many equal scores is never flattered by tie order.
"""

from __future__ import annotations

import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among that row's scores (masked items at -inf)."""
    s_t = scores.gather(1, targets[:, None])
    return (scores >= s_t).sum(1) - 1


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor,
                  negatives: torch.Tensor) -> torch.Tensor:
    """0-based rank of the target among itself and its sampled negatives."""
    s_t = scores.gather(1, targets[:, None])
    return (scores.gather(1, negatives) >= s_t).sum(1)


def metrics_from_ranks(full: torch.Tensor, sampled: torch.Tensor | None,
                       ks: list[int]) -> dict[str, torch.Tensor]:
    """Per-sample vectors: accuracy@1 (= HR@1), HR@k and NDCG@k for every k, full ranking;
    ``sampled_hr@k`` / ``sampled_ndcg@k`` against the sampled negatives."""
    out = {"accuracy@1": (full < 1).float()}
    for k in ks:
        out[f"hr@{k}"] = (full < k).float()
        out[f"ndcg@{k}"] = torch.where(full < k, 1.0 / torch.log2(full.float() + 2), 0.0)
        if sampled is not None:
            out[f"sampled_hr@{k}"] = (sampled < k).float()
            out[f"sampled_ndcg@{k}"] = torch.where(sampled < k,
                                                   1.0 / torch.log2(sampled.float() + 2), 0.0)
    out["mrr"] = 1.0 / (full.float() + 1)
    return out
