"""Next-item GConv-Transform task: samples, split, windows, item graph, metrics, models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbench.config import EvalConfig, TrainConfig
from recbench.data import next_item_task as nt
from recbench.data.graph import Dataset, build_graph
from recbench.eval.next_item import metrics_from_ranks, sampled_ranks, target_ranks
from recbench.models import gconv_transform as gm
from recbench.models import seq_baselines as sb
from recbench.train.api import RunContext


def successor_graph(num_users: int = 40, num_items: int = 30, length: int = 12, seed: int = 0):
    """Each user walks the items in a cycle from a random start: next = previous + 1 (mod n)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        start = int(rng.integers(num_items))
        for t in range(min(length, num_items)):
            rows.append((u, (start + t) % num_items, 4.0, 100 * t))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return build_graph(frame, np.zeros(len(frame), np.int8), num_users, num_items)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


SMALL = nt.NextItemConfig(max_len=6, num_sampled_negatives=5)


def ctx_for(g, epochs: int = 3, batch_size: int = 16, lr: float = 1e-2) -> RunContext:
    return RunContext(Dataset(g, {"protocol": {"split_seed": 0}}),
                      TrainConfig(batch_size=batch_size, epochs=epochs, lr=lr),
                      EvalConfig(k=[10, 1]), torch.device("cpu"), seed=0)


def test_equal_timestamps_broken_by_seeded_random_key_not_item_id():
    # one user, eight items all at the same time: the order must not be the id order
    frame = pd.DataFrame({"user": [0] * 8, "item": list(range(8)), "rating": [3.0] * 8,
                          "timestamp": [7] * 8})
    g = build_graph(frame, np.zeros(8, np.int8), 1, 8)
    cfg = nt.NextItemConfig(min_history=2)
    orders = {tuple(nt.build_sequences(g, cfg, seed).items) for seed in range(4)}
    assert len(orders) > 1  # the key is seeded, so not the id order every time
    again = nt.build_sequences(g, cfg, 0).items
    np.testing.assert_array_equal(again, nt.build_sequences(g, cfg, 0).items)


def test_samples_histories_and_random_split():
    g = successor_graph()
    cfg = nt.NextItemConfig(min_history=5, max_len=4)
    s = nt.build_sequences(g, cfg, 0)
    assert len(s.sample_seq) == 40 * (12 - 5)
    counts = {k: len(s.index(k)) for k in nt.SPLIT_CODES}
    assert counts["test"] == 28 and counts["valid"] == round(0.2 * (280 - 28))
    # histories: the 4 items before the target, the last one = target - 1 (cyclic walk)
    idx = np.arange(len(s.sample_seq))
    h = s.histories(idx, 4)
    tgt = s.targets
    assert ((h[:, -1] % 30) + 1 == tgt).all()
    assert (h > 0).all()  # t >= 5 > L: no padding here
    short = s.histories(idx, 8)
    assert (short[s.sample_pos == 5, :3] == 0).all() and (short[s.sample_pos == 5, 3:] > 0).all()


def test_leave_last_out_split():
    s = nt.build_sequences(successor_graph(), nt.NextItemConfig(split="leave_last_out"), 0)
    for k, pos in (("test", 11), ("valid", 10)):
        sel = s.index(k)
        assert len(sel) == 40 and (s.sample_pos[sel] == pos).all()
    assert (s.sample_pos[s.index("train")] < 10).all()


def test_windows_cover_each_training_target_once_with_history():
    s = nt.build_sequences(successor_graph(length=12, num_items=30), nt.NextItemConfig(), 0)
    w = nt.training_windows(s, max_len=6)
    train = s.index("train")
    assert int((w.targets > 0).sum()) == len(train)
    # every labelled position: its input is the item before the target (cyclic successor)
    rows, cols = torch.nonzero(w.targets > 0, as_tuple=True)
    assert ((w.inputs[rows, cols] % 30) + 1 == w.targets[rows, cols]).all()
    # at least L - L//2 = 3 items of history inside the window (or the whole prefix)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        assert int((w.inputs[r, : c + 1] > 0).sum()) >= 3


