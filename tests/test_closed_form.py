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


# --- hyperparameter lists chosen on validation inside the run (closed_form.GridTrainer) ---

def _ctx(k: int, valid: bool = True):
    from recbench.config import EvalConfig, TrainConfig
    from recbench.data.graph import RATES
    from recbench.train.api import RunContext
    from tests.test_contract import synthetic

    data = synthetic()
    if not valid:  # valid_ratio 0 / the published refit: no validation edges at all
        data.g.edges[RATES].data["valid"][:] = False
    return RunContext(data, TrainConfig(), EvalConfig(k=[k]), torch.device("cpu"), 0)


class HalfModel(closed_form.ClosedFormModel):
    """test_contract.synthetic's users like one item half: ``sign`` 1 scores the user's own
    half first (validation Recall@6 = 1: the 6 half items left after training are all ranked
    on top), -1 the other half (Recall@6 = 0). ``pad`` scales the scores and changes no rank.
    Every instance is tracked, so a test can count the fits held at once."""

    live: list = []

    def __init__(self, *, sign: float, pad: float):
        super().__init__()
        self.sign, self.pad, self.w = sign, pad, None
        HalfModel.live.append(__import__("weakref").ref(self))

    def fit(self, x: sp.csr_matrix) -> dict[str, float]:
        held = [r() for r in HalfModel.live if r() is not None and r() is not self]
        assert not [m for m in held if m.fitted], "a previous fit is still held"
        n = x.shape[1]
        half = np.arange(n) < n // 2
        self.w = sp.csr_matrix(self.sign * self.pad * (half[:, None] == half[None, :]))
        return {"fits": 1.0}

    def score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        return (rows @ self.w).toarray()


def test_a_list_keeps_the_combination_best_on_validation_and_never_reads_test(monkeypatch):
    HalfModel.live.clear()
    trainer = closed_form.closed_form_trainer(HalfModel, {"sign": [-1.0, 1.0], "pad": [1.0, 2.0]},
                                              _ctx(k=6))
    assert isinstance(trainer, closed_form.GridTrainer)
    read, evaluate = [], trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda split: (read.append(split), evaluate(split))[1])
    trainer.train_epoch(0)
    assert read == ["valid"] * 4  # one validation per combination, test never
    extra = trainer.extra_metrics()
    assert [(r["sign"], r["pad"], r["recall@6"]) for r in extra["grid"]] == [
        (-1.0, 1.0, 0.0), (-1.0, 2.0, 0.0), (1.0, 1.0, 1.0), (1.0, 2.0, 1.0)]
    assert extra["chosen"] == {"sign": 1.0, "pad": 1.0}  # the best; a tie goes to the first
    assert extra["grid_monitor"] == "recall@6" and extra["grid_seconds"] >= extra["fit_seconds"]
    model = trainer.model  # the chosen one, refitted (the last fitted was (1, 2))
    assert (model.sign, model.pad, model.fitted) == (1.0, 1.0, True)
    assert evaluate("valid").metrics["recall@6"] == 1.0
    trainer.train_epoch(0)
    assert trainer.model is model  # fitted once per run


def test_grid_figures_are_the_scalar_runs_figures():
    ctx = _ctx(k=3)
    trainer = closed_form.closed_form_trainer(ItemKNN, {"top_k": [1, 4], "shrink": [0.0, 10.0]},
                                              ctx)
    trainer.train_epoch(0)
    extra = trainer.extra_metrics()
    assert [(r["top_k"], r["shrink"]) for r in extra["grid"]] == [(1, 0.0), (1, 10.0), (4, 0.0),
                                                                   (4, 10.0)]
    for record in extra["grid"]:
        alone = closed_form.ClosedFormTrainer(ItemKNN(top_k=record["top_k"],
                                                      shrink=record["shrink"]), ctx)
        assert alone.evaluate("valid").metrics["recall@3"] == record["recall@3"]
    best = max(extra["grid"], key=lambda r: r["recall@3"])  # max keeps the first of equals
    assert extra["chosen"] == {"top_k": best["top_k"], "shrink": best["shrink"]}
    alone = closed_form.ClosedFormTrainer(ItemKNN(**extra["chosen"]), ctx)
    users = torch.arange(ctx.data.num_users)
    torch.testing.assert_close(trainer.score(users), alone.score(users), rtol=0, atol=0)


def test_scalars_build_the_plain_trainer():
    trainer = closed_form.closed_form_trainer(ItemKNN, {"top_k": 5, "shrink": 1.0}, _ctx(k=3))
    assert type(trainer) is closed_form.ClosedFormTrainer
    assert (trainer.model.top_k, trainer.model.shrink) == (5, 1.0)


def test_a_list_without_validation_is_refused_in_one_line():
    from recbench.errors import ConfigError

    with pytest.raises(ConfigError, match="model.l2: .*choose on the honest variant first") as e:
        closed_form.closed_form_trainer(EASE, {"l2": [1.0, 10.0]}, _ctx(k=3, valid=False))
    assert "\n" not in str(e.value)
    closed_form.closed_form_trainer(EASE, {"l2": 10.0}, _ctx(k=3, valid=False))  # a scalar runs


