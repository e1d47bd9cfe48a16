"""SASRec's own training recipe on the next-item task (issue 33): the sampled binary
cross-entropy, its unrated-negative sampler, one window per user, Adam's betas, the monitor."""

from __future__ import annotations

import math

import pytest
import torch

from recbench.config import EvalConfig, TrainConfig
from recbench.data import next_item_task as nt
from recbench.data.graph import Dataset
from recbench.models import gconv_transform as gm
from recbench.train.api import RunContext
from recbench.train.next_item import sampled_bce
from recbench.train.trainers import make_optimizer
from tests.test_next_item import successor_graph

SASREC = dict(name="gconv_transform", hidden=8, num_heads=1, graph=False, chebyshev=False,
              feedforward=True, item_graph=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _ctx(g, **train) -> RunContext:
    return RunContext(Dataset(g, {"protocol": {"split_seed": 0}}),
                      TrainConfig(**{"batch_size": 16, "epochs": 3, "lr": 2e-2, **train}),
                      EvalConfig(k=[10, 1]), torch.device("cpu"), seed=0)


class FixedScores(torch.nn.Module):
    """score_items → a fixed table of logits per item (the same at every position)."""

    def __init__(self, table: dict[int, float]):
        super().__init__()
        self.table = table

    def score_items(self, inputs, where, items):
        return torch.tensor([[self.table[int(i)] for i in row] for row in items])


def test_sampled_bce_two_positions_by_hand():
    # one window, two target positions: targets 3 and 4, negatives 7 and 9
    inputs = torch.tensor([[0, 1, 2]])
    targets = torch.tensor([[0, 3, 4]])
    where = targets > 0
    model = FixedScores({3: 2.0, 4: -1.0, 7: 0.5, 9: -3.0})
    got = sampled_bce(model, inputs, targets, where, torch.tensor([7, 9]))

    def sig(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    pos = -(math.log(sig(2.0)) + math.log(sig(-1.0))) / 2
    neg = -(math.log(1 - sig(0.5)) + math.log(1 - sig(-3.0))) / 2
    assert float(got) == pytest.approx(pos + neg, rel=1e-6)


def test_unrated_sampler_never_draws_a_training_item_and_is_seeded():
    # 6 users over 12 items, each rated 10 of them: only 2 unrated items a user can draw
    g = successor_graph(num_users=6, num_items=12, length=10)
    seqs = nt.build_sequences(g, nt.NextItemConfig(min_history=1, split="leave_last_out"), 0)
    sampler = nt.UnratedSampler(seqs)
    owner = torch.arange(6).repeat_interleave(500)
    draw = sampler.draw(owner, torch.Generator().manual_seed(1))
    vis = seqs.visible_mask()
    for s in range(6):
        a, b = seqs.starts[s], seqs.starts[s + 1]
        rated = set(seqs.items[a:b][vis[a:b]].tolist())
        got = set(draw[owner == s].tolist())
        assert not got & rated and got <= set(range(1, 13))
        assert got == set(range(1, 13)) - rated  # the reference's pool: all non-training items
    again = sampler.draw(owner, torch.Generator().manual_seed(1))
    assert torch.equal(draw, again)


def test_unrated_sampler_refuses_a_user_who_rated_everything():
    from recbench.errors import DatasetError

    g = successor_graph(num_users=3, num_items=5, length=5)
    seqs = nt.build_sequences(g, nt.NextItemConfig(min_history=1, split="random"), 0)
    seqs.split[:] = nt.SPLIT_CODES["train"]
    with pytest.raises(DatasetError, match="rated every item"):
        nt.UnratedSampler(seqs)


def test_last_per_user_window_holds_each_users_last_training_targets():
    g = successor_graph(num_users=5, num_items=30, length=12)
    seqs = nt.build_sequences(g, nt.NextItemConfig(min_history=1, split="leave_last_out"), 0)
    w = nt.training_windows(seqs, max_len=4, last_per_user=True)
    assert w.inputs.shape == (5, 4) and sorted(w.owner.tolist()) == list(range(5))
    for r, s in enumerate(w.owner.tolist()):
        items = seqs.items[seqs.starts[s]:seqs.starts[s + 1]]  # 12: test last, valid before
        assert w.targets[r].tolist() == items[6:10].tolist()  # the last 4 training targets
        assert w.inputs[r].tolist() == items[5:9].tolist()  # the item before each of them
    every = nt.training_windows(seqs, max_len=4)
    assert int((every.targets > 0).sum()) == len(seqs.index("train")) == 5 * 9


def test_sasrec_recipe_trains_and_learns_the_successor_rule():
    ctx = _ctx(successor_graph(num_users=40), betas=[0.9, 0.98], monitor="sampled_ndcg@10")
    cfg = gm.GConvTransformConfig(**SASREC, next_item=nt.NextItemConfig(
        max_len=6, num_sampled_negatives=5, loss="bce_sampled", windows="last_per_user"))
    tr = gm.make_gconv_transform_trainer(cfg, ctx)
    assert tr.monitor == "sampled_ndcg@10" and tr.opt.param_groups[0]["betas"] == (0.9, 0.98)
    before = tr.evaluate("test").metrics["hr@1"]
    losses = [tr.train_epoch(e)["loss"] for e in range(25)]
    assert losses[-1] < losses[0]
    assert tr.evaluate("test").metrics["hr@1"] > before + 0.3
    # a resumed run draws the negatives the interrupted one would have drawn next
    fresh = gm.make_gconv_transform_trainer(cfg, ctx)
    assert not torch.equal(fresh.neg_gen.get_state(), tr.neg_gen.get_state())
    fresh.load_state_dict(tr.state_dict())
    assert torch.equal(fresh.neg_gen.get_state(), tr.neg_gen.get_state())


def test_sampled_loss_refuses_models_trained_one_sample_at_a_time():
    cfg = gm.GConvTransformConfig(**SASREC, training="samples", next_item=nt.NextItemConfig(
        max_len=6, num_sampled_negatives=5, loss="bce_sampled"))
    with pytest.raises(ValueError, match="bce_sampled"):
        gm.make_gconv_transform_trainer(cfg, _ctx(successor_graph(num_users=10)))


def test_defaults_leave_run_hashes_alone():
    """The new keys at their defaults hash as if absent: no committed run's hash moves."""
    from recbench.config import hash_plain

    plain = {"name": "x", "train": {"lr": 0.001, "betas": [0.9, 0.999]},
             "model": {"name": "gconv_transform",
                       "next_item": {"max_len": 6, "loss": "softmax", "windows": "every_target"}}}
    old = {"name": "x", "train": {"lr": 0.001},
           "model": {"name": "gconv_transform", "next_item": {"max_len": 6}}}
    assert hash_plain(plain) == hash_plain(old)
    plain["train"]["betas"] = [0.9, 0.98]
    assert hash_plain(plain) != hash_plain(old)


def test_adam_betas_reach_the_optimiser():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert make_optimizer(p, TrainConfig()).param_groups[0]["betas"] == (0.9, 0.999)
    assert make_optimizer(p, TrainConfig(betas=(0.9, 0.98))).param_groups[0]["betas"] == (0.9, 0.98)
    with pytest.raises(ValueError):
        TrainConfig(betas=(0.9, 1.0))


def test_sasrec_reduction_builds_no_history_graph_and_scores_the_same(monkeypatch):
    """No layer of the Attention reduction reads the (B, L, L) history graph: it is not built,
    and the states equal those of the old path that built it and threw it away."""
    cfg = gm.GConvTransformConfig(**SASREC, next_item=nt.NextItemConfig(max_len=6))
    torch.manual_seed(0)
    model = gm.GConvTransform(cfg, 20, None).eval()
    items = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    model.graph = True  # the old path: a, live and p built
    old = model.states(items)
    model.graph = False

    def fail(*args, **kwargs):
        raise AssertionError("history graph built")

    monkeypatch.setattr(gm, "history_adjacency", fail)
    assert torch.equal(model.states(items), old)
    scores = model.score_items(items, items > 0, torch.tensor([[7, 8]]).expand(10, 2))
    full = model.score_positions(items, items > 0)
    assert torch.allclose(scores, full[:, [7, 8]], atol=1e-6)


def test_sasrec_layout_is_the_reference_encoder():
    """layout: sasrec (issue 33's gap to the published SASRec): no input/output projection,
    √d-scaled item embeddings, queries from LN(x) with keys/values from x, padded positions
    zeroed, LayerNorm ε 1e-8; causal; refused for any model but the SASRec reduction."""
    cfg = gm.GConvTransformConfig(**SASREC, layout="sasrec",
                                  next_item=nt.NextItemConfig(max_len=6))
    torch.manual_seed(0)
    model = gm.GConvTransform(cfg, 20, None).eval()
    ours = gm.GConvTransform(gm.GConvTransformConfig(
        **SASREC, next_item=nt.NextItemConfig(max_len=6)), 20, None)
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.startswith(("encode", "decode", "norm_in")) for n in names)
    assert {n for n, _ in ours.named_parameters()} - names == {
        "encode.weight", "encode.bias", "decode.weight", "decode.bias",
        "norm_in.weight", "norm_in.bias"}
    assert model.norm_out.eps == 1e-8 and torch.count_nonzero(model.item.weight[0]) == 0
    items = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    h = model.states(items)
    assert torch.equal(model.sasrec_states(items), h)
    later = items.clone()
    later[:, -1] = 9  # a later item never reaches an earlier position
    assert torch.allclose(model.states(later)[:, :-1], h[:, :-1], atol=1e-6)
    # one block by hand: x = Drop(√d E + P) with pads zeroed, Q = LN(x), x = Q + MHA(Q, x, x)
    block, d = model.blocks[0], cfg.hidden
    x = (model.item(items) * d ** 0.5 + model.pos.weight[-6:]) * (items > 0).unsqueeze(-1)
    q = torch.nn.functional.layer_norm(x, (d,), block.norm_attn.weight, block.norm_attn.bias,
                                       1e-8)
    w, bias = block.attn.qkv.weight, block.attn.qkv.bias
    scores = (q @ w[:d].T + bias[:d]) @ (x @ w[d:2 * d].T + bias[d:2 * d]).transpose(1, 2)
    scores = scores / d ** 0.5 + torch.full((6, 6), float("-inf")).triu(1)
    att = block.attn.out(torch.softmax(scores, -1) @ (x @ w[2 * d:].T + bias[2 * d:]))
    mid = block.norm_ffn(q + att)
    expected = (mid + block.ffn(mid)) * (items > 0).unsqueeze(-1)
    assert torch.allclose(block.sasrec(x, torch.ones(6, 6, dtype=torch.bool).tril().expand(
        2, 6, 6)) * (items > 0).unsqueeze(-1), expected, atol=1e-5)
    with pytest.raises(ValueError, match="layout: sasrec"):
        gm.GConvTransformConfig(**{**SASREC, "residual": False}, layout="sasrec")


def test_sasrec_layout_carries_the_full_model():
    """Issue 33: GConv-Transform itself on SASRec's block layout (ours-ref), so the full model
    can be judged against SASRec on one encoder: ChebConv in and out (no Linear where it is
    off), a post-norm graph sub-block per block, causal, learns; the graph is read."""
    cfg = gm.GConvTransformConfig(name="gconv_transform", hidden=8, num_heads=2, layout="sasrec",
                                  next_item=nt.NextItemConfig(max_len=6))
    torch.manual_seed(0)
    model = gm.GConvTransform(cfg, 20, None).eval()
    names = {n for n, _ in model.named_parameters()}
    assert {"encode.linear.weight", "decode.linear.weight", "blocks.0.gconv.offset",
            "blocks.0.norm_graph.weight"} <= names and not any(n.startswith("norm_in")
                                                                for n in names)
    assert model.blocks[0].norm_graph.eps == 1e-8
    items = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    h = model.states(items)
    later = items.clone()
    later[:, -1] = 9
    assert torch.allclose(model.states(later)[:, :-1], h[:, :-1], atol=1e-6)
    with torch.no_grad():
        model.blocks[0].gconv.offset.fill_(3.0)  # the learned adjacency changes the states
    assert not torch.allclose(model.states(items), h)
    no_cheb = gm.GConvTransform(gm.GConvTransformConfig(
        name="gconv_transform", hidden=8, num_heads=2, layout="sasrec", chebyshev="in",
        next_item=nt.NextItemConfig(max_len=6)), 20, None)
    assert hasattr(no_cheb, "encode") and not hasattr(no_cheb, "decode")
    ctx = _ctx(successor_graph(num_users=40), betas=[0.9, 0.98], monitor="sampled_ndcg@10")
    cfg = cfg.model_copy(update={"next_item": nt.NextItemConfig(
        max_len=6, num_sampled_negatives=5, loss="bce_sampled", windows="last_per_user")})
    tr = gm.make_gconv_transform_trainer(cfg, ctx)
    losses = [tr.train_epoch(e)["loss"] for e in range(15)]
    assert losses[-1] < losses[0]


def test_sasrec_layout_trains_and_keeps_the_default_hash():
    from recbench.config import hash_plain

    ctx = _ctx(successor_graph(num_users=40), betas=[0.9, 0.98], monitor="sampled_ndcg@10")
    cfg = gm.GConvTransformConfig(**SASREC, layout="sasrec", next_item=nt.NextItemConfig(
        max_len=6, num_sampled_negatives=5, loss="bce_sampled", windows="last_per_user"))
    tr = gm.make_gconv_transform_trainer(cfg, ctx)
    before = tr.evaluate("test").metrics["hr@1"]
    losses = [tr.train_epoch(e)["loss"] for e in range(25)]
    assert losses[-1] < losses[0] and tr.evaluate("test").metrics["hr@1"] > before + 0.3
    plain = {"name": "x", "model": {"name": "gconv_transform", "layout": "pre_norm"}}
    assert hash_plain(plain) == hash_plain({"name": "x", "model": {"name": "gconv_transform"}})
    plain["model"]["layout"] = "sasrec"
    assert hash_plain(plain) != hash_plain({"name": "x", "model": {"name": "gconv_transform"}})


def test_symmetric_chebyshev_is_the_textbook_normalisation_and_keeps_the_default_hash():
    """cheb_norm: symmetric (issue 33: the paper's ChebConv formula is lost, spec §2): the
    ChebConvs read D^-1/2 A D^-1/2 (D the row sums) instead of D⁻¹A; the model stays causal;
    the default leaves every cached run's hash unchanged."""
    from recbench.config import hash_plain

    a = torch.tensor([[[1.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.5, 1.0, 1.0]]])
    d = a.sum(-1)
    expected = a / torch.sqrt(d[:, :, None] * d[:, None, :])
    assert torch.allclose(gm.symmetric_normalize(a), expected)
    assert torch.allclose(gm.row_normalize(a).sum(-1), torch.ones(1, 3))
    items = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    sim = torch.rand(21, 21, generator=torch.Generator().manual_seed(0))
    states = {}
    for norm in ("random_walk", "symmetric"):
        cfg = gm.GConvTransformConfig(name="gconv_transform", hidden=8, num_heads=2,
                                      cheb_norm=norm, next_item=nt.NextItemConfig(max_len=6))
        torch.manual_seed(0)
        model = gm.GConvTransform(cfg, 20, sim).eval()
        states[norm] = model.states(items)
        later = items.clone()
        later[:, -1] = 9
        assert torch.allclose(model.states(later)[:, :-1], states[norm][:, :-1], atol=1e-6)
    assert not torch.allclose(states["random_walk"], states["symmetric"])
    plain = {"name": "x", "model": {"name": "gconv_transform", "cheb_norm": "random_walk"}}
    assert hash_plain(plain) == hash_plain({"name": "x", "model": {"name": "gconv_transform"}})
    plain["model"]["cheb_norm"] = "symmetric"
    assert hash_plain(plain) != hash_plain({"name": "x", "model": {"name": "gconv_transform"}})