def test_item_graph_sees_no_validation_or_test_target():
    # user 0's only rating of item 9 is its (held-out) last item under leave-last-out
    rows = [(u, i, 4.0, 10 * i) for u in range(6) for i in range(8)]
    rows += [(0, 9, 4.0, 1000), (0, 8, 4.0, 999)]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    g = build_graph(frame, np.zeros(len(frame), np.int8), 6, 10)
    s = nt.build_sequences(g, nt.NextItemConfig(split="leave_last_out"), 0)
    sim = nt.item_cosine_graph(s, 5)
    assert sim[10].abs().sum() == 0 and sim[:, 10].abs().sum() == 0  # item 9 (shifted id 10)
    assert sim[9].abs().sum() == 0  # item 8: the validation target
    assert nt.visible_popularity(s)[10] == 0


def test_ranks_are_pessimistic_on_ties_and_metrics():
    scores = torch.tensor([[0.0, 1.0, 1.0, 0.5], [0.0, 3.0, 2.0, 1.0]])
    targets = torch.tensor([1, 3])
    full = target_ranks(scores, targets)
    assert full.tolist() == [1, 2]  # item 2 ties with the target: counted above it
    neg = torch.tensor([[3], [2]])
    assert sampled_ranks(scores, targets, neg).tolist() == [0, 1]
    m = metrics_from_ranks(full, sampled_ranks(scores, targets, neg), [1, 2])
    assert m["accuracy@1"].tolist() == [0.0, 0.0] and m["hr@2"].tolist() == [1.0, 0.0]
    assert m["sampled_hr@1"].tolist() == [1.0, 0.0]


def test_gconv_transform_is_causal():
    cfg = gm.GConvTransformConfig(name="gconv_transform", hidden=8, num_heads=2,
                                  next_item=SMALL)
    sim = torch.rand(11, 11)
    model = gm.GConvTransform(cfg, 10, (sim + sim.T) / 2).eval()
    x = torch.tensor([[0, 3, 4, 5, 6, 7]])
    y = x.clone()
    y[0, 5] = 9  # change only the last item
    a, b = model.states(x), model.states(y)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5], b[:, 5])


def test_chebyshev_terms_by_hand():
    conv = gm.SeqChebConv(1, 1, 3)
    with torch.no_grad():
        conv.linear.weight.copy_(torch.tensor([[1.0, 10.0, 100.0]]))
        conv.linear.bias.zero_()
    p = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
    x = torch.tensor([[[1.0], [3.0]]])
    t1 = -p @ x
    t2 = 2 * (-p) @ t1 - x
    torch.testing.assert_close(conv(x, p), x + 10 * t1 + 100 * t2)


MODELS = {
    "gconv": lambda: gm.GConvTransformConfig(name="gconv_transform", hidden=16,
                                             next_item=SMALL),
    "graph": lambda: gm.GConvTransformConfig(name="gconv_transform", hidden=16, attention=False,
                                             next_item=SMALL),
    "sasrec": lambda: gm.GConvTransformConfig(name="gconv_transform", hidden=16, graph=False,
                                              chebyshev=False, feedforward=True,
                                              next_item=SMALL),
    **{k: (lambda k=k: sb.SeqBaselineConfig(name="seq_baseline", kind=k, hidden=16, channels=8,
                                            growth=4, next_item=SMALL))
       for k in ("svm", "dnn", "cnn", "densenet", "densecnn")},
}


def _trainer(name: str, ctx: RunContext):
    cfg = MODELS[name]()
    make = gm.make_gconv_transform_trainer if cfg.name == "gconv_transform" else \
        sb.make_seq_baseline_trainer
    return make(cfg, ctx)


@pytest.mark.parametrize("name", ["gconv", "graph", "sasrec", "cnn"])
def test_sequence_models_learn_a_successor_rule(name):
    """next = previous + 1: a model that reads the order must find it from the last item and
    beat the popularity floor by far."""
    ctx = ctx_for(successor_graph(num_users=40), lr=2e-2, batch_size=16)
    tr = _trainer(name, ctx)
    floor = sb.make_seq_baseline_trainer(
        sb.SeqBaselineConfig(name="seq_baseline", kind="popularity", next_item=SMALL), ctx)
    base = floor.evaluate("test").metrics["hr@1"]
    for epoch in range(15):
        tr.train_epoch(epoch)
    got = tr.evaluate("test").metrics
    assert got["hr@1"] > base + 0.3, (name, got["hr@1"], base)


