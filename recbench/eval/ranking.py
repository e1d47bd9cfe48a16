"""Ranking evaluators shared by every implicit-feedback model.

``score_fn(users) -> (len(users), num_items)`` is all a model provides. Full ranking masks the
items each user already has in the training (and, for test, validation) split; sampled ranking
scores the positive against the negatives stored with a leave-one-out split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from recbench.csr import by_row
from recbench.data.graph import RATES, Dataset
from recbench.eval.metrics import SAMPLED, compute, ranking_metrics
from recbench.eval.result import EvalResult

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
PairScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (U,), (U, C) -> (U, C)


def _user_items(g, masks: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    u, i = g.edges(etype=RATES)
    keep = torch.zeros(len(u), dtype=torch.bool)
    for split in masks:
        keep |= g.edges[RATES].data[split]
    return u[keep], i[keep]


def _to_csr(u: torch.Tensor, i: torch.Tensor, num_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    indptr, order = by_row(u, num_users)
    return indptr, i[order]


def masked_splits(split: str) -> list[str]:
    """Which splits' items are removed from the candidate pool when evaluating ``split``."""
    return ["train"] if split == "valid" else ["train", "valid"]


SCORE_BLOCK_BYTES = 256 << 20  # one batch's float32 score rows: the evaluator's working set


def users_per_batch(batch_size: int, num_items: int, budget: int = SCORE_BLOCK_BYTES) -> int:
    """Users scored at once: ``batch_size``, lowered so one float32 score block stays within
    ``budget`` bytes whatever the catalogue (Gowalla's 40,981 items: 1,024 users = 168 MB;
    the full 29,858 × 40,981 matrix would be 4.9 GB and is never built)."""
    return max(1, min(batch_size, budget // (4 * max(num_items, 1))))


def full_ranking(score_fn: ScoreFn, data: Dataset, split: str, ks: list[int],
                 batch_size: int = 1024, device: torch.device | None = None, *,
                 metrics: Sequence[str] = ()) -> EvalResult:
    """Top-max(ks) over all items with seen items masked; users with ≥ 1 item in ``split``;
    the ``metrics`` of :data:`recbench.eval.metrics.METRICS` selected (empty: all top-N ones).

    Memory is bounded by one batch of score rows (:func:`users_per_batch`): per batch the model
    scores its users, the batch's seen items are set to -inf in place, ``torch.topk`` keeps the
    top max(ks), and hits are looked up among the split's sorted (user, item) keys, so nothing
    of size users × items exists at any time. Each user's row is ranked alone, so the metrics do
    not depend on the batch size.
    """
    g = data.g
    n_users, n_items = data.num_users, data.num_items
    seen_ptr, seen_items = _to_csr(*_user_items(g, masked_splits(split)), n_users)
    rel_u, rel_i = _user_items(g, [split])
    num_rel = torch.bincount(rel_u, minlength=n_users)
    rel_keys = torch.sort(rel_u * n_items + rel_i).values  # (user, item) → one sorted int64 key
    users = torch.nonzero(num_rel > 0, as_tuple=True)[0]
    top_n = min(max(ks), n_items)
    step = users_per_batch(batch_size, n_items)
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(users), step):
        batch = users[start:start + step]
        with torch.no_grad():
            scores = score_fn(batch.to(device) if device is not None else batch).float().cpu()
        scores = scores.clone()  # never write into a model-owned or expanded tensor
        rows, cols = _gather_rows(seen_ptr, seen_items, batch)
        scores[rows, cols] = -torch.inf
        top = scores.topk(top_n, dim=1).indices
        del scores
        hits = _is_key(batch[:, None] * n_items + top, rel_keys)
        for name, vec in ranking_metrics(hits, num_rel[batch], ks, metrics).items():
            parts.setdefault(name, []).append(vec)
    per_user = {name: torch.cat(v).numpy() for name, v in parts.items()}
    per_user["user"] = users.numpy()
    return EvalResult({k: float(np.mean(v)) for k, v in per_user.items() if k != "user"}, per_user)


def _is_key(keys: torch.Tensor, sorted_keys: torch.Tensor) -> torch.Tensor:
    """Whether each entry of ``keys`` occurs in ``sorted_keys`` (ascending), same shape."""
    if len(sorted_keys) == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp(max=len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def _gather_rows(indptr: torch.Tensor, items: torch.Tensor,
                 batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    starts, ends = indptr[batch], indptr[batch + 1]
    lengths = ends - starts
    rows = torch.repeat_interleave(torch.arange(len(batch)), lengths)
    offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(
        torch.cumsum(lengths, 0) - lengths, lengths)
    return rows, items[torch.repeat_interleave(starts, lengths) + offsets]


def sampled_ranking(pair_score_fn: PairScoreFn, data: Dataset, split: str, ks: list[int],
                    batch_size: int = 4096, *, metrics: Sequence[str] = ()) -> EvalResult:
    """Leave-one-out: rank each user's held-out item among its stored sampled negatives.

    HR@k = 1 if the positive ranks within k; NDCG@k = 1/log2(rank+1) (NCF protocol), 1-based
    rank; the registry's ``SAMPLED`` forms, selected by ``metrics`` (empty: all). Ties count
    against the positive (its rank is 1 + number of negatives scoring ≥ it).
    """
    if data.negatives is None:
        raise ValueError("sampled ranking needs a leave-one-out split with stored negatives")
    u, i = _user_items(data.g, [split])
    order = torch.argsort(u, stable=True)
    u, i = u[order], i[order]
    ranks = []
    for start in range(0, len(u), batch_size):
        bu, bi = u[start:start + batch_size], i[start:start + batch_size]
        cands = torch.cat([bi[:, None], data.negatives[bu]], dim=1)
        with torch.no_grad():
            s = pair_score_fn(bu, cands).float().cpu()
        ranks.append((s[:, 1:] >= s[:, :1]).sum(1))  # 0-based
    rank = torch.cat(ranks)
    per_user: dict[str, np.ndarray] = {"user": u.numpy()}
    scored = compute({SAMPLED: lambda fn, k: fn(rank, k)}, metrics, ks)
    per_user.update({name: vec.numpy() for name, vec in scored.items()})
    return EvalResult({k: float(np.mean(v)) for k, v in per_user.items() if k != "user"}, per_user)
