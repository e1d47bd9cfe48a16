"""Next-item ranking metrics: one target per sample, full ranking and sampled candidates.

Ranks are **pessimistic on ties**: an item scoring exactly the target's score counts as ranked
above it, so a count-based floor with many equal scores is never flattered by tie order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from recbench.eval.metrics import NEXT_ITEM, NEXT_ITEM_SAMPLED, compute


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among that row's scores (masked items at -inf)."""
    s_t = scores.gather(1, targets[:, None])
    return (scores >= s_t).sum(1) - 1


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor,
                  negatives: torch.Tensor) -> torch.Tensor:
    """0-based rank of the target among itself and its sampled negatives."""
    s_t = scores.gather(1, targets[:, None])
    return (scores.gather(1, negatives) >= s_t).sum(1)


def metrics_from_ranks(full: torch.Tensor, sampled: torch.Tensor | None, ks: list[int],
                       names: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Per-sample vectors of the selected metrics (``names``; empty: all), from the registry:
    accuracy@1 (= HR@1), HR@k and NDCG@k for every k and MRR on the full ranking;
    ``sampled_hr@k`` / ``sampled_ndcg@k`` against the sampled negatives."""
    calls = {NEXT_ITEM: lambda fn, k: fn(full, k)}
    if sampled is not None:
        calls[NEXT_ITEM_SAMPLED] = lambda fn, k: fn(sampled, k)
    return compute(calls, names, ks)
