"""EASE^R, ItemKNN, RP3β and GF-CF against their formulas computed densely on a tiny graph,
with the item blocks shrunk so that the blocked fits cross several blocks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbench.models import closed_form
from recbench.models.ease import EASE
from recbench.models.gfcf import GFCF
from recbench.models.itemknn import ItemKNN
from recbench.models.rp3beta import RP3beta

N_USERS, N_ITEMS = 30, 12


@pytest.fixture
def x(monkeypatch) -> sp.csr_matrix:
    """A random binary matrix with item 11 never interacted with; blocks of 5 items."""
    monkeypatch.setattr(closed_form, "BLOCK_BYTES", 4 * N_ITEMS * 5)
    rng = np.random.default_rng(1)
    dense = (rng.random((N_USERS, N_ITEMS)) < 0.3).astype(np.float32)
    dense[:, 11] = 0
    dense[np.arange(N_USERS), np.arange(N_USERS) % 11] = 1  # every user has a pair
    return sp.csr_matrix(dense)


def fitted(model, x):
    model.fit(x)
    return model


def test_item_blocks_cover_items_within_budget():
    spans = list(closed_form.item_blocks(10, 4, budget=4 * 4 * 3))
    assert spans == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_ease_matches_dense_closed_form(x):
    lam = 3.0
    xd = x.toarray().astype(np.float64)
    p = np.linalg.inv(xd.T @ xd + lam * np.eye(N_ITEMS))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    model = fitted(EASE(l2=lam), x)
    assert model.b.dtype == np.float32 and model.b.flags.c_contiguous
    np.testing.assert_allclose(model.b, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.score_rows(x[:4]), xd[:4] @ b, rtol=1e-4, atol=1e-5)


def _cosine(xd: np.ndarray, shrink: float) -> np.ndarray:
    norms = np.sqrt((xd ** 2).sum(0))
    sim = (xd.T @ xd) / (norms[:, None] * norms[None, :] + shrink + 1e-6)
    np.fill_diagonal(sim, 0.0)
    return sim


def test_itemknn_all_neighbours_is_shrunk_cosine(x):
    sim = _cosine(x.toarray().astype(np.float64), 2.0)
    model = fitted(ItemKNN(top_k=N_ITEMS, shrink=2.0), x)
    np.testing.assert_allclose(model.w.toarray(), sim, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score_rows(x[:3]), x[:3].toarray() @ sim, rtol=1e-5, atol=1e-6)


def test_itemknn_keeps_each_items_k_largest(x):
    sim = _cosine(x.toarray().astype(np.float64), 0.0)
    w = fitted(ItemKNN(top_k=3, shrink=0.0), x).w.toarray()
    for j in range(N_ITEMS):
        kept = np.sort(w[:, j][w[:, j] > 0])
        want = np.sort(sim[:, j])[::-1][:3]
        np.testing.assert_allclose(kept, np.sort(want[want > 0]), rtol=1e-5)


def _rp3(xd: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    deg_u, deg_i = xd.sum(1), xd.sum(0)
    p_ui = np.power(xd / deg_u[:, None], alpha)
    p_iu = np.power(np.divide(xd.T, deg_i[:, None], out=np.zeros_like(xd.T),
                              where=deg_i[:, None] > 0), alpha)
    pen = np.divide(1.0, np.power(deg_i, beta), out=np.zeros_like(deg_i), where=deg_i > 0)
    w = (p_iu @ p_ui) * pen[None, :]
    np.fill_diagonal(w, 0.0)
    return w


def test_rp3beta_all_destinations_is_the_walk(x):
    want = _rp3(x.toarray().astype(np.float64), 0.8, 0.4)
    model = fitted(RP3beta(alpha=0.8, beta=0.4, top_k=N_ITEMS), x)
    np.testing.assert_allclose(model.w.toarray(), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.score_rows(x[:3]), x[:3].toarray() @ want, rtol=1e-5,
                               atol=1e-7)


def test_rp3beta_keeps_each_rows_k_largest_and_normalises(x):
    want = _rp3(x.toarray().astype(np.float64), 1.0, 0.5)
    w = fitted(RP3beta(alpha=1.0, beta=0.5, top_k=2, normalize=True), x).w.toarray()
    for i in range(N_ITEMS):
        top = np.sort(want[i])[::-1][:2]
        top = top[top > 0]
        np.testing.assert_allclose(np.sort(w[i][w[i] > 0]), np.sort(top / top.sum()) if len(top)
                                   else np.zeros(0), rtol=1e-5)


def test_gfcf_matches_dense_filters(x):
    xd = x.toarray().astype(np.float64)
    deg_u, deg_i = xd.sum(1), xd.sum(0)
    d_inv = np.divide(1.0, np.sqrt(deg_i), out=np.zeros_like(deg_i), where=deg_i > 0)
    norm = xd / np.sqrt(deg_u)[:, None] * d_inv[None, :]
    _, _, vt = np.linalg.svd(norm)
    v = vt[:4]
    want = xd @ norm.T @ norm + 0.3 * (xd * d_inv) @ v.T @ v * np.sqrt(deg_i)[None, :]
    got = fitted(GFCF(alpha=0.3, rank=4), x).score_rows(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    linear = fitted(GFCF(alpha=0.0, rank=4), x).score_rows(x)
    np.testing.assert_allclose(linear, xd @ norm.T @ norm, rtol=1e-5, atol=1e-6)


def test_fit_is_deterministic_and_finite(x):
    for make in (lambda: GFCF(rank=3, seed=5), lambda: RP3beta(top_k=4),
                 lambda: ItemKNN(top_k=4), lambda: EASE(l2=1.0)):
        a, b = fitted(make(), x).score_rows(x), fitted(make(), x).score_rows(x)
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)


def test_trainer_fits_once_and_scores_training_rows(x):
    from recbench.config import EvalConfig, TrainConfig
    from recbench.train.api import RunContext
    from tests.test_contract import synthetic

    ctx = RunContext(synthetic(), TrainConfig(), EvalConfig(k=[3]), torch.device("cpu"), 0)
    trainer = closed_form.ClosedFormTrainer(ItemKNN(top_k=5), ctx)
    scores = trainer.score(torch.tensor([0, 1]))  # a re-check fits on first use
    assert scores.shape == (2, ctx.data.num_items) and trainer.model.fitted
    w = trainer.model.w
    trainer.train_epoch(0)
    assert trainer.model.w is w  # not refitted
    assert trainer.model.state_dict() == {}  # nothing fitted goes into best.pt
    assert "fit_seconds" in trainer.extra_metrics()
