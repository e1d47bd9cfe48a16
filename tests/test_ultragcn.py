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
