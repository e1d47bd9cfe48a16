"""Global-local attention: scorer algebra, local mining, cluster index, retrieval evaluator,
the staged trainer on a tiny graph, NeuMF, and the authors' published Madison figures."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbench.config import EvalConfig, TrainConfig
from recbench.data import parsers, protocols
from recbench.data.graph import Dataset, build_graph
from recbench.eval.retrieval import ClusterIndex, rank_candidates, retrieval_ranking
from recbench.models import gl_attention as gla
from recbench.models import gl_attention_trainer as glt
from recbench.models.mf import NeuMFConfig, make_neumf_trainer
from recbench.runner import drive
from recbench.train import samplers
from recbench.train.api import RunContext


def tiny_data(num_users: int = 12, num_items: int = 30, per_user: int = 8, seed: int = 0,
              test_per_user: int = 2) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):  # two taste groups so there is something to learn
        base = 0 if u % 2 == 0 else num_items // 2
        items = rng.choice(np.arange(base, base + num_items // 2), per_user, replace=False)
        rows += [(u, int(i), 5.0, 0) for i in items]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    codes = np.zeros(len(frame), dtype=np.int8)
    for u in range(num_users):
        idx = np.flatnonzero(frame.user.to_numpy() == u)
        codes[idx[:test_per_user]] = protocols.TEST
    return Dataset(build_graph(frame, codes, num_users, num_items))


def ctx_for(data: Dataset, seed: int = 0, k: int = 5, lr: float = 0.01) -> RunContext:
    return RunContext(data, TrainConfig(lr=lr, batch_size=16), EvalConfig(k=[k]),
                      torch.device("cpu"), seed)


def test_scorer_matches_explicit_blend():
    torch.manual_seed(0)
    for rep in ("AD", "AP", "GD", "GP"):
        model = gla.GLAttention(5, 7, rep, emb_dim=8, hidden_dims=[8], out_dim=6,
                                num_clusters=2, attention_depth=2, alpha_linear=True)
        got = model.scorer()(users := torch.tensor([0, 3, 4]),
                             items := torch.tensor([[0, 1, 2], [6, 5, 4], [3, 3, 0]]))
        gu, gi = model.space_tables(gla.SPACES[rep])
        for b in range(3):
            for p in range(3):
                u, i = gu[users[b]][None], gi[items[b, p]][None]
                if len(gla.SPACES[rep]) > 1:
                    u, i, _ = model.blend(rep, u, i, i)
                else:
                    u, i = u[:, 0], i[:, 0]
                want = -(u - i).norm() if rep.endswith("D") else (u * i).sum()
                assert got[b, p].item() == pytest.approx(want.item(), abs=1e-5)
        full = model.scorer().all_items(users)
        assert torch.allclose(full.gather(1, items), got, atol=1e-5)


def test_attention_weights_are_a_softmax_over_spaces():
    att = gla.AttentionNet(4, 6, depth=0)
    fu, fi = torch.randn(3, 4, 6), torch.randn(3, 4, 6)
    a = att.alpha(fu, fi)
    assert torch.allclose(a.sum(-1), torch.ones(3))
    assert torch.allclose(a, torch.softmax((fu * fi).sum(-1), -1))  # Eq. 8, no extra layer


def test_representations_are_unit_norm():
    net = gla.RepresentationNet(4, 5, emb_dim=8, hidden_dims=[8, 8], out_dim=3)
    u, i = net.tables()
    assert u.shape == (4, 3) and i.shape == (5, 3)
    assert torch.allclose(u.norm(dim=-1), torch.ones(4), atol=1e-6)


def test_code_losses_by_hand():
    u = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.0, 0.0]])
    n = torch.tensor([[1.0, 1.0]])
    # per coordinate: (1-0)^2-(1-1)^2+0.5 = 1.5 ; (0-0)^2-(0-1)^2+0.5 = -0.5 -> 0 ; mean 0.75
    assert gla.code_distance_loss(u, p, n, 0.5).item() == pytest.approx(0.75)
    # 1 - sigmoid(0 - 1)
    assert gla.code_product_loss(u, p, n).item() == pytest.approx(1 - 1 / (1 + np.e))


def test_mining_keeps_only_hard_triplets():
    # 1-d space: clusters {0,1} around 0 and {2,3} around 10; user at 0.9
    items = np.array([[0.0], [1.0], [10.0], [11.0]], dtype=np.float32)
    users = np.array([[0.9]], dtype=np.float32)
    cent = np.array([[0.5], [10.5]], dtype=np.float32)
    assign = np.array([0, 0, 1, 1])
    pos_u, pos_i = np.array([0, 0]), np.array([0, 2])
    seen = samplers.SeenIndex(torch.tensor(pos_u), torch.tensor(pos_i), 4)
    trip = gla.mine_local_triplets(users, items, cent, assign, pos_u, pos_i, seen, 2, 50,
                                   np.random.default_rng(0))
    got = {tuple(t) for t in trip.tolist()}
    # intra: (0, 0, 1) since |0.9-0| > |0.9-1|; inter: (0, 2, 1) since the positive's cluster
    # is farther than the negative's; (0, 0, 3) is easy (negative's cluster is farther)
    assert got == {(0, 0, 1), (0, 2, 1)}
    intra = gla.mine_local_triplets(users, items, cent, assign, pos_u, pos_i, seen, 2, 50,
                                    np.random.default_rng(0), sets=("intra",))
    assert {tuple(t) for t in intra.tolist()} == {(0, 0, 1)}


def test_cluster_index_partitions_and_searches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    index = ClusterIndex.train(x, 8, seed=0)
    members = np.concatenate(index.lists)
    assert sorted(members.tolist()) == list(range(200))
    q = rng.normal(size=(5, 4)).astype(np.float32)
    cent = np.stack([x[ids].mean(0) for ids in index.lists])  # noqa: F841 (lists are not empty)
    near = index.nearest_clusters(q, 3)
    assert near.shape == (5, 3)
    cands = index.candidates(near)
    for row, clusters in enumerate(near):
        want = set(np.concatenate([index.lists[c] for c in clusters]).tolist())
        assert set(cands[row][cands[row] >= 0].tolist()) == want


def test_rank_candidates_semantics_by_hand():
    # one user, 6 items; training item 0; test items {1, 4}; candidates [0, 1, 2, 4]
    seen = (torch.tensor([0, 1]), torch.tensor([0]))
    rel = (torch.tensor([0, 2]), torch.tensor([1, 4]))
    scores = torch.tensor([[9.0, 1.0, 5.0, 0.0, 3.0, 0.0]])
    res = rank_candidates(lambda u, c: scores[0][c], lambda u: torch.tensor([[0, 1, 2, 4]]),
                          torch.tensor([0]), seen, rel, 6, [5])
    m = res.metrics
    # order: 2 (5.0), 4 (3.0), 1 (1.0) -> hits at ranks 2 and 3
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["precision@5"] == pytest.approx(2 / 5)  # divided by N, not by the pool of 3
    assert m["hr@5"] == 1.0
    assert m["arhr@5"] == pytest.approx(1 / 2 + 1 / 3)  # a sum over hits
    assert m["pool_size"] == 3.0
    empty = rank_candidates(lambda u, c: scores[0][c], lambda u: torch.tensor([[0]]),
                            torch.tensor([0]), seen, rel, 6, [5])
    assert empty.metrics["recall@5"] == 0.0 and empty.metrics["pool_size"] == 0.0


def test_exhaustive_retrieval_equals_full_ranking():
    from recbench.eval.ranking import full_ranking

    data = tiny_data()
    torch.manual_seed(0)
    table = torch.randn(data.num_users, data.num_items)
    a = retrieval_ranking(lambda u, c: table[u[:, None], c], None, data, "test", [5]).metrics
    b = full_ranking(lambda u: table[u], data, "test", [5]).metrics
    for key in ("recall@5", "precision@5", "hr@5", "arhr@5", "ndcg@5"):
        assert a[key] == pytest.approx(b[key])


def _gla_cfg(**kw) -> gla.GLAttentionConfig:
    base = dict(name="gl_attention", variant="paper", representation="AP", emb_dim=8,
                hidden_dims=[8],
                out_dim=8, num_clusters=3, candidate_clusters=2, mining_clusters=2,
                attention_mlp_depth=1, global_epochs=3, local_epochs=3, attention_epochs=3)
    base.update(kw)
    return gla.GLAttentionConfig(**base)


def _fit(cfg: gla.GLAttentionConfig, seed: int = 0):
    trainer = glt.make_gl_attention_trainer(cfg, ctx_for(tiny_data(), seed))
    return trainer, drive(trainer)


def test_staged_trainer_runs_every_stage_and_losses_fall():
    trainer, hist = _fit(_gla_cfg(global_epochs=8, local_epochs=6, attention_epochs=6))
    assert trainer.num_epochs == 20
    assert [h["stage"] for h in hist] == [0.0] * 8 + [1.0] * 6 + [2.0] * 6
    assert hist[7]["loss_GD"] < hist[0]["loss_GD"] and hist[7]["loss_GP"] < hist[0]["loss_GP"]
    assert hist[-1]["loss_AP"] < hist[14]["loss_AP"]
    assert len(trainer.local) > 0 and trainer.model.centroids.abs().sum() > 0
    res = trainer.evaluate("test")
    assert 0.0 <= res.metrics["recall@5"] <= 1.0
    assert 0.0 < res.metrics["candidate_fraction"] < 1.0
    assert len(res.per_unit["user"]) == 12


def test_trainer_is_deterministic_and_state_round_trips():
    cfg = _gla_cfg(representation="AD", report_candidates=[1, 3],
                   extra_representations=["GP", "LAP"])
    t1, _ = _fit(cfg, seed=3)
    t2, _ = _fit(cfg, seed=3)
    m1, m2 = t1.evaluate("test").metrics, t2.evaluate("test").metrics
    assert m1 == m2
    assert "recall@5|K3" in m1 and "recall@5|GP" in m1 and "recall@5|LAP" in m1
    assert set(t1.model.heads) == {"AD", "LAP"}
    fresh = glt.make_gl_attention_trainer(cfg, ctx_for(tiny_data(), 3))
    fresh.model.load_state_dict(t1.model.state_dict())
    fresh.load_state_dict(t1.state_dict())
    assert fresh.evaluate("test").metrics == m1


@pytest.mark.parametrize("rep", ["GD", "LP", "GAD", "LAP"])
def test_every_representation_type_trains(rep: str):
    trainer, _ = _fit(_gla_cfg(representation=rep, global_epochs=1, local_epochs=1,
                               attention_epochs=1))
    expected = {"GD": 1, "LP": 2, "GAD": 2, "LAP": 3}[rep]  # stages trained
    assert len(trainer.stages()) == expected
    assert np.isfinite(trainer.evaluate("test").metrics["recall@5"])


def test_code_variant_switches_run():
    trainer, hist = _fit(_gla_cfg(loss_impl="code", alpha_linear=True, attention_mlp_depth=3,
                                  attention_data=["global"]))
    assert trainer.model.attention is trainer.model.heads["AP"]
    assert trainer.model.attention.mix is not None
    assert np.isfinite(hist[-1]["loss_AP"])


def test_config_rejects_k_above_m():
    with pytest.raises(ValueError):
        _gla_cfg(num_clusters=3, candidate_clusters=4)


def test_neumf_learns_and_scores_all_items():
    data = tiny_data()
    cfg = NeuMFConfig(name="neumf", emb_dim=8, mlp_dims=[16, 8])
    trainer = make_neumf_trainer(cfg, ctx_for(data, lr=0.01))
    losses = [trainer.train_epoch(e)["bce"] for e in range(15)]
    assert losses[-1] < losses[0]
    s = trainer.model.score(torch.tensor([0, 1]))
    assert s.shape == (2, data.num_items)
    assert 0.0 <= trainer.evaluate("test").metrics["recall@5"] <= 1.0


MIRROR = os.environ.get("RECBENCH_MIRROR")


@pytest.mark.realdata
@pytest.mark.skipif(not MIRROR, reason="RECBENCH_MIRROR is not set")
def test_reference_evaluator_reproduces_the_authors_madison_figures():
    """The authors' GP vectors and M = 30 clusters, K = 2, N = 20, Euclidean (spec §5)."""
    root = Path(MIRROR) / "yelp-madison"
    ref = root / "reference"
    raw = parsers.parse_yelp(root, "yelp_mcity")
    codes = protocols.fixed(raw.fixed_splits["published"])
    data = Dataset(build_graph(raw.frame, codes, raw.num_users, raw.num_items))
    user = torch.from_numpy(np.loadtxt(ref / "GP_yelp_mcity_user_emb.txt", dtype=np.float32))
    item = torch.from_numpy(np.loadtxt(ref / "GP_yelp_mcity_item_emb.txt", dtype=np.float32))
    lists = [np.array(line.split(), dtype=np.int64) for line in
             (ref / "yelp_mcity_cluster_member_M30.txt").read_text().splitlines() if line.strip()]
    ranking = np.array([line.split() for line in
                        (ref / "yelp_mcity_index_user_cluster_M30.txt").read_text().splitlines()
                        if line.strip()], dtype=np.int64)
    index = ClusterIndex(lists, raw.num_items)
    res = retrieval_ranking(lambda u, c: -(user[u][:, None, :] - item[c]).norm(dim=-1),
                            lambda u: index.candidates(ranking[u.numpy(), :2]),
                            data, "test", [20])
    m = res.metrics
    assert round(m["recall@20"], 4) == 0.1037
    assert round(m["precision@20"], 4) == 0.0156
    assert round(m["hr@20"], 4) == 0.2672
    assert round(m["arhr@20"], 4) == 0.0653
    assert m["pool_size"] == pytest.approx(175.5, abs=0.05)