# The Gowalla ledger's closed-form cells (results/gowalla): scalar settings must keep the hashes
# (EASE^R's l2 moved 80 -> 50 on 2026-12-06, chosen on validation: new cells, new hashes; the
# ItemKNN cells keep theirs through the three scoring switches added that day)
GOWALLA_HASHES = {("ease-gowalla", "honest"): "f1a2ed0610", ("ease-gowalla", "published"): "c6b467af89",
                  ("itemknn-gowalla", "honest"): "29adeabf2d",
                  ("itemknn-gowalla", "published"): "97fd7bcd42",
                  ("rp3beta-gowalla", "honest"): "b59ca22da1",
                  ("rp3beta-gowalla", "published"): "baffd1bdbe",
                  ("gfcf-gowalla", "honest"): "653578a64d",
                  ("gfcf-gowalla", "published"): "13046cdc3a"}


def test_scalar_settings_hash_as_before(tmp_path, monkeypatch):
    from pathlib import Path

    from recbench.studies import list_studies, plan

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    study = next(s for s in list_studies(root / "experiments" / "studies") if s.study == "gowalla")
    got = {(r.base, r.variant): r.hash for r in plan(study, tmp_path / "runs")
           if (r.base, r.variant) in GOWALLA_HASHES}
    assert got == GOWALLA_HASHES


def test_a_grid_run_records_the_choice_in_metrics(tmp_path, monkeypatch):
    import json

    from recbench import runner as loop
    from recbench.data.prepare import DataPaths
    from recbench.experiment import validate

    data = _ctx(k=3).data
    monkeypatch.setattr(loop, "load", lambda dataset, paths: data)
    cfg = validate({"name": "grid", "dataset": {"name": "tiny", "protocol": "random"},
                    "model": {"name": "rp3beta", "alpha": [0.5, 1.0], "top_k": [2, 8]},
                    "train": {"epochs": 1, "patience": None, "num_threads": 1},
                    "eval": {"k": [3]}, "seed": 0, "seeds": [0]}, "grid test")
    run_dir = loop.train_run(cfg, DataPaths(tmp_path / "data"), tmp_path / "runs")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    extra = metrics["extra"]
    assert len(extra["grid"]) == 4 and set(extra["chosen"]) == {"alpha", "beta", "top_k",
                                                                 "normalize"}
    figures = {(r["alpha"], r["top_k"]): r["recall@3"] for r in extra["grid"]}
    assert metrics["monitor"] == "recall@3"
    assert metrics["best_valid"] == figures[extra["chosen"]["alpha"], extra["chosen"]["top_k"]]
    assert metrics["best_valid"] == max(figures.values())
    fresh, test = loop.evaluate_run(run_dir, DataPaths(tmp_path / "data"))  # refits the grid
    assert fresh == pytest.approx(test) and test == pytest.approx(metrics["test"])


def _bars_itemcf(xd: np.ndarray, k: int) -> np.ndarray:
    """BARS's ItemCF scores (users × items) written densely from its published steps: cosine
    with the diagonal at -1 (NaN → -1), mapped to (s + 1) / 2, each target item's k largest
    kept, rows l1-normalised, then S (X - m) + m with m the item means."""
    iu = xd.T
    norms = np.sqrt((iu ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = (iu @ iu.T) / (norms[:, None] * norms[None, :])
    sim -= 2 * np.eye(len(iu))
    sim[np.isnan(sim)] = -1
    sim = (sim + 1) / 2
    sim[sim < 0] = 0
    drop = np.argsort(-sim, axis=1, kind="stable")[:, k:]
    np.put_along_axis(sim, drop, 0.0, axis=1)
    sums = sim.sum(1, keepdims=True)
    sim = np.divide(sim, sums, out=np.zeros_like(sim), where=sums > 0)
    mean = iu.mean(1, keepdims=True)
    return (sim @ (iu - mean) + mean).T


def test_itemknn_bars_switches_reproduce_bars_itemcf(x):
    """shift_similarity + normalize_neighbours + average_bias = BARS's ItemCF scoring, item 11
    (no training pair) included; all neighbours kept so no tie decides the comparison."""
    xd = x.toarray().astype(np.float64)
    model = fitted(ItemKNN(top_k=N_ITEMS, shrink=0.0, shift_similarity=True,
                           normalize_neighbours=True, average_bias=True), x)
    np.testing.assert_allclose(model.score_rows(x[:6]), _bars_itemcf(xd, N_ITEMS)[:6],
                               rtol=1e-5, atol=1e-6)


def test_itemknn_neighbour_normalisation_alone_is_a_weighted_share(x):
    """normalize_neighbours alone: each target item's kept weights sum to one, so a score is the
    weighted share of the item's neighbours the user has (at most 1)."""
    model = fitted(ItemKNN(top_k=4, shrink=0.0, normalize_neighbours=True), x)
    sums = np.asarray(model.w.sum(axis=0)).ravel()
    np.testing.assert_allclose(sums[:11], 1.0, rtol=1e-6)
    assert sums[11] == 0.0 and model.offset is None
    scores = model.score_rows(x)
    assert scores.max() <= 1.0 + 1e-6 and scores.min() >= 0.0
