"""Loss functions (pure): each maps scores or embeddings to a scalar tensor."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mse(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor | None = None,
               reduction: str = "mean") -> torch.Tensor:
    err = (pred - true) ** 2
    if mask is not None:
        err = err * mask
        return err.sum() / mask.sum().clamp(min=1) if reduction == "mean" else err.sum()
    return err.mean() if reduction == "mean" else err.sum()


def bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """−ln σ(s⁺ − s⁻), averaged; ``neg`` may carry several negatives per positive (B, k)."""
    if neg.dim() == 2:
        pos = pos[:, None]
    return F.softplus(neg - pos).mean()


def nce(pos: torch.Tensor, neg: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Sampled softmax: the positive against k sampled negatives, cross-entropy on index 0."""
    logits = torch.cat([pos[:, None], neg if neg.dim() == 2 else neg[:, None]], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))


def triplet_distance(anchor: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                     margin: float = 0.5, squared: bool = False) -> torch.Tensor:
    """max(0, d(a, p) − d(a, n) + margin) with vector (optionally squared) Euclidean distances."""
    dp = (anchor - pos).pow(2).sum(-1)
    dn = (anchor - neg).pow(2).sum(-1)
    if not squared:
        dp, dn = dp.clamp(min=1e-12).sqrt(), dn.clamp(min=1e-12).sqrt()
    return F.relu(dp - dn + margin).mean()


def l2_sum(*tensors: torch.Tensor) -> torch.Tensor:
    return sum(t.pow(2).sum() for t in tensors) / 2