@pytest.mark.realdata
@pytest.mark.skipif(not MIRROR, reason="RECBENCH_MIRROR is not set")
@pytest.mark.parametrize("experiment", ["gl_attention_yelp_madison",
                                        "gl_attention_sound_yelp_madison"])
def test_short_real_run_on_madison(tmp_path, experiment):
    from recbench.data.datasets import get_dataset
    from recbench.data.fetch import fetch
    from recbench.data.prepare import DataPaths
    from recbench.experiment import load_experiment
    from recbench.runner import train_run
    from recbench.runs import read_metrics

    paths = DataPaths(tmp_path / "data")
    fetch(get_dataset("yelp-madison"), paths.raw, Path(MIRROR))
    cfg = load_experiment(Path(f"experiments/{experiment}.yaml"), [
        "model.global_epochs=1", "model.local_epochs=1", "model.attention_epochs=1",
        "model.extra_representations=[LAP]", "model.report_candidates=[]", "eval.k=[15]",
        "train.num_threads=1", "seeds=[0]"])
    run = train_run(cfg.model_copy(update={"seed": 0}), paths, tmp_path / "runs")
    test = read_metrics(run)["test"]
    assert 0.0 < test["recall@15"] < 1.0
    assert 0.0 < test["candidate_fraction"] < 0.5  # K = 2 of M = 20 clusters
    assert test["recall@15|AD"] == test["recall@15"] and "recall@15|LAP" in test
    if "sound" in experiment:  # validation carve-out, attention hold-out, final valid metrics
        extra = read_metrics(run)["extra"]
        assert extra["attention_holdout"] > 0 and "recall@15|LAP" in extra["valid"]


