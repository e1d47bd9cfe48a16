"""GConv-Transform family: genre task building, ChebConv semantics, model, baselines, trainer."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbench.config import EvalConfig, TrainConfig
from recbench.data import genre_task as gt
from recbench.data.graph import Dataset, build_graph
from recbench.models import gconv_genre as gm
from recbench.models import gconv_genre_baseline as bl
from recbench.train.api import RunContext
from recbench.train.classification import ovr_hinge, soft_cross_entropy

NUM_GENRES = 4
# item → genres (4 genres): item 0 {0}, 1 {1}, 2 {0, 2}, 3 {3}, 4 {} (unknown), 5 {1, 2}
GENRES = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0],
                   [0, 1, 1, 0]], dtype=np.float32)


def tiny_graph(num_users: int = 6, length: int = 14, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        items = rng.permutation(np.tile(np.arange(len(GENRES)), 3))[:length]
        for t, i in enumerate(items):
            rows.append((u, int(i), float(rng.integers(1, 6)), 1000 + 10 * t))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    frame = frame.drop_duplicates(["user", "item"], keep="first").reset_index(drop=True)
    codes = np.zeros(len(frame), dtype=np.int8)
    return build_graph(frame, codes, num_users, len(GENRES), item_genres=GENRES)


def one_user_graph():
    """User 0 rates items 0,2,1,3,5 at times 5,1,2,3,4 → sequence by time: 2,1,3,5,0."""
    frame = pd.DataFrame({"user": [0, 0, 0, 0, 0], "item": [0, 2, 1, 3, 5],
                          "rating": [5.0, 1.0, 2.0, 3.0, 4.0], "timestamp": [5, 1, 2, 3, 4]})
    return build_graph(frame, np.zeros(5, dtype=np.int8), 1, len(GENRES), item_genres=GENRES)


def ctx_for(g, batch_size: int = 8, epochs: int = 3) -> RunContext:
    return RunContext(Dataset(g, {"protocol": {"split_seed": 0}}), TrainConfig(
        batch_size=batch_size, epochs=epochs, lr=1e-2), EvalConfig(k=[1, 3]),
        torch.device("cpu"), seed=0)


def test_features_by_hand():
    cfg = gt.GenreTaskConfig(min_history=4, short_window=2, long_window=3, normalize="none")
    s = gt.build_samples(one_user_graph(), cfg)
    assert s.x.shape == (1, NUM_GENRES, 6) and s.step.tolist() == [4]
    # history (by time) = items 2 {0,2}, 1 {1}, 3 {3}, 5 {1,2}; ratings 1, 2, 3, 4; target item 0
    x = s.x[0].numpy()
    np.testing.assert_allclose(x[:, 0], [0, 0.25, 0.25, 0.5])  # last 2: item 3, item 5
    np.testing.assert_allclose(x[:, 1], [0, 1.5 / 3, 0.5 / 3, 1 / 3])  # last 3: 1, 3, 5
    np.testing.assert_allclose(x[:, 2], [0.5 / 4, 1.5 / 4, 1 / 4, 1 / 4])  # all 4
    np.testing.assert_allclose(x[:, 3], [1.0, 3.0, 2.5, 3.0])  # mean rating per genre
    np.testing.assert_allclose(x[:, 4], [1 / 4, 1, 1, 1 / 2])  # 1/(1 + steps since last)
    np.testing.assert_allclose(x[:, 5], np.log1p([1, 2, 2, 1]))
    assert s.y[0].tolist() == [1, 0, 0, 0]


def test_unknown_targets_dropped_and_counts():
    g = tiny_graph()
    s = gt.build_samples(g, gt.GenreTaskConfig(min_history=5))
    assert (s.y.sum(1) > 0).all()
    assert (s.step >= 5).all()
    assert len(s.user) == len(s.y) == len(s.x)


def test_random_split_ratios_and_seed():
    user = np.repeat(np.arange(50), 20)
    step = np.tile(np.arange(20), 50)
    cfg = gt.GenreTaskConfig()
    codes = gt.split_samples(user, step, cfg, 0)
    assert (codes == 2).sum() == 100 and (codes == 1).sum() == 180 and (codes == 0).sum() == 720
    assert (codes == gt.split_samples(user, step, cfg, 0)).all()
    assert (codes != gt.split_samples(user, step, cfg, 1)).any()


def test_temporal_split_takes_each_users_latest():
    user = np.repeat(np.arange(3), 10)
    step = np.tile(np.arange(10), 3)[::-1].copy()  # any order
    codes = gt.split_samples(user, step, gt.GenreTaskConfig(split="temporal"), 0)
    for u in range(3):
        mine = user == u
        assert step[mine & (codes == 2)].tolist() == [9]
        assert sorted(step[mine & (codes == 1)].tolist()) == [7, 8]
        assert step[mine & (codes == 0)].max() == 6


def test_normalize_uses_training_statistics():
    x = torch.arange(24, dtype=torch.float32).reshape(4, 3, 2)
    split = np.array([0, 0, 2, 2], dtype=np.int8)
    z = gt.normalize(x, split, "channel")
    assert torch.allclose(z[:2].mean((0, 1)), torch.zeros(2), atol=1e-6)
    assert z[2:].mean() > 1  # test rows are scaled with the training mean/std, not their own


def test_cooccurrence_and_graph():
    counts = gt.cooccurrence(GENRES)
    assert counts[0, 2] == 1 and counts[1, 2] == 1 and counts[0, 1] == 0 and counts[0, 0] == 0
    g = gt.genre_dgl_graph(counts, self_loops=True)
    assert g.num_nodes() == 4 and g.num_edges() == 4 + 4  # two pairs, both ways, + self-loops
    import dgl

    assert math.isclose(gt.lambda_max(g), dgl.laplacian_lambda_max(g)[0], rel_tol=1e-5)


def dense_cheb(g, x: torch.Tensor, conv, lam: float) -> torch.Tensor:
    """Reference Chebyshev filter with explicit T_k(L̃) matrices (spec §2), DGL's weights."""
    n = g.num_nodes()
    a = torch.zeros(n, n)
    src, dst = g.edges()
    a.index_put_((dst, src), torch.ones(len(src)), accumulate=True)
    d = a.sum(1).clamp(min=1).pow(-0.5)
    lap = torch.eye(n) - d[:, None] * a * d[None, :]
    lt = 2 * lap / lam - torch.eye(n)
    ts = [torch.eye(n), lt]
    while len(ts) < conv._k:
        ts.append(2 * lt @ ts[-1] - ts[-2])
    feats = torch.cat([torch.einsum("ij,bjf->bif", t, x) for t in ts[:conv._k]], dim=-1)
    return conv.linear(feats)


