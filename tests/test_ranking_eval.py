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