# ---- the two variants and their switches ---------------------------------------------------
def tiny_valid_data(seed: int = 0) -> Dataset:
    """tiny_data with one training row per user moved to validation."""
    data = tiny_data(seed=seed, per_user=10)
    g = data.g
    u = g.edges(etype="rates")[0]
    train = g.edges["rates"].data["train"].clone()
    valid = torch.zeros_like(train)
    for user in range(data.num_users):
        rows = torch.nonzero((u == user) & train).flatten()
        valid[rows[0]], train[rows[0]] = True, False
    g.edges["rates"].data["train"], g.edges["rates"].data["valid"] = train, valid
    return data


def test_variant_sets_switch_defaults_and_explicit_keys_win():
    paper = _gla_cfg(variant="paper")
    assert (paper.local_mining, paper.attention_fit, paper.stage_patience) == (
        "filtered", "train", None)
    sound = _gla_cfg(variant="sound")
    assert (sound.local_mining, sound.attention_fit, sound.stage_patience) == (
        "unfiltered", "holdout", 10)
    assert (paper.blend, paper.alpha_from, sound.blend, sound.alpha_from) == (
        "vectors", "pair", "scores", "pair")
    assert _gla_cfg(variant="sound", attention_fit="uniform").attention_fit == "uniform"
    assert gla.GLAttentionConfig(name="gl_attention").variant == "sound"


