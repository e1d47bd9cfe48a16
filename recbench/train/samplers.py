"""Negative samplers. Each takes an explicit ``torch.Generator``; none touches global RNG."""

from __future__ import annotations

import torch


class SeenIndex:
    """Sorted (user * num_items + item) keys of observed pairs, for O(log n) membership tests."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, num_items: int):
        self.num_items = num_items
        self.keys = torch.sort(users.long() * num_items + items.long()).values

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        q = users.long() * self.num_items + items.long()
        pos = torch.searchsorted(self.keys, q).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == q


def uniform_negatives(users: torch.Tensor, seen: SeenIndex, gen: torch.Generator,
                      num: int = 1, max_rounds: int = 20) -> torch.Tensor:
    """Items drawn uniformly among those each user has not interacted with: (B,) or (B, num)."""
    shape = (len(users), num)
    u = users[:, None].expand(shape)
    neg = torch.randint(seen.num_items, shape, generator=gen)
    for _ in range(max_rounds):
        bad = seen.contains(u, neg)
        if not bad.any():
            break
        neg[bad] = torch.randint(seen.num_items, (int(bad.sum()),), generator=gen)
    return neg[:, 0] if num == 1 else neg


def popularity_negatives(users: torch.Tensor, seen: SeenIndex, popularity: torch.Tensor,
                         gen: torch.Generator, num: int = 1, power: float = 1.0,
                         max_rounds: int = 20) -> torch.Tensor:
    """Items drawn ∝ popularity^power among those the user has not interacted with."""
    probs = popularity.float().clamp(min=1e-6).pow(power)
    shape = (len(users), num)
    u = users[:, None].expand(shape)
    neg = torch.multinomial(probs, len(users) * num, replacement=True, generator=gen).view(shape)
    for _ in range(max_rounds):
        bad = seen.contains(u, neg)
        if not bad.any():
            break
        neg[bad] = torch.multinomial(probs, int(bad.sum()), replacement=True, generator=gen)
    return neg[:, 0] if num == 1 else neg


def hard_negatives(users: torch.Tensor, seen: SeenIndex, score_pairs, gen: torch.Generator,
                   pool: int = 16, num: int = 1) -> torch.Tensor:
    """The highest-scoring non-interacted items among ``pool`` uniform candidates per user.

    ``score_pairs(users (B,), items (B, pool)) -> (B, pool)`` is evaluated without gradients.
    """
    cands = uniform_negatives(users, seen, gen, num=pool)
    with torch.no_grad():
        scores = score_pairs(users, cands)
    top = scores.topk(num, dim=1).indices
    picked = cands.gather(1, top)
    return picked[:, 0] if num == 1 else picked
