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


# ---- the registry: one NDCG, the defaults, eval.metrics selecting (issue 35) ---------------

def test_ndcg_discount_is_bitwise_the_formulas_it_replaced():
    """The three NDCGs (top-N lists, next-item ranks, 1+99 sampled ranks) now read one
    discount; each must give the floats its old formula gave, bit for bit."""
    g = torch.Generator().manual_seed(0)
    hits = torch.rand(200, 50, generator=g) < 0.2
    rel = torch.randint(0, 60, (200,), generator=g)
    discounts = 1.0 / torch.log2(torch.arange(2, 52, dtype=torch.float32))  # the old list form
    dcg = (hits.float() * discounts).sum(1)
    idcg = torch.cat([torch.zeros(1), torch.cumsum(discounts, 0)])[rel.clamp(max=50, min=0)]
    old = torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))
    assert torch.equal(metrics.ndcg(hits, rel), old)
    rank = torch.randint(0, 3000, (5000,), generator=g)  # 0-based, next-item
    for k in (1, 10, 2999):
        old_next = torch.where(rank < k, 1.0 / torch.log2(rank.float() + 2), 0.0)
        assert torch.equal(metrics.ndcg_at(rank, k), old_next)
        one_based = (1 + rank).float()  # the old sampled evaluator's rank
        old_sampled = torch.where(one_based <= k, 1.0 / torch.log2(one_based + 1),
                                  torch.zeros_like(one_based))
        assert torch.equal(metrics.ndcg_at(rank, k), old_sampled)


def test_empty_selection_is_each_evaluators_former_set_in_its_former_order():
    hits = torch.tensor([[True, False, True]])
    assert list(metrics.ranking_metrics(hits, torch.tensor([2]), [1, 3])) == [
        f"{m}@{k}" for k in (1, 3) for m in ("recall", "precision", "hr", "arhr", "ndcg")]
    from recbench.eval.next_item import metrics_from_ranks

    r = torch.tensor([0, 4])
    assert list(metrics_from_ranks(r, r, [10, 1])) == [
        "accuracy@1", "hr@10", "ndcg@10", "sampled_hr@10", "sampled_ndcg@10",
        "hr@1", "ndcg@1", "sampled_hr@1", "sampled_ndcg@1", "mrr"]
    assert list(metrics_from_ranks(r, None, [10])) == ["accuracy@1", "hr@10", "ndcg@10", "mrr"]


def test_a_selection_computes_only_those_metrics_with_the_same_values():
    hits = torch.tensor([[True, False, True, False], [False, True, False, False]])
    rel = torch.tensor([3, 1])
    every = metrics.ranking_metrics(hits, rel, [2, 4])
    some = metrics.ranking_metrics(hits, rel, [2, 4], ["ndcg", "recall"])
    assert list(some) == ["recall@2", "ndcg@2", "recall@4", "ndcg@4"]
    assert all(torch.equal(v, every[k]) for k, v in some.items())


def test_adding_a_metric_is_one_function_and_one_registry_line(monkeypatch):
    def hits_count(hits, _num_relevant):
        return hits.sum(1).float()

    monkeypatch.setitem(metrics.METRICS, "hits", metrics.Metric({metrics.TOP_N: hits_count}))
    out = metrics.ranking_metrics(torch.tensor([[True, True, False]]), torch.tensor([2]), [3])
    assert out["hits@3"].tolist() == [2.0]
    assert "hits" in metrics.known_metrics("ranking")
    assert metrics.unknown_metric(["hits"], "ranking") is None


def test_unknown_metric_names_the_known_ones():
    msg = metrics.unknown_metric(["ndcg", "rmse"], "ranking")
    assert msg == ("eval.metrics: unknown metric 'rmse' for a ranking model; known: recall, "
                   "precision, hr, arhr, ndcg (the cutoffs come from eval.k)")
    assert metrics.unknown_metric(["rmse", "mae"], "rating") is None
    assert metrics.unknown_metric(["accuracy@1", "mrr", "sampled_ndcg"], "next_item") is None
    assert "known: accuracy" in metrics.unknown_metric(["ndcg"], "classification")


def test_monitor_left_out_of_the_selection_is_refused():
    assert metrics.monitor_unselected([], "recall@20") is None
    assert metrics.monitor_unselected(["recall"], "recall@20") is None
    assert metrics.monitor_unselected(["accuracy@1"], "accuracy@1") is None
    assert metrics.monitor_unselected(["ndcg"], "loss_total") is None  # a trainer's own key
    msg = metrics.monitor_unselected(["ndcg"], "recall@20")
    assert msg and "'recall@20'" in msg and "add recall" in msg


def test_eval_metrics_selects_what_a_run_writes(tmp_path, tiny_paths, one_thread):
    import json

    from recbench.config import expand_seeds
    from recbench.experiment import load_experiment
    from recbench.runner import train_run
    from tests.conftest import write_experiment

    def run(name, **sections):
        cfg = expand_seeds(load_experiment(write_experiment(tmp_path, name, **sections)))[0]
        run_dir = train_run(cfg, tiny_paths, tmp_path / "runs")
        return json.loads((run_dir / "metrics.json").read_text())["test"]

    every = run("all")
    assert set(every) == {f"{m}@5" for m in ("recall", "precision", "hr", "arhr", "ndcg")}
    some = run("some", eval={"metrics": ["ndcg", "recall"]})
    assert some == {k: every[k] for k in ("ndcg@5", "recall@5")}
    rated = run("mf", model={"name": "biased_mf", "emb_dim": 4}, eval={"metrics": ["mae"]},
                train={"monitor": "mae"})
    assert set(rated) == {"mae"}


def test_eval_metrics_refused_at_load_and_build(tmp_path, tiny_paths):
    from recbench.config import expand_seeds
    from recbench.errors import ConfigError
    from recbench.experiment import load_experiment
    from recbench.runner import build
    from tests.conftest import write_experiment

    with pytest.raises(ConfigError, match=r"unknown metric 'ndcg@5' for a ranking model; "
                                          r"known: recall, precision, hr, arhr, ndcg") as err:
        load_experiment(write_experiment(tmp_path, "bad", eval={"metrics": ["ndcg@5"]}))
    assert "\n" not in str(err.value)
    cfg = expand_seeds(load_experiment(write_experiment(tmp_path, "nomon",
                                                        eval={"metrics": ["ndcg"]})))[0]
    with pytest.raises(ConfigError, match=r"monitor 'recall@5' is not computed"):
        build(cfg, tiny_paths)