@pytest.mark.parametrize("bad", [{"variant": "fast"}, {"local_mining": "hard"},
                                 {"attention_fit": "valid"}, {"attention_holdout": 1.5},
                                 {"stage_patience": 0}])
def test_config_rejects_bad_switch_values(bad):
    with pytest.raises(ValueError):
        _gla_cfg(**bad)


def test_config_error_is_one_clear_line():
    from recbench.errors import ConfigError
    from recbench.experiment import validate

    raw = {"name": "x", "dataset": {"name": "ml-100k"},
           "model": {"name": "gl_attention", "variant": "fast"}}
    with pytest.raises(ConfigError) as err:
        validate(raw, "x.yaml")
    assert "variant" in str(err.value) and "\n" not in str(err.value)


def test_unfiltered_mining_keeps_every_unobserved_in_cluster_pair():
    rng = np.random.default_rng(0)
    uv, iv = rng.normal(size=(4, 3)), rng.normal(size=(12, 3))
    cent = np.stack([iv[:6].mean(0), iv[6:].mean(0)])
    assign = np.array([0] * 6 + [1] * 6)
    users, items = np.array([0, 0, 1, 2, 3]), np.array([0, 7, 2, 9, 4])
    seen = samplers.SeenIndex(torch.from_numpy(users), torch.from_numpy(items), 12)
    args = (uv, iv, cent, assign, users, items, seen, 2, 20)
    loose = gla.mine_local_triplets(*args, np.random.default_rng(1), filtered=False)
    hard = gla.mine_local_triplets(*args, np.random.default_rng(1), filtered=True)
    assert len(loose) > len(hard) > 0
    assert not seen.contains(torch.from_numpy(loose[:, 0]), torch.from_numpy(loose[:, 2])).any()
    # filtered ⊂ unfiltered (same draws), and unfiltered keeps all 20 draws minus seen ones
    assert {tuple(t) for t in hard} <= {tuple(t) for t in loose}


