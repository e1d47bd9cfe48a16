"""UltraGCN's constraint weights and loss against their formulas computed densely on a tiny
graph (the model's registry entry is trained, evaluated and reloaded by test_contract)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recbench.models import closed_form
from recbench.models.mf import BPRMF
from recbench.models.ultragcn import (
    UltraGCNConfig,
    UltraGCNTrainer,
    degree_betas,
    item_constraints,
)
from recbench.native import library

N_USERS, N_ITEMS = 9, 7


def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """A random binary matrix with item 6 never interacted with; every user has a pair."""
    rng = np.random.default_rng(3)
    dense = rng.random((N_USERS, N_ITEMS)) < 0.4
    dense[:, 6] = False
    dense[np.arange(N_USERS), np.arange(N_USERS) % 6] = True
    u, i = np.nonzero(dense)
    return torch.from_numpy(u).long(), torch.from_numpy(i).long()


def dense_omega(u: torch.Tensor, i: torch.Tensor) -> np.ndarray:
    x = np.zeros((N_USERS, N_ITEMS))
    x[u.numpy(), i.numpy()] = 1
    g_mat = x.T @ x  # diagonal kept, as the authors' default
    g = g_mat.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(g > 0, np.sqrt(g + 1) / g, 0.0)
    return own[:, None] * g_mat / np.sqrt(g + 1)[None, :]  # ω[i, j]


def test_degree_betas_follow_the_formula():
    u, i = pairs()
    beta_u, beta_i = degree_betas(u, i, N_USERS, N_ITEMS)
    d_u, d_i = np.bincount(u, minlength=N_USERS), np.bincount(i, minlength=N_ITEMS)
    np.testing.assert_allclose(beta_u, np.sqrt(d_u + 1) / d_u, rtol=1e-6)
    np.testing.assert_allclose(beta_i, 1 / np.sqrt(d_i + 1), rtol=1e-6)
    assert beta_i[6] == pytest.approx(1.0)  # an unseen item: d = 0


@pytest.mark.parametrize("block_items", [2, N_ITEMS])
def test_item_constraints_keep_each_items_k_largest_omegas(block_items, monkeypatch):
    monkeypatch.setattr(closed_form, "BLOCK_BYTES", 4 * N_ITEMS * block_items)
    u, i = pairs()
    omega = dense_omega(u, i)
    neighbours, weights = item_constraints(u, i, N_USERS, N_ITEMS, k=3)
    assert neighbours.shape == weights.shape == (N_ITEMS, 3)
    for item in range(N_ITEMS):
        want = np.sort(omega[item])[::-1][:3]
        np.testing.assert_allclose(weights[item].numpy(), want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(omega[item, neighbours[item].numpy()], want, rtol=1e-5,
                                   atol=1e-7)
    assert float(weights[6].abs().sum()) == 0.0  # an item without pairs constrains nothing


def test_batch_loss_equals_the_written_out_sum():
    import recbench.models.ultragcn as mod

    u, i = pairs()
    cfg = UltraGCNConfig(name="ultragcn", emb_dim=4, init_std=0.3, ii_neighbors=2,
                         num_negatives=3, negative_weight=5.0, w1=0.1, w2=0.7, w3=0.2, w4=0.9)
    model = BPRMF(num_users=N_USERS, num_items=N_ITEMS, generator=torch.Generator().manual_seed(0),
                  emb_dim=4, init_std=0.3)
    trainer = UltraGCNTrainer.__new__(UltraGCNTrainer)  # the loss needs only these fields
    trainer.cfg, trainer.model = cfg, model
    trainer.beta_u, trainer.beta_i = degree_betas(u, i, N_USERS, N_ITEMS)
    trainer.ii_neighbours, trainer.ii_weights = mod.item_constraints(u, i, N_USERS, N_ITEMS, 2)
    bu, bp = u[:4], i[:4]
    neg = torch.tensor([[0, 1, 6], [2, 2, 3], [5, 4, 1], [6, 0, 0]])
    main, item_loss, norm = trainer.batch_loss(bu, bp, neg)

    e_u, e_i = model.user.weight.detach().double(), model.item.weight.detach().double()
    bu_, bi_ = trainer.beta_u.double(), trainer.beta_i.double()

    def log_sig(x):
        return -math.log1p(math.exp(-x))

    want_main = want_item = 0.0
    for b in range(4):
        uu, pp = int(bu[b]), int(bp[b])
        s = float(e_u[uu] @ e_i[pp])
        want_main += -(cfg.w1 + cfg.w2 * bu_[uu] * bi_[pp]) * log_sig(s)
        negs = [-(cfg.w3 + cfg.w4 * bu_[uu] * bi_[j]) * log_sig(-float(e_u[uu] @ e_i[j]))
                for j in neg[b].tolist()]
        want_main += cfg.negative_weight * sum(negs) / len(negs)
        for j, w in zip(trainer.ii_neighbours[pp].tolist(), trainer.ii_weights[pp].tolist()):
            want_item += -w * log_sig(float(e_u[uu] @ e_i[j]))
    want_norm = float((e_u ** 2).sum() + (e_i ** 2).sum()) / 2
    assert float(main) == pytest.approx(float(want_main), rel=1e-5)
    assert float(item_loss) == pytest.approx(want_item, rel=1e-5)
    assert float(norm) == pytest.approx(want_norm, rel=1e-5)


needs_native = pytest.mark.skipif(library() is None, reason="native kernels do not build here")


def _batch(dim: int, k: int = 5, batch: int = 6, seed: int = 0):
    """A config, a model of width ``dim`` on the tiny graph, its trainer fields and a batch
    with duplicate negatives and a positive among them (rows hit more than once)."""
    u, i = pairs()
    cfg = UltraGCNConfig(name="ultragcn", emb_dim=dim, init_std=0.3, ii_neighbors=3,
                         num_negatives=k, negative_weight=7.0, w1=0.1, w2=0.7, w3=0.2, w4=0.9,
                         gamma=0.05, ii_weight=0.3)
    model = BPRMF(num_users=N_USERS, num_items=N_ITEMS,
                  generator=torch.Generator().manual_seed(seed), emb_dim=dim, init_std=0.3)
    trainer = UltraGCNTrainer.__new__(UltraGCNTrainer)
    trainer.cfg, trainer.model = cfg, model
    trainer.beta_u, trainer.beta_i = degree_betas(u, i, N_USERS, N_ITEMS)
    trainer.ii_neighbours, trainer.ii_weights = item_constraints(u, i, N_USERS, N_ITEMS, 3)
    trainer.work = None
    gen = torch.Generator().manual_seed(seed + 1)
    bu, bp = u[:batch].contiguous(), i[:batch].contiguous()
    neg = torch.randint(0, N_ITEMS, (batch, k), generator=gen)
    neg[0, 1] = neg[0, 0]
    neg[1, 0] = bp[1]
    return trainer, bu, bp, neg


@needs_native
@pytest.mark.parametrize("dim", [3, 16, 32, 64, 128])
def test_native_step_is_the_autograd_gradient_at_each_width(dim):
    trainer, u, p, neg = _batch(dim)
    cfg, model = trainer.cfg, trainer.model
    main, item_loss, norm = trainer.batch_loss(u, p, neg)
    (main + cfg.gamma * norm + cfg.ii_weight * item_loss).backward()
    want = [model.user.weight.grad.clone(), model.item.weight.grad.clone()]
    model.user.weight.grad = model.item.weight.grad = None
    got_main, got_item, got_norm = trainer.batch_gradient(u, p, neg)
    assert got_main == pytest.approx(float(main), rel=1e-5)
    assert got_item == pytest.approx(float(item_loss), rel=1e-5)
    assert got_norm == pytest.approx(float(norm), rel=1e-5)
    for got, ref in zip((model.user.weight.grad, model.item.weight.grad), want):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    # a second step overwrites the gradients in place rather than adding to the last ones
    trainer.batch_gradient(u, p, neg)
    torch.testing.assert_close(model.item.weight.grad, want[1], rtol=1e-5, atol=1e-6)


@needs_native
@pytest.mark.parametrize("case", ["negative index", "neg past the end", "neg 1-D",
                                  "neighbours shape", "beta length", "weights", "int32 p"])
def test_native_step_refuses_what_the_loop_would_misread(case):
    from recbench.native import ops

    trainer, u, p, neg = _batch(16)
    users, items = trainer.model.user.weight.detach(), trainer.model.item.weight.detach()
    nbr, omega = trainer.ii_neighbours, trainer.ii_weights
    beta_u, weights = trainer.beta_u, (0.1, 0.7, 0.2, 0.9, 7.0, 0.3)
    if case == "negative index":
        u = u.clone()
        u[0] = -1
    elif case == "neg past the end":
        neg[2, 2] = N_ITEMS
    elif case == "neg 1-D":
        neg = neg[:, 0].contiguous()
    elif case == "neighbours shape":
        nbr = nbr[:-1]
    elif case == "beta length":
        beta_u = beta_u[:-1]
    elif case == "weights":
        weights = weights[:5]
    else:
        p = p.int()
    grad_u, grad_i = torch.zeros_like(users), torch.zeros_like(items)
    with pytest.raises(ValueError):
        ops.ultragcn_scatter(users, items, u, p, neg, nbr, omega, beta_u, trainer.beta_i,
                             weights, grad_u, grad_i)
    assert not grad_u.any() and not grad_i.any()


@needs_native
def test_native_epochs_follow_the_autograd_epochs_on_a_tiny_dataset(tiny_paths):
    """Three epochs of the native step (and native Adam) against the torch path's, same draws:
    the losses and the tables agree to float rounding; each trainer says which path it took."""
    from recbench.config import DatasetConfig, EvalConfig, TrainConfig
    from recbench.data.prepare import load
    from recbench.models import MODELS
    from recbench.train.api import RunContext

    data = load(DatasetConfig(name="tiny", protocol="random", test_ratio=0.2, valid_ratio=0.2),
                tiny_paths)
    spec = MODELS["ultragcn"]
    cfg = spec.config(name="ultragcn", emb_dim=8, init_std=0.1, ii_neighbors=3,
                      num_negatives=6, negative_weight=5.0, gamma=0.01)
    trainers = {}
    for kernels in ("native", "torch"):
        ctx = RunContext(data, TrainConfig(lr=0.01, batch_size=32, kernels=kernels),
                         EvalConfig(k=[5]), torch.device("cpu"), 0)
        trainers[kernels] = spec.make_trainer(cfg, ctx)
        assert trainers[kernels].kernels().path == kernels
    for epoch in range(3):
        a, b = (trainers[k].train_epoch(epoch) for k in ("native", "torch"))
        for key in ("loss_l", "loss_i", "norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
    for x, y in zip(trainers["native"].model.parameters(), trainers["torch"].model.parameters(),
                    strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


@needs_native
def test_native_step_gives_the_same_floats_at_one_and_two_threads():
    """The loop splits pairs, then item rows, between threads (kernels.c): every float must be
    the one-thread loop's, so a run's result does not depend on its thread count."""
    from recbench.native import ops

    gen = torch.Generator().manual_seed(4)
    users, items = torch.randn(50, 32, generator=gen), torch.randn(40, 32, generator=gen)
    u, p = torch.randint(0, 50, (64,), generator=gen), torch.randint(0, 40, (64,), generator=gen)
    neg = torch.randint(0, 40, (64, 20), generator=gen)
    nbr, omega = torch.randint(0, 40, (40, 3), generator=gen), torch.rand(40, 3, generator=gen)
    beta_u, beta_i = torch.rand(50, generator=gen), torch.rand(40, generator=gen)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            grad_u, grad_i = torch.ones_like(users), torch.ones_like(items)
            losses = ops.ultragcn_scatter(users, items, u, p, neg, nbr, omega, beta_u, beta_i,
                                          (0.1, 0.7, 0.2, 0.9, 7.0, 0.3), grad_u, grad_i)
            results.append((losses, grad_u, grad_i))
    finally:
        torch.set_num_threads(before)
    (l1, gu1, gi1), (l2, gu2, gi2) = results
    assert l1 == l2
    assert torch.equal(gu1, gu2) and torch.equal(gi1, gi2)
    with pytest.raises(ValueError, match="work"):
        ops.ultragcn_scatter(users, items, u, p, neg, nbr, omega, beta_u, beta_i,
                             (0.1, 0.7, 0.2, 0.9, 7.0, 0.3), gu1, gi1, work=torch.empty(10))