@pytest.mark.parametrize("heights, length", [([1, 2, 3, 4, 5], 5), ([2, 3], 4)])
def test_caser_matmul_path_computes_the_conv2d_filters(heights, length):
    """Issue 33: `cnn_path: matmul` is Caser's Conv2d filters as matrix products (10× faster a
    step at 1 thread): same parameters, same scores and gradients to float rounding, padded
    histories included; the default stays conv2d and out of the run hash."""
    from recbench.config import run_hash

    def cfg(path):
        return sb.SeqBaselineConfig(name="seq_baseline", kind="cnn", hidden=8, horizontal=heights,
                                    num_horizontal=3, num_vertical=2, cnn_path=path,
                                    next_item=nt.NextItemConfig(max_len=length))
    torch.manual_seed(0)
    conv, fast = sb.Caser(cfg("conv2d"), 20), sb.Caser(cfg("matmul"), 20)
    fast.load_state_dict(conv.state_dict())
    conv.eval(), fast.eval()
    hist = torch.randint(0, 21, (7, length), generator=torch.Generator().manual_seed(1))
    hist[0, :2] = 0  # left padding
    a, b = conv.score_last(hist), fast.score_last(hist)
    assert torch.allclose(a, b, atol=1e-6)
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), (_, q) in zip(conv.named_parameters(), fast.named_parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), name
    base = {"name": "x", "dataset": {"name": "ml-100k"},
            "model": {"name": "seq_baseline", "kind": "cnn"}}
    with_default = {**base, "model": {**base["model"], "cnn_path": "conv2d"}}
    with_matmul = {**base, "model": {**base["model"], "cnn_path": "matmul"}}
    from recbench.config import ExperimentConfig
    hashes = [run_hash(ExperimentConfig.model_validate(c)) for c in (base, with_default, with_matmul)]
    assert hashes[0] == hashes[1] != hashes[2]


def test_cnn_path_is_refused_for_other_kinds():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="applies to kind cnn"):
        sb.SeqBaselineConfig(name="seq_baseline", kind="dnn", cnn_path="matmul")