def _fit_on(data: Dataset, cfg: gla.GLAttentionConfig, seed: int = 0):
    trainer = glt.make_gl_attention_trainer(cfg, ctx_for(data, seed))
    return trainer, drive(trainer)


def test_sound_variant_holds_out_positives_for_the_attention():
    cfg = _gla_cfg(variant="sound", representation="AD", extra_representations=["GD", "LP"],
                   attention_holdout=0.25, global_epochs=4, local_epochs=3, attention_epochs=3,
                   stage_patience=2)
    trainer, hist = _fit_on(tiny_valid_data(), cfg)
    n_train = len(trainer.users)
    assert len(trainer.held) == round(0.25 * n_train)
    assert len(trainer.rep_users) + len(trainer.held) == n_train
    held = {tuple(p) for p in trainer.held.tolist()}
    rep = set(zip(trainer.rep_users.tolist(), trainer.rep_items.tolist()))
    assert not held & rep  # the representation nets never see the hold-out positives
    assert not held & {(int(u), int(p)) for u, p, _ in trainer.local.tolist()}
    assert any("valid_recall@5|AD|stage" in h for h in hist)  # the attention stage selects per head
    extra = trainer.extra_metrics()
    assert "recall@5|AD" in extra["valid"] and "recall@5|LP" in extra["valid"]
    test = trainer.evaluate("test").metrics
    assert test["recall@5|AD"] == test["recall@5"]


