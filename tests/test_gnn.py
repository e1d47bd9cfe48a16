"""The GNN family: graph construction, each model's equations, every training switch."""

from __future__ import annotations

import pytest
import torch

from recbench.config import DatasetConfig, EvalConfig, TrainConfig
from recbench.data.graph import RATES
from recbench.models import MODELS
from recbench.models.gnn.base import interaction_graph
from recbench.seeding import seed_everything
from recbench.train.api import RunContext

GNN_MODELS = ["lightgcn", "ngcf", "gcn", "gat", "sage", "pinsage", "social"]


@pytest.fixture
def tiny_data(tiny_paths):
    from recbench.data.prepare import load

    return load(DatasetConfig(name="tiny", protocol="random", test_ratio=0.2, valid_ratio=0.2),
                tiny_paths)


def make_trainer(data, name: str, seed: int = 0, lr: float = 0.02, kernels: str = "auto",
                 **model_args):
    torch.set_num_threads(1)
    spec = MODELS[name]
    if name == "social":
        model_args.setdefault("social", False)  # the tiny dataset has no follow edges
    model_args.setdefault("num_layers", 2)
    model_args.setdefault("emb_dim", 8)
    cfg = spec.config(name=name, **model_args)
    ctx = RunContext(data, TrainConfig(lr=lr, batch_size=32, kernels=kernels),
                     EvalConfig(k=[5]), torch.device("cpu"), seed)
    seed_everything(seed)  # as the loop does: DGL's walks and samplers read its global seed
    return spec.make_trainer(cfg, ctx)


def dense_norm_adj(g) -> torch.Tensor:
    src, dst = g.edges()
    a = torch.zeros(g.num_nodes(), g.num_nodes())
    a[dst, src] = g.edata["w"]
    return a


def test_interaction_graph_holds_only_training_edges_with_symmetric_norm(tiny_data):
    g = tiny_data.g
    users, items = tiny_data.num_users, tiny_data.num_items
    hg = interaction_graph(g, users, items)
    train = int(g.edges[RATES].data["train"].sum())
    assert hg.num_edges() == 2 * train
    src, dst = hg.edges()
    deg = hg.in_degrees().float()
    assert torch.allclose(hg.edata["w"], (deg[src] * deg[dst]).rsqrt())
    assert torch.allclose(hg.edata["w"], hg.ndata["ns"][src] * hg.ndata["nd"][dst])
    u, i = g.edges(etype=RATES)
    held = ~g.edges[RATES].data["train"]
    assert not hg.has_edges_between(u[held], i[held] + users).any()


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_lightgcn_equals_its_matrix_form(tiny_data, dropout):
    """e = Σ_l α_l Â^l e0; the fast copy_u_sum path and the weighted kernel agree."""
    tr = make_trainer(tiny_data, "lightgcn", edge_dropout=dropout)
    model = tr.model.eval()
    a = dense_norm_adj(model.graph)
    e0 = model.emb.weight.detach()
    want, h = e0 / 3, e0
    for _ in range(2):
        h = a @ h
        want = want + h / 3
    with torch.no_grad():
        users, items = model.embed()
        weighted = model.propagate([model.graph] * 2, e0) if dropout == 0 else None
    got = torch.cat([users, items])
    assert torch.allclose(got, want, atol=1e-5)
    if weighted is not None:
        model.edge_dropout, model.training = 1e-9, True  # force the u_mul_e_sum path
        slow = model.propagate([model.graph] * 2, e0)
        assert torch.allclose(slow, want, atol=1e-4)


def test_ngcf_layer_matches_equation(tiny_data):
    tr = make_trainer(tiny_data, "ngcf", num_layers=1)
    model = tr.model.eval()
    a = dense_norm_adj(model.graph)
    e0 = model.emb.weight.detach()
    side = a @ e0
    h1 = torch.nn.functional.leaky_relu(model.w1[0](side + e0) + model.w2[0](side * e0), 0.2)
    want = torch.cat([e0, torch.nn.functional.normalize(h1, dim=1)], dim=1)
    with torch.no_grad():
        got = model.propagate([model.graph], e0)
    assert got.shape == (e0.shape[0], 16)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", GNN_MODELS)