def test_gconv_trains_on_samples_too():
    cfg = gm.GConvTransformConfig(name="gconv_transform", hidden=8, training="samples",
                                  next_item=SMALL)
    tr = gm.make_gconv_transform_trainer(cfg, ctx_for(successor_graph(num_users=10)))
    assert tr.windows is None and tr.mode == "samples"
    losses = [tr.train_epoch(e)["loss"] for e in range(3)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", ["svm", "dnn", "densenet", "densecnn"])
def test_order_free_baselines_train_and_report_every_metric(name):
    ctx = ctx_for(successor_graph(num_users=20), lr=1e-2, batch_size=16)
    tr = _trainer(name, ctx)
    before = tr.evaluate("valid").metrics
    losses = [tr.train_epoch(e)["loss"] for e in range(3)]
    assert losses[-1] < losses[0]
    got = tr.evaluate("test").metrics
    assert set(got) >= {"accuracy@1", "hr@10", "ndcg@10", "sampled_hr@10", "mrr"}
    assert set(before) == set(tr.evaluate("valid").metrics)
    assert tr.extra_metrics()["params_m"] > 0


def test_markov_floor_counts_visible_transitions_only():
    ctx = ctx_for(successor_graph())
    tr = sb.make_seq_baseline_trainer(
        sb.SeqBaselineConfig(name="seq_baseline", kind="markov",
                             next_item=SMALL), ctx)
    assert tr.evaluate("test").metrics["accuracy@1"] == 1.0  # the rule is a pure transition
    assert tr.num_epochs == 1 and tr.train_epoch(0) == {}


def test_experiment_and_study_files_validate(tmp_path):
    from recbench import studies
    from recbench.experiment import load_experiment

    root = Path(__file__).resolve().parents[1]
    for name in ("gconv_transform", "gconv_baseline"):
        cfg = load_experiment(root / "experiments" / f"{name}.yaml")
        assert cfg.train.batch_size == 96 and cfg.model.next_item.max_len == 30
    for name in ("gconv-table1", "gconv-components", "gconv-n-layers"):
        planned = studies.plan(studies.load_study(root / "experiments" / "studies", name),
                               tmp_path)
        assert len({p.seed for p in planned}) == 3


@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("RECBENCH_MIRROR"), reason="RECBENCH_MIRROR unset")
def test_real_ml100k_two_epochs_beat_popularity(tmp_path):
    from recbench.config import DatasetConfig
    from recbench.data.datasets import get_dataset
    from recbench.data.fetch import fetch
    from recbench.data.prepare import DataPaths, load

    torch.set_num_threads(1)
    paths = DataPaths(Path(os.environ.get("RECBENCH_DATA", tmp_path)))
    fetch(get_dataset("ml-100k"), paths.raw, Path(os.environ["RECBENCH_MIRROR"]))
    ds = load(DatasetConfig(name="ml-100k"), paths)
    ctx = RunContext(ds, TrainConfig(batch_size=96, epochs=1, lr=1e-3), EvalConfig(k=[10, 1]),
                     torch.device("cpu"), seed=0)
    cfg = gm.GConvTransformConfig(name="gconv_transform", num_blocks=1)
    tr = gm.make_gconv_transform_trainer(cfg, ctx)
    assert tr.data.seqs.num_items == 1682 and len(tr.data.seqs.sample_seq) == 95285
    pop = sb.make_seq_baseline_trainer(sb.SeqBaselineConfig(name="seq_baseline",
                                                            kind="popularity"), ctx)
    base = pop.evaluate("test").metrics["hr@10"]
    for e in range(2):
        tr.train_epoch(e)
    assert tr.evaluate("test").metrics["hr@10"] > base + 0.03


def test_monitored_validation_subset_leaves_the_split_alone():
    from recbench.train.next_item import build_data

    ctx = ctx_for(successor_graph())
    full = build_data(ctx, nt.NextItemConfig(valid_monitor=0, num_sampled_negatives=5))
    some = build_data(ctx, nt.NextItemConfig(valid_monitor=10, num_sampled_negatives=5))
    np.testing.assert_array_equal(full.index["train"], some.index["train"])
    assert len(some.index["valid"]) == 10 and set(some.index["valid"]) <= set(full.index["valid"])
    assert some.split_sizes == full.split_sizes
    assert len(some.negatives["valid"]) == 10


@pytest.mark.parametrize("cheb,enc,dec", [(True, gm.SeqChebConv, gm.SeqChebConv),
                                          (False, torch.nn.Linear, torch.nn.Linear),
                                          ("in", gm.SeqChebConv, torch.nn.Linear),
                                          ("out", torch.nn.Linear, gm.SeqChebConv)])
def test_chebyshev_switch_places_the_layers(cheb, enc, dec):
    cfg = gm.GConvTransformConfig(name="gconv_transform", hidden=8, chebyshev=cheb, next_item=SMALL)
    model = gm.GConvTransform(cfg, 10, None)
    assert type(model.encode) is enc and type(model.decode) is dec
    assert model.score_last(torch.tensor([[0, 0, 1, 2, 3, 4]])).shape == (1, 11)


def test_markov_ties_at_count_one_are_broken_by_popularity():
    """300 items each followed the last item once, with 300 distinct popularities (max 5,000):
    the target's rank must be exactly the number of count-1 items more popular than it. In
    float32 the 1e-6 tie-break collapsed to a handful of values and most ranks were tied."""
    from recbench.train.next_item import eval_scores

    n = 400
    pop = torch.zeros(n + 1)
    pop[1:301] = torch.arange(300) * 16.0 + 200.0  # 200 .. 4,984, all distinct
    pop[350] = 5000.0  # most popular item, never follows item 360
    table = torch.zeros(n + 1, n + 1)
    table[360, 1:301] = 1.0
    floor = sb.CountFloor("markov", pop, table)
    targets = torch.tensor([1, 50, 150, 299, 300])
    hist = torch.full((len(targets), 3), 360)
    ranks = target_ranks(eval_scores(floor.score_last(hist)), targets)
    assert ranks.tolist() == [300 - t for t in targets.tolist()]