def test_uniform_attention_trains_no_head_and_blends_equally():
    cfg = _gla_cfg(variant="sound", representation="AP", attention_fit="uniform",
                   blend="vectors", global_epochs=2, local_epochs=2, stage_patience=None,
                   attention_select="head")
    trainer, _ = _fit_on(tiny_valid_data(), cfg)
    assert [s.name for s in trainer.stages()] == ["global", "local"]
    assert len(trainer.held) == 0
    scorer = trainer.model.scorer("AP")
    a = scorer.alpha(torch.tensor([0, 1]), torch.tensor([[0, 1, 2], [3, 4, 5]]))
    assert torch.allclose(a, torch.full_like(a, 0.25))
    gu, gi = trainer.model.space_tables(gla.SPACES["AP"])
    items = torch.tensor([[0, 5, 9]])
    expected = (gu[0].mean(0)[None] * gi[items[0]].mean(1)).sum(-1)
    assert torch.allclose(scorer(torch.tensor([0]), items)[0], expected, atol=1e-5)
    assert torch.allclose(scorer.all_items(torch.tensor([0]))[0, items[0]], expected, atol=1e-5)


def test_stage_early_stopping_restores_each_members_best_weights():
    cfg = _gla_cfg(variant="sound", representation="GAD", global_epochs=12, local_epochs=1,
                   attention_epochs=4, stage_patience=1)
    trainer = glt.make_gl_attention_trainer(cfg, ctx_for(tiny_valid_data()))
    stages = trainer.stages()
    assert stages[0].monitors == {"GD": "recall@5|GD|stage", "GP": "recall@5|GP|stage"}
    seen: dict[str, list] = {"GD": [], "GP": []}  # (validation score, weights) after each epoch
    end_stage = trainer.end_stage

    def spy(stage, best_epochs):
        if stage == "global":  # the loop restored each member's best weights before this
            for name, got in seen.items():
                best = max(range(len(got)), key=lambda i: got[i][0])  # first of equals
                assert best_epochs[name] == best
                state = trainer.model.nets[name].state_dict()
                assert all(torch.equal(state[k], v) for k, v in got[best][1].items())
        end_stage(stage, best_epochs)

    evaluate = trainer.evaluate

    def record(split):
        res = evaluate(split)
        if trainer.current == "global":
            for name in seen:
                seen[name].append((res.metrics[f"recall@5|{name}|stage"],
                                   copy.deepcopy(trainer.model.nets[name].state_dict())))
        return res

    trainer.end_stage, trainer.evaluate = spy, record
    hist = drive(trainer)
    assert len([h for h in hist if h["stage"] == 0.0]) < 12  # patience 1: it ends early here
    assert min(h["epoch"] for h in hist if h["stage"] == 1.0) == 12  # the next starts on time
    assert trainer.extra_metrics()["stage_best_epochs"]["global"].keys() == {"GD", "GP"}


def test_paper_variant_is_unchanged_by_the_sound_switches():
    """variant paper = the explicit paper switches; sound-only keys do not touch it."""
    a, _ = _fit(_gla_cfg(variant="paper"), seed=2)
    b, _ = _fit(_gla_cfg(variant="sound", local_mining="filtered", attention_fit="train",
                         stage_patience=None, blend="vectors", attention_select="head"),
                seed=2)
    assert a.evaluate("test").metrics == b.evaluate("test").metrics


