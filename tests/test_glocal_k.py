"""GLocal-K / SparseFC / I-AutoRec: kernel layer, exact sparse products, global kernel, trainer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recbench.models.glocal_k import (
    Entries,
    GLocalK,
    GLocalKConfig,
    KernelLayer,
    SparseInput,
    _KernelisedWeight,
    make_glocal_k_trainer,
    sampled_output,
)
from recbench.train.lbfgs import lbfgs_epoch


def _graph(num_users=12, num_items=15, seed=0, test_share=0.2):
    from recbench.data.graph import Dataset, build_graph

    rng = np.random.default_rng(seed)
    rows = [(u, i, float(1 + (u + i) % 5)) for u in range(num_users) for i in range(num_items)
            if rng.random() < 0.5]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"]).assign(timestamp=0)
    codes = np.where(rng.random(len(frame)) < test_share, 2, 0).astype(np.int8)
    return Dataset(build_graph(frame, codes, num_users, num_items))


def _ctx(data, seed=0):
    from recbench.config import EvalConfig, TrainConfig
    from recbench.train.api import RunContext

    return RunContext(data, TrainConfig(optimizer="lbfgs", patience=None), EvalConfig(),
                      torch.device("cpu"), seed)


def _cfg(**kw) -> GLocalKConfig:
    base = dict(name="glocal_k", hidden_dims=[8, 8], kernel_dim=3, lambda_2=0.1, lambda_s=0.01,
                pretrain_epochs=3, finetune_epochs=3, pretrain_maxiter=5, finetune_maxiter=5)
    return GLocalKConfig(**{**base, **kw})


def test_kernel_values_and_support():
    layer = KernelLayer(4, 3, kernel_dim=2)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([[0.0, 0.0], [0.5, 0.0], [2.0, 0.0], [0.0, 1.0]]))
        layer.v.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5]]))
    k = layer.kernel()
    # K = max(0, 1 - |u - v|^2), worked out by hand
    want = torch.tensor([[1.0, 0.0, 0.75], [0.75, 0.75, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.75]])
    assert torch.allclose(k, want, atol=1e-6)


def test_fused_kernelised_weight_matches_autograd():
    torch.manual_seed(0)
    w = torch.randn(7, 6, dtype=torch.double, requires_grad=True)
    u = (0.3 * torch.randn(7, 5, dtype=torch.double)).requires_grad_()
    v = (0.3 * torch.randn(6, 5, dtype=torch.double)).requires_grad_()
    k = (1 - ((u[:, None] - v[None]) ** 2).sum(-1)).clamp(min=0)
    ref = (w * k, 20 * 0.5 * (w * w).sum() + 0.006 * 0.5 * (k * k).sum())
    out = _KernelisedWeight.apply(w, u, v, 20.0, 0.006)
    assert torch.allclose(out[0], ref[0]) and torch.allclose(out[1], ref[1])
    g = torch.randn(7, 6, dtype=torch.double)
    got = torch.autograd.grad((out[0] * g).sum() + 3 * out[1], (w, u, v))
    want = torch.autograd.grad((ref[0] * g).sum() + 3 * ref[1], (w, u, v))
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b)
    assert torch.autograd.gradcheck(lambda *x: _KernelisedWeight.apply(*x, 20.0, 0.006), (w, u, v))


def test_sparse_products_equal_dense():
    torch.manual_seed(1)
    m, n = 6, 7
    mask = torch.rand(m, n) < 0.4
    r = torch.zeros(m, n)
    r[mask] = torch.randint(1, 6, (int(mask.sum()),)).float()
    items, users = mask.nonzero().unbind(1)
    order = torch.randperm(len(items))
    cells = Entries(items[order], users[order], m, n, r[items[order], users[order]])
    h = torch.randn(m, 4, dtype=torch.double, requires_grad=True)
    w = torch.randn(4, n, dtype=torch.double, requires_grad=True)
    b = torch.randn(n, dtype=torch.double, requires_grad=True)
    cells.pattern = cells.pattern.double()
    vals = cells.to_edges(sampled_output(h, w, b, cells))
    assert torch.allclose(vals, (h @ w + b)[items[order], users[order]])
    assert torch.autograd.gradcheck(lambda *x: sampled_output(*x, cells), (h, w, b))
    w1 = torch.randn(n, 3, requires_grad=True)
    out = SparseInput(cells).matmul(w1)
    assert torch.allclose(out, r @ w1, atol=1e-5)
    g = torch.randn(m, 3)
    out.backward(g)
    assert torch.allclose(w1.grad, r.T @ g, atol=1e-5)


def test_parameter_count_matches_spec():
    gen = torch.Generator().manual_seed(0)
    model = GLocalK(num_users=943, num_items=1682, generator=gen, hidden_dims=[500, 500],
                    kernel_dim=5, local_kernel=True, gk_size=3)
    assert sum(p.numel() for p in model.parameters()) == 1_229_511  # spec §3: 1,214,373 + 15,138
    autorec = GLocalK(num_users=943, num_items=1682, generator=gen, hidden_dims=[500, 500],
                      kernel_dim=5, local_kernel=False, global_kernel=False)
    assert all(layer.u is None for layer in autorec.layers) and not autorec.has_global


@pytest.mark.parametrize("size,layers", [(3, 1), (5, 2)])
def test_global_convolution_paths_agree(size, layers):
    gen = torch.Generator().manual_seed(0)
    model = GLocalK(num_users=11, num_items=9, generator=gen, hidden_dims=[4], kernel_dim=2,
                    local_kernel=True, gk_size=size, gk_layers=layers)
    r = torch.randint(0, 6, (9, 11)).float()
    mu = torch.rand(9)
    plain = model.convolve(r, mu)
    model.unfolded = F.unfold(r[None, None], size, padding=size // 2)[0]
    assert torch.allclose(model.convolve(r, mu), plain, atol=1e-4)
    x = r
    for bank in model.banks:  # eq. 5-6 by hand: GK = μᵀ·Kb, R̂ = ReLU(conv(R, GK))
        gk = (mu @ bank).view(size, size)
        x = torch.relu(F.conv2d(x[None, None], gk[None, None], padding=size // 2)[0, 0])
    assert torch.allclose(plain, x, atol=1e-4)
    model.aggregation = "elementwise"
    assert torch.allclose(model.global_kernels(mu)[0], model.banks[0].mean(0).view(size, size))


def test_lbfgs_epoch_minimises_quadratic():
    x = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    target = torch.tensor([1.0, 0.5])
    res = lbfgs_epoch([x], lambda: ((x - target) ** 2).sum(), maxiter=20)
    assert res.loss < 1e-8 and torch.allclose(x.detach(), target, atol=1e-4)
    assert res.nit <= 20 and res.nfev >= res.nit


def test_trainer_stages_loss_falls_and_deterministic():
    data = _graph()
    runs = []
    for _ in range(2):
        tr = make_glocal_k_trainer(_cfg(), _ctx(data))
        assert tr.num_epochs == 6
        hist = [tr.train_epoch(e) for e in range(tr.num_epochs)]
        assert bool(tr.model.finetuned)
        runs.append((hist, tr.evaluate("test").metrics))
    hist, metrics = runs[0]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[2]["loss"] < hist[0]["loss"]  # pre-training
    assert runs[0][1] == runs[1][1]  # same seed, same numbers
    assert 0 < metrics["rmse"] < 4
    extra = tr.extra_metrics()
    assert extra["test_selected_rmse"] <= metrics["rmse"] + 1e-6
    assert 3 <= extra["test_selected_epoch"] <= 5


def test_evaluation_is_clipped_dense_prediction():
    data = _graph()
    tr = make_glocal_k_trainer(_cfg(pretrain_epochs=1, finetune_epochs=1), _ctx(data))
    for e in range(2):
        tr.train_epoch(e)
    from recbench.data.graph import split_edges

    users, items, ratings = split_edges(data.g, "test")
    with torch.no_grad():
        dense = tr.model(tr.r).clamp(1, 5)
    p = dense[items, users]
    res = tr.evaluate("test")
    assert abs(res.metrics["rmse"] - float(((p - ratings) ** 2).mean().sqrt())) < 1e-5
    assert res.per_unit["squared_error"].shape == (len(ratings),)


def test_baseline_switches_share_trainer():
    data = _graph()
    sparsefc = make_glocal_k_trainer(_cfg(global_kernel={"enabled": False}), _ctx(data))
    autorec = make_glocal_k_trainer(
        _cfg(local_kernel=False, global_kernel={"enabled": False}), _ctx(data))
    for tr in (sparsefc, autorec):
        first = tr.train_epoch(0)["loss"]
        for e in range(1, tr.num_epochs):
            last = tr.train_epoch(e)["loss"]
        assert last < first and not bool(tr.model.finetuned) and len(tr.model.banks) == 0
    assert sum(p.numel() for p in sparsefc.model.parameters()) > sum(
        p.numel() for p in autorec.model.parameters())


def test_state_dict_round_trip_reproduces_scores():
    data = _graph()
    tr = make_glocal_k_trainer(_cfg(pretrain_epochs=1, finetune_epochs=1), _ctx(data))
    tr.train_epoch(0)
    tr.train_epoch(1)
    fresh = make_glocal_k_trainer(_cfg(pretrain_epochs=1, finetune_epochs=1), _ctx(data, seed=5))
    fresh.model.load_state_dict(tr.model.state_dict())
    assert fresh.evaluate("test").metrics == tr.evaluate("test").metrics


def test_ml1m_path_on_generated_data(tmp_path, monkeypatch):
    """The ML-1M experiment's split (seeded legacy shuffle, 90:10) and model on fake ratings.dat."""
    from pathlib import Path

    from recbench.data import parsers
    from recbench.data.prepare import DataPaths
    from recbench.experiment import load_experiment
    from recbench.runner import train_run

    monkeypatch.setattr(parsers, "check_counts", lambda *a: None)  # generated, not 1M rows
    paths = DataPaths(tmp_path / "data")
    folder = paths.raw / "ml-1m"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = sorted({(int(u), int(i)) for u, i in zip(rng.integers(1, 40, 600),
                                                     rng.integers(1, 60, 600), strict=True)})
    folder.joinpath("ratings.dat").write_text("".join(
        f"{u}::{i}::{1 + (u * i) % 5}::{978300000 + k}\n" for k, (u, i) in enumerate(lines)))
    folder.joinpath("movies.dat").write_text("1::Toy Story (1995)::Animation|Comedy\n")
    cfg = load_experiment(Path("experiments/glocal_k_ml1m.yaml"), [
        "model.hidden_dims=[6,6]", "model.pretrain_epochs=2", "model.finetune_epochs=2",
        "model.pretrain_maxiter=3", "model.finetune_maxiter=2", "seeds=[0]"]).model_copy(
            update={"seed": 0})
    run = train_run(cfg, paths, tmp_path / "runs")
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    n = len(lines)
    assert metrics["epochs_run"] == 4
    assert len(np.load(run / "per_unit.npz")["squared_error"]) == int(0.1 * n)
    assert 0 < metrics["test"]["rmse"] < 4
    # the split is NumPy RandomState(1234).shuffle of the row indices, first 10% to test
    from recbench.data.graph import RATES
    from recbench.data.prepare import load

    idx = np.arange(n)
    np.random.RandomState(1234).shuffle(idx)
    test = load(cfg.dataset, paths).g.edges[RATES].data["test"].numpy()
    assert sorted(np.flatnonzero(test)) == sorted(idx[: int(0.1 * n)])


