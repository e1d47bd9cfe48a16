"""Full and sampled ranking evaluators on a hand-made graph."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recbench.data.graph import Dataset, build_graph
from recbench.data.protocols import TEST, TRAIN, VALID
from recbench.eval.ranking import full_ranking, sampled_ranking


def _dataset(negatives=None) -> Dataset:
    frame = pd.DataFrame({"user": [0, 0, 0, 1, 1], "item": [0, 1, 2, 0, 3],
                          "rating": [1.0] * 5, "timestamp": [0] * 5})
    codes = np.array([TRAIN, VALID, TEST, TRAIN, TEST], dtype=np.int8)
    return Dataset(build_graph(frame, codes, 2, 5), {}, negatives)


def test_full_ranking_masks_train_and_valid_items():
    # scores prefer item 0 (train) then 1 (valid) then 2, 3, 4: after masking, user 0's top-1 is
    # item 2 (a hit) and user 1's is item 1 (a miss: its test item is 3, ranked 3rd after 1, 2)
    score = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    res = full_ranking(lambda u: score.expand(len(u), -1), _dataset(), "test", [1, 3])
    assert res.per_unit["recall@1"].tolist() == [1.0, 0.0]
    assert res.per_unit["hr@3"].tolist() == [1.0, 1.0]
    assert res.metrics["arhr@3"] == pytest.approx((1.0 + 1 / 3) / 2)


def test_sampled_ranking_rank_of_positive():
    negatives = torch.tensor([[3, 4], [1, 2]])
    ds = _dataset(negatives)
    # user 0 positive item 2 scores 0.5 < negatives 3 (0.9): rank 2; user 1 item 3 beats both
    table = torch.tensor([0.0, 0.1, 0.5, 0.9, 0.2])
    res = sampled_ranking(lambda u, c: table[c], ds, "test", [1, 2])
    assert res.per_unit["hr@1"].tolist() == [0.0, 1.0]
    assert res.per_unit["hr@2"].tolist() == [1.0, 1.0]
    assert res.per_unit["ndcg@2"][0] == pytest.approx(1 / np.log2(3))


def _dense_reference(scores: torch.Tensor, seen: torch.Tensor, relevant: torch.Tensor,
                     ks: list[int]) -> dict[str, float]:
    """The whole users × items matrix at once: the obvious evaluator the batched one replaces."""
    from recbench.eval.metrics import ranking_metrics

    masked = scores.masked_fill(seen, -torch.inf)
    top = masked.topk(max(ks), dim=1).indices
    hits = relevant.gather(1, top)
    keep = relevant.any(1)
    out = ranking_metrics(hits[keep], relevant.sum(1)[keep], ks)
    return {k: float(v.mean()) for k, v in out.items()}


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batched_full_ranking_equals_dense_matrix(batch_size):
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 25
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(n_users, size=400),
                                             rng.integers(n_items, size=400))}
    users, items = map(np.array, zip(*sorted(pairs)))
    codes = rng.choice([TRAIN, VALID, TEST], size=len(users), p=[0.6, 0.1, 0.3]).astype(np.int8)
    frame = pd.DataFrame({"user": users, "item": items, "rating": 1.0, "timestamp": 0})
    data = Dataset(build_graph(frame, codes, n_users, n_items), {}, None)
    scores = torch.from_numpy(rng.normal(size=(n_users, n_items)).astype(np.float32))
    res = full_ranking(lambda u: scores[u], data, "test", [5, 10], batch_size=batch_size)
    seen = torch.zeros(n_users, n_items, dtype=torch.bool)
    relevant = torch.zeros_like(seen)
    for u, i, c in zip(users, items, codes):
        if c == TEST:
            relevant[u, i] = True
        else:
            seen[u, i] = True
    want = _dense_reference(scores, seen, relevant, [5, 10])
    assert res.metrics.keys() == want.keys()
    for key, value in want.items():
        assert res.metrics[key] == pytest.approx(value, abs=1e-6), key


def test_score_block_is_bounded_at_gowalla_size():
    from recbench.eval.ranking import SCORE_BLOCK_BYTES, users_per_batch

    step = users_per_batch(100_000, 40_981)
    assert step * 40_981 * 4 <= SCORE_BLOCK_BYTES
    assert users_per_batch(1024, 40_981) == 1024  # the default batch already fits
    assert users_per_batch(8, 10**12) == 1  # never zero users