def test_model_contract(tiny_data, name):
    """Loss falls, shapes are right, same seed gives same scores, state_dict round-trips."""
    tr = make_trainer(tiny_data, name)
    tr.hard_warmup = 10  # PinSage's hard negatives would raise the loss when they start
    losses = [tr.train_epoch(e)["bpr"] for e in range(6)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    tr.model.eval()
    with torch.no_grad():
        users, items = tr.model.embed()
    assert users.shape[0] == tiny_data.num_users and items.shape[0] == tiny_data.num_items
    result = tr.evaluate("test")
    assert 0 <= result.metrics["recall@5"] <= 1 and len(result.per_unit["user"]) > 0
    again = make_trainer(tiny_data, name)
    again.hard_warmup = 10
    for e in range(6):
        again.train_epoch(e)
    again.model.eval()
    with torch.no_grad():
        assert torch.allclose(again.model.embed()[0], users)
    fresh = make_trainer(tiny_data, name)  # same seed: PinSage's eval walks depend on it
    fresh.train_epoch(0)
    fresh.model.load_state_dict(tr.model.state_dict())
    fresh.model.eval()
    with torch.no_grad():
        assert torch.allclose(fresh.model.embed()[1], items, atol=1e-6)


@pytest.mark.parametrize("aggregator", ["mean", "pool"])
def test_sage_aggregators_differ(tiny_data, aggregator):
    tr = make_trainer(tiny_data, "sage", aggregator=aggregator)
    assert tr.model.convs[0]._aggre_type == aggregator
    assert tr.train_epoch(0)["bpr"] > 0


def test_gat_is_multi_head(tiny_data):
    tr = make_trainer(tiny_data, "gat", num_heads=2)
    assert tr.model.convs[0]._num_heads == 2
    assert tr.model.convs[0].fc.out_features == 8  # 2 heads × 4, concatenated to emb_dim


@pytest.mark.parametrize("option", [
    {"loss": "nce", "num_negatives": 4},
    {"negative_sampler": "popularity"},
    {"negative_sampler": "hard", "hard_pool": 8},
    {"edge_dropout": 0.2},
    {"message_dropout": 0.2},
    {"reg": 1e-2},
    {"training": "neighbor", "fanouts": [3, 3]},
    {"training": "cluster", "num_clusters": 4, "clusters_per_batch": 2},
    {"training": "neighbor", "fanouts": [-1, -1], "sparse_embeddings": True},
])
def test_training_switches_learn(tiny_data, option):
    tr = make_trainer(tiny_data, "lightgcn", **option)
    loss = "nce" if option.get("loss") == "nce" else "bpr"
    first = tr.train_epoch(0)
    for e in range(1, 8):
        last = tr.train_epoch(e)
    assert last[loss] < first[loss]
    if option.get("reg"):
        assert first["reg"] > 0


def test_neighbor_blocks_with_all_neighbours_equal_full_graph(tiny_data):
    from recbench.train.samplers import NeighborBlocks

    tr = make_trainer(tiny_data, "lightgcn")
    model = tr.model.eval()
    seeds = torch.tensor([0, 3, tiny_data.num_users + 2])
    input_nodes, blocks = NeighborBlocks(model.graph, [-1, -1]).sample(seeds)
    with torch.no_grad():
        got = model(blocks, input_nodes)
        full = torch.cat(model.embed())[seeds]
    assert torch.allclose(got, full, atol=1e-6)


def test_sampled_blocks_reweight_to_full_degree(tiny_data):
    from recbench.train.samplers import NeighborBlocks

    g = make_trainer(tiny_data, "lightgcn").model.graph
    _, blocks = NeighborBlocks(g, [2, 2]).sample(torch.arange(5))
    block = blocks[-1]
    import dgl

    # Σ over the sampled in-edges of a node's weights ≈ Σ over all its in-edges, per node
    ones = torch.ones(block.num_src_nodes(), 1)
    est = dgl.ops.u_mul_e_sum(block, ones, block.edata["w"]).squeeze(1)
    full = dgl.ops.u_mul_e_sum(g, torch.ones(g.num_nodes(), 1), g.edata["w"]).squeeze(1)[:5]
    deg = g.in_degrees()[:5]
    exact = deg <= 2
    assert torch.allclose(est[exact], full[exact], atol=1e-6)


def test_hard_negatives_are_the_top_scored_unseen_candidates():
    from recbench.train.samplers import SeenIndex, hard_negatives

    seen = SeenIndex(torch.tensor([0, 0]), torch.tensor([9, 8]), num_items=10)
    gen = torch.Generator().manual_seed(0)
    neg = hard_negatives(torch.zeros(50, dtype=torch.long), seen,
                         lambda u, c: c.float(), gen, pool=6)
    assert not seen.contains(torch.zeros(50, dtype=torch.long), neg).any()
    assert neg.float().mean() > 6  # the highest id in each pool of 6 is mostly 6 or 7


def test_hard_warmup_uses_uniform_first(tiny_data):
    tr = make_trainer(tiny_data, "lightgcn", negative_sampler="hard", hard_warmup_epochs=2)
    tr.start_epoch(0)
    calls = []
    tr.pair_scores = lambda *a: calls.append(1)  # would be used by the hard sampler
    tr.sample(torch.tensor([0, 1]))
    assert not calls


def test_pinsage_neighbours_are_same_type_and_weights_normalised(tiny_data):
    tr = make_trainer(tiny_data, "pinsage")
    g = tr.model.eval_graph
    src, dst = g.edges()
    users = tiny_data.num_users
    assert torch.equal(src < users, dst < users)
    total = torch.zeros(g.num_nodes()).index_add_(0, dst, g.edata["w"])
    has = g.in_degrees() > 0
    assert torch.allclose(total[has], torch.ones(int(has.sum())), atol=1e-5)


def test_social_edges_change_user_embeddings(tiny_data):
    import dgl

    from recbench.data.graph import FOLLOWS, ITEM, RATED_BY, USER
    from recbench.models.gnn.social import make_social_trainer

    g = tiny_data.g
    users = tiny_data.num_users
    edges = {et: g.edges(etype=et) for et in (RATES, RATED_BY)}
    edges[FOLLOWS] = (torch.arange(users - 1), torch.arange(1, users))
    sg = dgl.heterograph(edges, {USER: users, ITEM: tiny_data.num_items})
    for et in (RATES, RATED_BY):
        sg.edges[et].data.update(g.edges[et].data)
    from recbench.data.graph import Dataset

    data = Dataset(sg, tiny_data.meta)
    spec = MODELS["social"]
    ctx = RunContext(data, TrainConfig(lr=0.02, batch_size=32), EvalConfig(k=[5]),
                     torch.device("cpu"), 0)
    on = make_social_trainer(spec.config(name="social", emb_dim=8, num_layers=2), ctx)
    off = make_social_trainer(spec.config(name="social", emb_dim=8, num_layers=2,
                                          social=False), ctx)
    sampled = make_social_trainer(spec.config(name="social", emb_dim=8, num_layers=2,
                                              training="neighbor", fanouts=[-1, -1]), ctx)
    with torch.no_grad():
        u_on, i_on = on.model.eval().embed()
        u_off, _ = off.model.eval().embed()
        u_s, i_s = sampled.model.eval().embed()
    assert not torch.allclose(u_on, u_off)
    assert torch.allclose(u_on, u_s, atol=1e-5) and torch.allclose(i_on, i_s, atol=1e-5)
    assert sampled.model.graph.edata["kind"].sum() == 2 * (users - 1)


def test_social_without_follow_edges_is_a_config_error(tiny_data):
    from recbench.errors import ConfigError

    with pytest.raises(ConfigError, match="follow edges"):
        make_trainer(tiny_data, "social", social=True)


@pytest.mark.realdata
def test_lightgcn_ml100k_end_to_end(real_paths, tmp_path):
    """5 epochs of LightGCN on ML-100K 80/10/10 beat popularity; lr 0 stops early on valid."""
    import json

    from recbench.experiment import validate
    from recbench.runner import train_run

    base = {"name": "lightgcn-e2e",
            "dataset": {"name": "ml-100k", "protocol": "random", "test_ratio": 0.1,
                        "valid_ratio": 0.111111},
            "model": {"name": "lightgcn", "emb_dim": 32, "num_layers": 2},
            "train": {"epochs": 5, "lr": 0.01, "batch_size": 8192, "num_threads": 1,
                      "patience": 1},
            "eval": {"k": [20]}, "seed": 0}
    run = train_run(validate(base, "e2e"), real_paths, tmp_path / "runs")
    metrics = json.loads((run / "metrics.json").read_text())
    popular = train_run(validate({**base, "name": "pop-e2e", "model": {"name": "most_popular"}},
                                 "e2e"), real_paths, tmp_path / "runs")
    pop = json.loads((popular / "metrics.json").read_text())["test"]["recall@20"]
    assert metrics["test"]["recall@20"] > pop
    frozen = {**base, "train": {**base["train"], "lr": 0.0, "epochs": 6}}
    run = train_run(validate(frozen, "e2e"), real_paths, tmp_path / "runs")
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2  # early stop


@pytest.mark.parametrize("distinct", [True, False])
def test_row_sparse_adam_matches_torch_sparse_adam(distinct):
    """The scale benchmark's optimiser must be SparseAdam's update, only cheaper."""
    from recbench.train.sparse_adam import RowSparseAdam

    gen = torch.Generator().manual_seed(0)
    ours, ref = torch.nn.Embedding(50, 4, sparse=True), torch.nn.Embedding(50, 4, sparse=True)
    ref.weight.data.copy_(ours.weight.data)
    start, touched = ours.weight.detach().clone(), torch.zeros(50, dtype=torch.bool)
    opt_ours, opt_ref = RowSparseAdam(ours.parameters(), lr=0.05), torch.optim.SparseAdam(
        ref.parameters(), lr=0.05)
    for _ in range(10):
        idx = (torch.randperm(50, generator=gen)[:20] if distinct
               else torch.randint(0, 50, (30,), generator=gen))
        idx = idx[idx % 7 != 0]  # rows 0, 7, 14, ... never receive a gradient
        touched[idx] = True
        target = torch.randn(len(idx), 4, generator=gen)
        for emb, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad()
            ((emb(idx) - target) ** 2).sum().backward()
            opt.step()
    assert torch.allclose(ours.weight, ref.weight, atol=1e-6)
    assert torch.equal(ours.weight[~touched], start[~touched])
    assert not torch.allclose(ours.weight[touched], start[touched])


@pytest.mark.parametrize("num_layers,num_heads,spread", [(2, 2, 1.0), (3, 4, 1.0), (2, 2, 400.0)])
def test_gat_full_graph_path_equals_gatconv(num_layers, num_heads, spread):
    """The CSR path (full graph) computes GATConv's function: outputs and every gradient.
    ``spread`` scales the attention vectors so that logits lie hundreds apart: nodes far below
    the per-head bound take their own shift (AttentionAggregate.FAR), nothing underflows."""
    import dgl

    from recbench.models.gnn.gat import GAT

    gen = torch.Generator().manual_seed(0)
    users, items, edges = 30, 25, 300
    u = torch.randint(0, users, (edges,), generator=gen)
    i = torch.randint(0, items, (edges,), generator=gen)
    g = dgl.graph((torch.cat([u, i + users]), torch.cat([i + users, u])),
                  num_nodes=users + items + 2)  # two isolated item nodes
    model = GAT(num_users=users, num_items=items + 2, generator=gen, emb_dim=16,
                num_layers=num_layers, num_heads=num_heads)
    for conv in model.convs:
        conv.bias.data.normal_(generator=gen)
        conv.attn_l.data *= spread
        conv.attn_r.data *= spread
    model.set_graph(g)
    nodes = torch.arange(users + items + 2)
    grads = []
    for graph_is_cached in (True, False):
        model.graph = g if graph_is_cached else None  # None: not the full graph -> GATConv
        model.zero_grad()
        out = model([g] * num_layers, nodes)
        (out ** 2).sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (fast, fast_grads), (ref, ref_grads) = grads
    assert model.full_graph_csr(g) is None  # the second pass really took GATConv's path
    assert torch.allclose(fast, ref, atol=1e-6 * spread)
    for a, b in zip(fast_grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-5 * spread, rtol=1e-4)


def test_gat_attention_dropout_keeps_the_normalised_path():
    """With attention dropout the weights are dropped after normalising (GATConv's order), so
    the full-graph layer keeps EdgeAttention + HeadSpMM; in eval both paths agree."""
    import dgl

    from recbench.models.gnn import gat

    gen = torch.Generator().manual_seed(1)
    users, items, edges = 20, 15, 150
    u = torch.randint(0, users, (edges,), generator=gen)
    i = torch.randint(0, items, (edges,), generator=gen)
    g = dgl.graph((torch.cat([u, i + users]), torch.cat([i + users, u])))
    model = gat.GAT(num_users=users, num_items=items, generator=gen, emb_dim=8, num_layers=2,
                    num_heads=2, edge_dropout=0.5)
    model.set_graph(g)
    conv, csr, feat = model.convs[0], model.full_graph_csr(g), model.emb.weight
    calls = []
    original = gat.AttentionAggregate.forward
    gat.AttentionAggregate.forward = staticmethod(
        lambda *a: calls.append(1) or original(*a))  # type: ignore[method-assign]
    try:
        model.train()
        gat.gat_layer(conv, csr, feat)
        assert not calls
        model.eval()
        fused = gat.gat_layer(conv, csr, feat)
        assert calls
    finally:
        gat.AttentionAggregate.forward = staticmethod(original)  # type: ignore[method-assign]
    conv.attn_drop.p = 0.0
    ref = conv(g, feat).transpose(0, 1)
    assert torch.allclose(fused, ref, atol=1e-6)


@pytest.mark.parametrize("reg,emb_dim", [(0.0, 8), (0.05, 8), (0.05, 16)])
def test_lightgcn_hand_written_gradient_equals_autograds(tiny_data, reg, emb_dim, step):
    """LightGCN's hand-written dL/dE (transposed propagation of the score gradient) is
    autograd's, on the torch and the native step."""
    trainer = make_trainer(tiny_data, "lightgcn", reg=reg, num_layers=3, emb_dim=emb_dim)
    assert uses_step(trainer, "lightgcn", step) and trainer.plain
    idx = torch.randperm(len(trainer.users), generator=torch.Generator().manual_seed(3))[:50]
    u, p = trainer.users[idx], trainer.items[idx]
    n = trainer.sample(u)
    n[:2] = p[:2]
    users_e, items_e = trainer.model.embed()
    ue, pe, ne = users_e[u], items_e[p], items_e[n]
    loss, reg_t = trainer.pair_loss(ue, pe, ne, trainer.model.ego(u, p, n, (ue, pe, ne)))
    (expected,) = torch.autograd.grad(loss + reg_t, [trainer.model.emb.weight])
    got_loss, got_reg = trainer.batch_gradient(u, p, n)
    assert float(got_loss) == pytest.approx(float(loss), rel=1e-6)
    assert float(got_reg) == pytest.approx(float(reg_t), rel=1e-6, abs=1e-12)
    assert torch.allclose(trainer.model.emb.weight.grad, expected, atol=1e-7, rtol=1e-5)


def test_lightgcn_epoch_matches_the_autograd_path_and_dropout_keeps_autograd(tiny_data, step):
    from recbench.train.trainers import PairwiseTrainer

    fast = make_trainer(tiny_data, "lightgcn", reg=0.01)
    assert uses_step(fast, "lightgcn", step)
    slow = make_trainer(tiny_data, "lightgcn", reg=0.01)
    for epoch in range(3):
        a, b = fast.train_epoch(epoch), PairwiseTrainer.train_epoch(slow, epoch)
        assert a["bpr"] == pytest.approx(b["bpr"], rel=1e-5)
    assert torch.allclose(fast.model.emb.weight, slow.model.emb.weight, atol=1e-5)
    assert not make_trainer(tiny_data, "lightgcn", edge_dropout=0.1).plain
    assert not make_trainer(tiny_data, "lightgcn", message_dropout=0.1).plain


@pytest.fixture(params=["torch", "native"])
def step(request, monkeypatch) -> str:
    """Which full-graph BPR step make_trainer builds for LightGCN and NGCF: the torch one
    (``RECBENCH_NATIVE=0``) or the native kernels' (skipped where they do not build)."""
    from recbench.native import library

    if request.param == "torch":
        monkeypatch.setenv("RECBENCH_NATIVE", "0")
    elif library() is None:
        pytest.skip("native kernels do not build here")
    return request.param


def step_class(model: str, step: str) -> type:
    """The step object the one full-graph trainer holds for ``model`` on path ``step``."""
    from recbench.models.gnn.lightgcn import LightGCNStep, NativeLightGCNStep
    from recbench.models.gnn.ngcf import NativeNGCFStep, NGCFStep

    return {("lightgcn", "torch"): LightGCNStep, ("lightgcn", "native"): NativeLightGCNStep,
            ("ngcf", "torch"): NGCFStep, ("ngcf", "native"): NativeNGCFStep}[model, step]


def uses_step(trainer, model: str, step: str) -> bool:
    """The trainer is the one FullGraphBPR, holding ``model``'s step on path ``step``."""
    from recbench.models.gnn.full_step import FullGraphBPR

    return (type(trainer) is FullGraphBPR and type(trainer.step) is step_class(model, step)
            and trainer.step.kernels.path == step == trainer.kernels().path)


@pytest.mark.parametrize("dropout,emb_dim", [(0.0, 8), (0.1, 8), (0.1, 16)])
def test_ngcf_hand_written_gradient_equals_autograds(tiny_data, dropout, emb_dim, step):
    """NGCF's hand-written gradients (ego table, both layers' weights and biases) are
    autograd's, on the torch and the native step (16-d: the native CSR product's vector path);
    the forward draws message dropout's mask as nn.Dropout does, so the loss is the same (bit
    for bit on the torch step, to rounding on the native one)."""
    trainer = make_trainer(tiny_data, "ngcf", reg=0.01, num_layers=2, message_dropout=dropout,
                           emb_dim=emb_dim)
    assert uses_step(trainer, "ngcf", step) and trainer.plain
    loss, got_loss = assert_written_gradient_is_autograds(trainer)
    if step == "torch":
        assert float(got_loss) == float(loss)  # the same forward, bit for bit


def assert_written_gradient_is_autograds(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """A 50-pair batch (two negatives set to their positives) through autograd and through
    ``trainer.batch_gradient``, the dropout masks drawn from the same seed: the losses, L2 terms
    and every parameter's gradient agree. Returns (autograd's loss, the written step's)."""
    model = trainer.model.train()
    idx = torch.randperm(len(trainer.users), generator=torch.Generator().manual_seed(3))[:50]
    u, p = trainer.users[idx], trainer.items[idx]
    n = trainer.sample(u)
    n[:2] = p[:2, None] if n.dim() == 2 else p[:2]
    params = [prm for prm in model.parameters() if prm.requires_grad]
    torch.manual_seed(11)
    users_e, items_e = model.embed()
    ue, pe, ne = users_e[u], items_e[p], items_e[n]
    loss, reg_t = trainer.pair_loss(ue, pe, ne, model.ego(u, p, n, (ue, pe, ne)))
    expected = torch.autograd.grad(loss + reg_t, params)
    torch.manual_seed(11)
    got_loss, got_reg = trainer.batch_gradient(u, p, n)
    assert float(got_loss) == pytest.approx(float(loss), rel=1e-6)
    assert float(got_reg) == pytest.approx(float(reg_t), rel=1e-6, abs=1e-12)
    for prm, want in zip(params, expected, strict=True):
        assert torch.allclose(prm.grad, want, atol=1e-7, rtol=1e-4), prm.shape
    return loss, got_loss


@pytest.mark.parametrize("kernels,negatives", [("auto", 1), ("native", 3)])
def test_ngcf_epoch_matches_the_autograd_path(tiny_data, step, kernels, negatives):
    """Three epochs on the written-out step against the autograd path's, one negative a
    positive and (``train.kernels: native``) three."""
    from recbench.train.trainers import PairwiseTrainer

    args = dict(reg=0.01, message_dropout=0.1, num_negatives=negatives, kernels=kernels)
    fast = make_trainer(tiny_data, "ngcf", **args)
    slow = make_trainer(tiny_data, "ngcf", **args)
    assert type(fast.step) is step_class("ngcf", step) and fast.plain
    for epoch in range(3):
        torch.manual_seed(epoch)
        a = fast.train_epoch(epoch)
        torch.manual_seed(epoch)
        b = PairwiseTrainer.train_epoch(slow, epoch)
        assert a["bpr"] == pytest.approx(b["bpr"], rel=1e-5)
        assert a["reg"] == pytest.approx(b["reg"], rel=1e-5)
    for x, y in zip(fast.model.parameters(), slow.model.parameters(), strict=True):
        assert torch.allclose(x, y, atol=1e-5)
    assert not make_trainer(tiny_data, "ngcf", edge_dropout=0.1).plain


@pytest.mark.parametrize("name", ["lightgcn", "ngcf"])
def test_k_negatives_on_the_written_step_are_autograds_bpr(tiny_data, name, step):
    """Four negatives a positive on the written-out step (``train.kernels: native``): the loss,
    the L2 term and every gradient are the autograd path's BPR over (B, k) negatives, on the
    torch and the native kernels; under ``auto`` the same run stays on autograd (the floats
    recorded runs were trained with)."""
    args = dict(reg=0.01, num_layers=2, emb_dim=16, num_negatives=4)
    if name == "ngcf":
        args["message_dropout"] = 0.1
    assert not make_trainer(tiny_data, name, **args).plain
    trainer = make_trainer(tiny_data, name, kernels="native", **args)
    assert type(trainer.step) is step_class(name, step) and trainer.plain
    assert trainer.sample(trainer.users[:5]).shape == (5, 4)
    assert_written_gradient_is_autograds(trainer)


def test_uniform_negatives_draw_as_retesting_the_whole_batch_would():
    """The sampler re-tests only the draws that hit a seen item; a draw that passed keeps its
    item, so the negatives are the ones re-testing every draw each round gives (the same
    generator calls in the same order) - runs stay identical to those recorded before."""
    from recbench.train import samplers

    def whole_batch(users, seen, gen, num, max_rounds):
        neg = torch.randint(seen.num_items, (len(users), num), generator=gen)
        for _ in range(max_rounds):
            bad = seen.contains(users[:, None].expand_as(neg), neg)
            if not bad.any():
                break
            neg[bad] = torch.randint(seen.num_items, (int(bad.sum()),), generator=gen)
        return neg[:, 0] if num == 1 else neg

    gen = torch.Generator().manual_seed(0)
    for trial in range(10):
        users, items = (torch.rand(30, 20, generator=gen) < 0.6).nonzero(as_tuple=True)
        seen = samplers.SeenIndex(users, items, 20)
        batch = torch.randint(0, 30, (200,), generator=gen)
        for num, rounds in ((1, 20), (4, 20), (1, 2)):
            want = whole_batch(batch, seen, torch.Generator().manual_seed(trial), num, rounds)
            got = samplers.uniform_negatives(batch, seen, torch.Generator().manual_seed(trial),
                                             num, rounds)
            assert torch.equal(got, want)