@pytest.mark.realdata
def test_ml100k_short_run(real_paths, tmp_path):
    from pathlib import Path

    from recbench.experiment import load_experiment
    from recbench.runner import train_run

    torch.set_num_threads(1)
    cfg = load_experiment(Path("experiments/glocal_k.yaml"), [
        "model.hidden_dims=[100,100]", "model.pretrain_epochs=3", "model.finetune_epochs=2",
        "seeds=[0]"]).model_copy(update={"seed": 0})
    run = train_run(cfg, real_paths, tmp_path / "runs")
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert metrics["test"]["rmse"] < 1.1  # the global mean scores about 1.15 on u1
    assert metrics["extra"]["test_selected_rmse"] <= metrics["test"]["rmse"] + 1e-6


def test_validation_carve_out_selects_epoch(tiny_paths, tmp_path):
    """With dataset.valid_ratio > 0 the loop picks best.pt on validation RMSE, never on test."""
    import json

    from recbench.experiment import validate
    from recbench.runner import train_run

    cfg = validate({
        "name": "gk-valid", "seed": 0, "train": {"patience": None, "optimizer": "lbfgs"},
        "dataset": {"name": "tiny", "protocol": "random", "test_ratio": 0.2, "valid_ratio": 0.2},
        "model": {"name": "glocal_k", "hidden_dims": [6, 6], "kernel_dim": 2, "lambda_2": 0.1,
                  "lambda_s": 0.01, "pretrain_epochs": 2, "finetune_epochs": 2}}, "test")
    run = train_run(cfg, tiny_paths, tmp_path / "runs")
    metrics = json.loads((run / "metrics.json").read_text())
    hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    valid = [h["valid_rmse"] for h in hist]
    assert metrics["best_valid"] == min(valid)
    assert metrics["best_epoch"] == valid.index(min(valid))
