"""Metric functions against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from recbench.eval import metrics


def test_rmse_mae_by_hand():
    pred = torch.tensor([3.0, 4.0, 1.0])
    true = torch.tensor([4.0, 4.0, 3.0])
    # errors 1, 0, 2 → mse 5/3
    assert metrics.rmse(pred, true) == pytest.approx(math.sqrt(5 / 3))
    assert metrics.mae(pred, true) == pytest.approx(1.0)


def test_ranking_metrics_by_hand():
    # user 0: hits at ranks 1 and 3 of top-4, 3 relevant; user 1: no hit, 2 relevant
    hits = torch.tensor([[True, False, True, False], [False, False, False, False]])
    rel = torch.tensor([3, 2])
    m = metrics.ranking_metrics(hits, rel, [4])
    assert m["recall@4"].tolist() == pytest.approx([2 / 3, 0.0])
    assert m["precision@4"].tolist() == pytest.approx([0.5, 0.0])
    assert m["hr@4"].tolist() == [1.0, 0.0]
    assert m["arhr@4"].tolist() == pytest.approx([1 + 1 / 3, 0.0])
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@4"][0].item() == pytest.approx(dcg / idcg)


def test_ndcg_ideal_is_capped_at_n():
    hits = torch.tensor([[True, True]])
    assert metrics.ndcg(hits, torch.tensor([5])).item() == pytest.approx(1.0)


def test_arhr_can_exceed_one():
    hits = torch.ones(1, 3, dtype=torch.bool)
    assert metrics.arhr(hits).item() == pytest.approx(1 + 1 / 2 + 1 / 3)


def test_accuracy_at_k():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3]])
    targets = torch.tensor([[0, 1, 0], [0, 0, 1]])
    assert metrics.accuracy_at_k(logits, targets, 1).tolist() == [1.0, 0.0]
    assert metrics.accuracy_at_k(logits, targets, 2).tolist() == [1.0, 1.0]