def test_batched_dgl_chebconv_equals_dense_chebyshev():
    counts = gt.cooccurrence(GENRES)
    g = gt.genre_dgl_graph(counts)
    lam = gt.lambda_max(g)
    torch.manual_seed(0)
    layer = gm.NodeChebConv(gm.GenreGraph(g, lam), 6, 5, 3)
    x = torch.randn(7, 4, 6)
    assert torch.allclose(layer(x), dense_cheb(g, x, layer.conv, lam), atol=1e-5)


def test_lamgconv_starts_from_normalized_graph():
    adj = torch.as_tensor(gt.normalized_adjacency(gt.cooccurrence(GENRES)))
    layer = gm.LAMGConv(adj, 3, 3)
    torch.nn.init.eye_(layer.linear.weight)
    torch.nn.init.zeros_(layer.linear.bias)
    x = torch.randn(2, 4, 3)
    d = adj.abs().sum(1).pow(-0.5)
    assert torch.allclose(layer(x), (d[:, None] * adj * d[None, :]) @ x, atol=1e-6)
    assert layer.adj.requires_grad
    assert not gm.LAMGConv(adj, 3, 3, learn=False).adj.requires_grad


def make_model(**kw) -> gm.GConvTransform:
    counts = gt.cooccurrence(GENRES)
    g = gt.genre_dgl_graph(counts)
    adj = torch.as_tensor(gt.normalized_adjacency(counts))
    return gm.GConvTransform(g, adj, gt.lambda_max(g), 6, hidden=16, num_heads=4, **kw)


@pytest.mark.parametrize("kw", [{}, {"residual": False}, {"chebyshev": False},
                                {"attention": False}, {"graph": False},
                                {"graph": False, "chebyshev": False}])