@pytest.mark.parametrize("distance", [False, True])
def test_score_blend_scorer_matches_per_space_scores(distance: bool):
    torch.manual_seed(0)
    gu, gi = torch.randn(5, 3, 4), torch.randn(7, 3, 4)
    att = gla.AttentionNet(3, 4, depth=1)
    scorer = gla.Scorer.from_tables(gu, gi, att, distance, scores=True)
    users, items = torch.tensor([0, 3]), torch.tensor([[1, 2, 6], [0, 4, 5]])
    a = scorer.alpha(users, items)
    u, i = gu[users][:, None], gi[items]
    per = -(u - i).norm(dim=-1) if distance else (u * i).sum(-1)  # (B, P, R)
    expected = (a * per).sum(-1)
    assert torch.allclose(scorer(users, items), expected, atol=1e-5)
    full = scorer.all_items(users)
    assert torch.allclose(full.gather(1, items), expected, atol=1e-5)


def test_score_blend_trains_the_heads():
    cfg = _gla_cfg(variant="sound", representation="AD", extra_representations=["AP"],
                   blend="scores", stage_patience=None, global_epochs=3, local_epochs=2,
                   attention_epochs=4, attention_holdout=0.3)
    trainer = glt.make_gl_attention_trainer(cfg, ctx_for(tiny_valid_data()))
    before = copy.deepcopy(trainer.model.heads.state_dict())
    hist = [trainer.train_epoch(e) for e in range(trainer.num_epochs)]
    after = trainer.model.heads.state_dict()
    for head in ("AD", "AP"):  # (a space's f may sit in dead ReLUs on tiny data)
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(head))
    assert np.isfinite(hist[-1]["loss_AP"]) and np.isfinite(hist[-1]["loss_AD"])
    assert trainer.model.scorer("AD").scores
    assert np.isfinite(trainer.evaluate("test").metrics["recall@5"])


def test_user_alpha_is_one_mixture_per_user_and_starts_uniform():
    torch.manual_seed(0)
    gu, gi = torch.randn(5, 3, 4), torch.randn(7, 3, 4)
    att = gla.AttentionNet(3, 4, depth=1, user_only=True)
    scorer = gla.Scorer.from_tables(gu, gi, att, distance=False, scores=True)
    users, items = torch.tensor([0, 3]), torch.tensor([[1, 2, 6], [0, 4, 5]])
    assert torch.allclose(scorer.alpha(users, items), torch.full((2, 3, 3), 1 / 3))
    with torch.no_grad():
        att.query.normal_()
    scorer = gla.Scorer.from_tables(gu, gi, att, distance=True, scores=False)
    a = scorer.alpha(users, items)
    assert torch.allclose(a, a[:, :1].expand_as(a))  # the same α for every item of a user
    assert not torch.allclose(a[0, 0], a[1, 0])
    full = scorer.all_items(users)
    assert torch.allclose(full.gather(1, items), scorer(users, items), atol=1e-5)
    cfg = _gla_cfg(variant="sound", representation="AP", alpha_from="user", blend="scores",
                   stage_patience=None, global_epochs=2, local_epochs=1, attention_epochs=3)
    trainer, hist = _fit_on(tiny_valid_data(), cfg)
    assert trainer.model.heads["AP"].query.abs().sum() > 0 and np.isfinite(hist[-1]["loss_AP"])


