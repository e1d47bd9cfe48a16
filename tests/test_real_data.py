"""The mirror: every dataset and protocol preprocesses with the published counts; MF end to end."""

from __future__ import annotations

import pytest

from recbench.config import DatasetConfig, expand_seeds
from recbench.data.graph import FOLLOWS, RATES, split_view
from recbench.data.prepare import load, preprocess
from recbench.experiment import validate
from recbench.runner import evaluate_run, train_run

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("name,split,train,test", [
    ("ml-100k", "u1", 80_000, 20_000),
    ("ml-100k", "ua", 90_570, 9_430),
    ("douban-monti", "default", 123_202, 13_689),
    ("yelp-madison", "published", 42_642, 8_319),
    ("yelp-pittsburgh", "published", 94_398, 16_848),
])
def test_fixed_splits_have_published_counts(real_paths, name, split, train, test):
    ds = load(DatasetConfig(name=name, protocol="fixed", split=split), real_paths)
    assert ds.meta["counts"]["train"] == train and ds.meta["counts"]["test"] == test
    g = ds.g
    assert g.num_edges(RATES) == train + test
    view = split_view(g, "train")
    assert view.num_edges(RATES) == train and view.num_nodes("user") == g.num_nodes("user")


def test_dataset_shapes(real_paths):
    expect = {"ml-100k": (943, 1682), "douban-monti": (3000, 3000),
              "yelp-madison": (2773, 3186), "yelp-pittsburgh": (5616, 6443)}
    for name, (users, items) in expect.items():
        ds = load(DatasetConfig(name=name), real_paths)
        assert (ds.num_users, ds.num_items) == (users, items)
    ml = load(DatasetConfig(name="ml-100k"), real_paths)
    assert ml.g.nodes["item"].data["genres"].shape == (1682, 18)
    douban = load(DatasetConfig(name="douban-monti"), real_paths)
    assert FOLLOWS in douban.g.canonical_etypes and douban.g.num_edges(FOLLOWS) > 0


@pytest.mark.parametrize("protocol,extra", [
    ("random", {"test_ratio": 0.5}),
    ("random", {"test_ratio": 0.1, "valid_ratio": 0.111111}),
    ("holdout", {"holdout_k": 3}),
    ("loo", {"num_negatives": 99}),
    ("random", {"test_ratio": 0.2, "train_ratio": 0.4}),
])
def test_every_protocol_on_ml100k(real_paths, protocol, extra):
    cfg = DatasetConfig(name="ml-100k", protocol=protocol, **extra)
    ds = load(cfg, real_paths)
    c = ds.meta["counts"]
    assert sum(c.values()) == 100_000 and c["test"] > 0 and c["train"] > 0
    if protocol == "loo":
        assert c["test"] == 943 and ds.negatives.shape == (943, 99)
    if "train_ratio" in extra:
        assert c["unused"] > 0


def test_loo_on_yelp_uses_random_pick(real_paths):
    out = preprocess(DatasetConfig(name="yelp-madison", protocol="loo", loo_by_time=False),
                     real_paths)
    assert out.is_dir()


def test_rating_mf_end_to_end_and_eval(real_paths, tmp_path):
    raw = {"name": "mf-u1", "dataset": {"name": "ml-100k", "protocol": "fixed", "split": "u1",
                                        "valid_ratio": 0.1},
           "model": {"name": "biased_mf", "emb_dim": 16},
           "train": {"epochs": 3, "lr": 0.005, "batch_size": 1024, "patience": None}}
    cfg = expand_seeds(validate(raw, "test"))[0]
    run = train_run(cfg, real_paths, tmp_path / "runs")
    fresh, stored = evaluate_run(run, real_paths)
    assert stored["rmse"] < 1.1 and fresh == pytest.approx(stored, abs=1e-6)


def test_bpr_mf_end_to_end_beats_popularity(real_paths, tmp_path):
    data = {"name": "ml-100k", "protocol": "random", "test_ratio": 0.1, "valid_ratio": 0.111111}
    results = {}
    for model, epochs in (("bpr_mf", 15), ("most_popular", 1)):
        raw = {"name": model, "dataset": data, "model": {"name": model},
               "train": {"epochs": epochs, "lr": 0.005, "batch_size": 2048, "patience": None}}
        cfg = expand_seeds(validate(raw, "test"))[0]
        run = train_run(cfg, real_paths, tmp_path / "runs")
        results[model] = __import__("json").loads((run / "metrics.json").read_text())["test"]
    assert results["bpr_mf"]["recall@20"] > results["most_popular"]["recall@20"]