def test_model_variants_shapes(kw):
    torch.manual_seed(0)
    model = make_model(num_blocks=2, **kw)
    out = model(torch.randn(5, 4, 6))
    assert out.shape == (5, 4) and torch.isfinite(out).all()
    has_cheb = any(isinstance(m, gm.NodeChebConv) for m in model.modules())
    assert has_cheb == kw.get("chebyshev", True)
    has_attn = any(isinstance(m, gm.NodeAttention) for m in model.modules())
    assert has_attn == kw.get("attention", True)
    assert any(isinstance(m, gm.LAMGConv) for m in model.modules()) == kw.get("graph", True)


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    mine = gm.NodeAttention(16, 4, 0.0).eval()
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(mine.qkv.weight)
        ref.in_proj_bias.copy_(mine.qkv.bias)
        ref.out_proj.weight.copy_(mine.out.weight)
        ref.out_proj.bias.copy_(mine.out.bias)
    h = torch.randn(3, 4, 16)
    assert torch.allclose(mine(h), ref(h, h, h, need_weights=False)[0], atol=1e-5)


def test_n22_runs_a_batch_of_96_with_the_default_width():
    """Table 3's largest N trains within memory (18 real nodes, default width)."""
    counts = np.ones((18, 18)) - np.eye(18)
    g = gt.genre_dgl_graph(counts)
    adj = torch.as_tensor(gt.normalized_adjacency(counts))
    torch.manual_seed(0)
    model = gm.GConvTransform(g, adj, gt.lambda_max(g), 6, num_blocks=22)
    out = model(torch.randn(96, 18, 6))
    out.sum().backward()
    assert out.shape == (96, 18)
    per_block = (64 * 192 + 192) + 2 * (64 * 64 + 64) + 18 * 18 + 4 * 64  # attn, out+LAM, Â, LNs
    io = (3 * 6 * 64 + 64) + (3 * 64 + 1)  # ChebConv in and out
    assert sum(p.numel() for p in model.parameters()) == 22 * per_block + io


def test_losses_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    expected = (math.log(2) + -math.log(0.75)) / 2  # uniform targets: -Σ p log q
    assert math.isclose(float(soft_cross_entropy(logits, y)), expected, rel_tol=1e-6)
    scores = torch.tensor([[0.5, -2.0]])
    assert math.isclose(float(ovr_hinge(scores, torch.tensor([[1.0, 0.0]]))), 0.25, rel_tol=1e-6)


@pytest.mark.parametrize("factory", [
    lambda c: gm.make_gconv_genre_trainer(
        gm.GConvGenreConfig(name="gconv_genre", hidden=16, num_blocks=2,
                                genre_task=gt.GenreTaskConfig(timing_batches=2)), c),
    *[lambda c, k=k: bl.make_gconv_genre_baseline_trainer(
        bl.GConvGenreBaselineConfig(name="gconv_genre_baseline", kind=k, hidden=32, channels=8, growth=4,
                               genre_task=gt.GenreTaskConfig(timing_batches=2)), c)
      for k in ("svm", "dnn", "cnn", "densenet", "densecnn")]])
def test_trainers_learn_and_are_deterministic(factory):
    g = tiny_graph(num_users=20, length=18)
    tr = factory(ctx_for(g))
    first = tr.train_epoch(0)["loss"]
    for e in range(1, 6):
        last = tr.train_epoch(e)["loss"]
    assert math.isfinite(first) and last < first
    res = tr.evaluate("test")
    assert set(res.metrics) == {"accuracy@1", "accuracy@3"}
    assert 0 <= res.metrics["accuracy@1"] <= res.metrics["accuracy@3"] <= 1
    assert len(res.per_unit["accuracy@1"]) == len(res.per_unit["index"]) == len(tr.splits["test"])
    extra = tr.extra_metrics()
    assert extra["inference_ms_per_batch"] > 0 and extra["params_m"] > 0
    assert 0 <= extra["majority_accuracy@1"] <= extra["majority_accuracy@3"] <= 1
    tr2 = factory(ctx_for(g))
    for e in range(6):
        tr2.train_epoch(e)
    assert tr2.evaluate("test").metrics == res.metrics
    tr3 = factory(ctx_for(g))
    tr3.model.load_state_dict(tr.model.state_dict())
    assert tr3.evaluate("test").metrics == res.metrics