def test_itemknn_recency_window_and_decay_on_a_tiny_sequence():
    """History (a, b) with b the latest: a is strongly like y, b weakly like x. The plain sum
    ranks y first; window 1 (only b) and a steep decay rank x first; a mild decay keeps y."""
    a, b, x, y = 1, 2, 3, 4
    table = torch.zeros(6, 6)
    table[a, y] = 0.9
    table[b, x] = 0.5
    floor = sb.CountFloor("itemknn", torch.ones(6), table)
    hist = torch.tensor([[0, a, b]])

    def top() -> int:
        s = floor.score_last(hist)[0]
        s[[0, a, b]] = -1.0
        return int(s.argmax())

    assert top() == y
    floor.window = 1
    assert top() == x
    floor.window, floor.decay = 0, 0.5  # a weighs 0.45 < 0.5
    assert top() == x
    floor.decay = 0.8  # a weighs 0.72 > 0.5
    assert top() == y
    s = floor.score_last(hist)[0]
    assert s.dtype == torch.float64 and abs(float(s[y]) - 0.72) < 1e-6


def test_itemknn_recency_is_chosen_on_validation_never_test():
    """choose_knn scores each (neighbours, window, decay) on the validation split only, keeps
    the best, and reports the choice in the run's extra metrics."""
    ctx = ctx_for(successor_graph())
    tr = sb.make_seq_baseline_trainer(
        sb.SeqBaselineConfig(name="seq_baseline", kind="itemknn", next_item=SMALL), ctx)
    assert (tr.model.window, tr.model.decay) == (0, 1.0)  # the default grid: the plain sum
    calls = []
    real = tr.evaluate

    def spy(split):
        calls.append(split)
        return real(split)

    tr.evaluate = spy
    sb.choose_knn(tr, [2, 100], [0, 1, 3], [1.0, 0.5])
    assert set(calls) == {"valid"} and len(calls) == 12
    chosen = tr.model.chosen
    seen = chosen["knn_valid_ndcg@10"]
    key = f"{chosen['knn_neighbours']}/{tr.model.window}/{tr.model.decay:g}"
    assert seen[key] == max(seen.values())
    assert tr.extra_metrics()["knn_window"] == tr.model.window
    assert tr.evaluate("valid").metrics["ndcg@10"] == seen[key]  # the kept table is the chosen one


def test_sasrec_protocol_item_filter_and_leave_one_out():
    """SASRec's ML-1M preprocessing on generated ratings: items rated fewer than 5 times are
    dropped and the rest renumbered 1..I'; every position from the second on is a sample; per
    user the last item is test, the one before validation, and the test history ends with the
    validation item (as SASRec feeds it)."""
    rows = []
    for u in range(6):
        for t, item in enumerate([(u + k) % 5 for k in range(5)]):  # items 0-4: 6 ratings each
            rows.append((u, item, 4.0, 10 * t))
        if u < 4:
            rows.append((u, 5 + u % 2, 3.0, 1))  # items 5, 6: two ratings each, dropped
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    g = build_graph(frame, np.zeros(len(frame), np.int8), 6, 7)
    cfg = nt.NextItemConfig(min_history=1, min_item_ratings=5, split="leave_last_out", max_len=8)
    s = nt.build_sequences(g, cfg, 0)
    assert s.num_items == 5 and set(s.items.tolist()) == {1, 2, 3, 4, 5}
    assert np.all(np.diff(s.starts) == 5) and len(s.sample_seq) == 6 * 4
    test, valid = s.index("test"), s.index("valid")
    assert len(test) == len(valid) == 6
    assert np.all(s.sample_pos[test] == 4) and np.all(s.sample_pos[valid] == 3)
    h = s.histories(test, 8)
    assert np.array_equal(h[:, -1], s.targets[valid]) and np.all((h > 0).sum(1) == 4)
    plain = nt.build_sequences(g, cfg.model_copy(update={"min_item_ratings": 1}), 0)
    assert plain.num_items == 7 and len(plain.items) == len(frame)