def test_fixed_choice_scores_with_one_space_a_uniform_alpha_or_the_ensemble():
    torch.manual_seed(0)
    model = gla.GLAttention(5, 7, "AP", emb_dim=8, hidden_dims=[8], out_dim=6, num_clusters=2,
                            attention_depth=1, normalize=False, blend_scores=True)
    users, items = torch.tensor([0, 3]), torch.tensor([[1, 2, 6], [0, 4, 5]])
    head = model.heads["AP"]
    head.choice.fill_(0)  # GD, scored as GD is (distance), not by AP's product
    assert torch.equal(model.scorer("AP")(users, items), model.scorer("GD")(users, items))
    head.choice.fill_(head.UNIFORM)
    a = model.scorer("AP").alpha(users, items)
    assert torch.allclose(a, torch.full_like(a, 0.25))
    head.choice.fill_(head.ENSEMBLE)  # each space in its own metric, standardised per user
    z = []
    for space in gla.SPACES["AP"]:
        full = model.scorer(space).all_items(torch.arange(5))
        z.append((full - full.mean(1, keepdim=True)) / full.std(1, keepdim=True))
    expected = sum(z)
    ens = model.scorer("AP")
    assert torch.allclose(ens(users, items), expected[users[:, None], items], atol=1e-4)
    assert torch.allclose(ens.all_items(users), expected[users], atol=1e-4)
    head.choice.fill_(head.UNIFORM)
    copy_ = gla.GLAttention(5, 7, "AP", emb_dim=8, hidden_dims=[8], out_dim=6, num_clusters=2,
                            attention_depth=1, normalize=False, blend_scores=True)
    copy_.load_state_dict(model.state_dict())  # the choice travels with the checkpoint
    assert copy_.heads["AP"].is_uniform


@pytest.mark.parametrize("select", ["head", "validation", "subsets"])
def test_attention_select_never_ranks_below_a_single_space_on_validation(select: str):
    cfg = _gla_cfg(variant="sound", representation="AD",
                   extra_representations=["AP", "GD", "GP", "LD", "LP"], attention_select=select,
                   stage_patience=2, global_epochs=4, local_epochs=2, attention_epochs=2,
                   attention_holdout=0.3)
    trainer, _ = _fit_on(tiny_valid_data(), cfg)
    choices = trainer.extra_metrics()["alpha_choice"]
    valid = trainer.extra_metrics()["valid"]
    if select == "head":
        assert choices == {"AD": "head", "AP": "head"} and not trainer.select_scores
        return
    pairs = {"ensemble(GD+GP)", "ensemble(LD+LP)", "ensemble(GD+LD)", "ensemble(GP+LP)",
             "ensemble(GD+LP)", "ensemble(GP+LD)"}
    triples = {"ensemble(GD+GP+LD)", "ensemble(GD+GP+LP)", "ensemble(GD+LD+LP)",
               "ensemble(GP+LD+LP)"}
    for head in ("AD", "AP"):
        scores = trainer.select_scores[head]
        subsets = pairs | triples if select == "subsets" else set()
        assert set(scores) == {"head", "uniform", "ensemble", "GD", "GP", "LD", "LP"} | subsets
        assert scores[choices[head]] == max(scores.values())
        assert valid[f"recall@5|{head}"] == pytest.approx(max(scores.values()))
        assert all(valid[f"recall@5|{head}"] >= valid[f"recall@5|{s}"] - 1e-9
                   for s in ("GD", "GP", "LD", "LP"))
    assert _gla_cfg(variant="paper").attention_select == "head"


def test_a_subset_ensemble_scores_its_members_only_and_survives_a_checkpoint():
    """choice = SUBSET − bitmask: the ensemble of those spaces, equal to an EnsembleScorer
    built by hand over them, and carried by the state dict."""
    model = gla.GLAttention(5, 7, "AD", emb_dim=8, hidden_dims=[8], out_dim=6, num_clusters=2,
                            attention_depth=1, normalize=False, blend_scores=True)
    head = model.heads["AD"]
    head.choice.fill_(head.subset_code([2, 3]))  # LD + LP
    assert head.ensemble_members() == [2, 3] and head.is_ensemble
    users, items = torch.arange(5), torch.arange(7)[None].expand(5, -1)
    want = gla.EnsembleScorer([model.scorer("LD"), model.scorer("LP")])(users, items)
    assert torch.allclose(model.scorer("AD")(users, items), want)
    copy_ = gla.GLAttention(5, 7, "AD", emb_dim=8, hidden_dims=[8], out_dim=6, num_clusters=2,
                            attention_depth=1, normalize=False, blend_scores=True)
    copy_.load_state_dict(model.state_dict())
    assert copy_.heads["AD"].ensemble_members() == [2, 3]
    head.choice.fill_(head.ENSEMBLE)
    assert head.ensemble_members() == [0, 1, 2, 3]