def write_ml1m(folder: Path, num_users: int = 12, num_items: int = 15) -> None:
    """ML-1M-format files (``::`` separated) with the real genre vocabulary."""
    rng = np.random.default_rng(0)
    names = ["Action", "Comedy", "Drama", "Sci-Fi", "Children's", "Film-Noir"]
    with open(folder / "movies.dat", "w", encoding="latin-1") as fh:
        for m in range(num_items):
            tags = "|".join(rng.choice(names, size=rng.integers(1, 3), replace=False))
            fh.write(f"{m + 1}::Movie {m} (1999)::{tags}\n")
    with open(folder / "ratings.dat", "w") as fh:
        for u in range(num_users):
            for t, m in enumerate(rng.permutation(num_items)[:10]):
                fh.write(f"{u + 1}::{m + 1}::{rng.integers(1, 6)}::{978300000 + t}\n")


def test_ml1m_format_builds_the_18_genre_task(tmp_path):
    from recbench.data import parsers

    write_ml1m(tmp_path)
    raw = parsers.parse_ml1m(tmp_path)
    assert raw.item_genres.shape == (raw.num_items, 18)
    g = build_graph(raw.frame, np.zeros(len(raw.frame), dtype=np.int8), raw.num_users,
                    raw.num_items, item_genres=raw.item_genres)
    s = gt.build_samples(g, gt.GenreTaskConfig())
    assert s.x.shape == (12 * 5, 18, 6)
    counts = gt.cooccurrence(gt.item_genres(g))
    assert counts.shape == (18, 18) and (counts == counts.T).all()


@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("RECBENCH_MIRROR"), reason="RECBENCH_MIRROR unset")
def test_ml100k_genre_task_end_to_end(tmp_path):
    from recbench.config import DatasetConfig
    from recbench.data.datasets import get_dataset
    from recbench.data.fetch import fetch
    from recbench.data.prepare import DataPaths, load

    torch.set_num_threads(1)
    paths = DataPaths(Path(os.environ.get("RECBENCH_DATA", tmp_path)))
    fetch(get_dataset("ml-100k"), paths.raw, Path(os.environ["RECBENCH_MIRROR"]))
    ds = load(DatasetConfig(name="ml-100k"), paths)
    counts = gt.cooccurrence(gt.item_genres(ds.g))
    assert counts.shape == (18, 18) and int((counts > 0).sum()) // 2 == 106  # spec §6
    ctx = RunContext(ds, TrainConfig(batch_size=96), EvalConfig(k=[1, 3]), torch.device("cpu"), 0)
    tr = gm.make_gconv_genre_trainer(
        gm.GConvGenreConfig(name="gconv_genre", num_blocks=1), ctx)
    sizes = {k: len(v) for k, v in tr.splits.items()}
    assert sum(sizes.values()) == 95_277  # 100,000 - 943 × 5 - 8 targets of unknown genre
    assert sizes == {"test": 9_528, "valid": 17_150, "train": 68_599}
    floor = tr.floor["majority_accuracy@1"]
    tr.splits = {**tr.splits, "train": tr.splits["train"][:96 * 150]}
    tr.train_epoch(0)
    acc = tr.evaluate("test").metrics["accuracy@1"]
    assert acc > floor + 0.02  # beats always guessing Drama after 150 batches


def test_experiment_and_study_files_validate(tmp_path):
    from recbench import studies
    from recbench.experiment import load_experiment

    root = Path(__file__).resolve().parents[1]
    for name in ("gconv_genre", "gconv_genre_baseline", "gconv_genre_ml1m"):
        cfg = load_experiment(root / "experiments" / f"{name}.yaml")
        assert cfg.train.batch_size == 96 and cfg.train.patience == 5 and cfg.train.epochs == 50
    expected = {"gconv-genre-table1": 8, "gconv-genre-components": 5, "gconv-genre-n-layers": 6}
    for name, variants in expected.items():
        study = studies.load_study(root / "experiments" / "studies", name)
        planned = studies.plan(study, tmp_path)
        assert len(planned) == variants * 3  # three seeds each
    table1 = studies.plan(studies.load_study(root / "experiments" / "studies", "gconv-genre-table1"),
                          tmp_path)
    kinds = {p.variant: p.cfg.model for p in table1 if p.seed == 0}
    assert kinds["svm"].name == "gconv_genre_baseline" and kinds["svm"].kind == "svm"
    assert kinds["attention"].graph is False and kinds["attention"].chebyshev is False
    assert kinds["graph"].attention is False and kinds["ours"].num_blocks == 2
