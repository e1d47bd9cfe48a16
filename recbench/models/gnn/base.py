"""What every GNN recommender shares: the message graph, the ego table, the architecture, the builder.

Users and items live in one homogeneous node space (users ``0..U-1``, items ``U..U+I-1``) so a
propagation is one sparse kernel call per layer over the bidirected training graph, whose
symmetric norm ``1/sqrt(d_u d_i)`` is precomputed once: as edge data ``w`` and, because it
factors into a source and a destination term, as node data ``ns``/``nd``. :meth:`spmm` then
runs DGL's ``copy_u_sum`` g-SpMM between two row scalings (GraphConv's way, and on CPU much
faster than the weighted ``u_mul_e_sum`` kernel: docs/benchmarks.md); edge dropout and non-factorising
weights (social edges) take ``u_mul_e_sum``. Sampled blocks and Cluster-GCN subgraphs carry
their own ``w``/``nd`` (``train/samplers.py``), so a model's ``propagate`` runs unchanged on the
full graph, on a list of blocks, or on a cluster subgraph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from recbench.config import NonNegFloat, NonNegInt, PosInt, Share, Strict
from recbench.data.graph import FOLLOWS, RATES, split_view
from recbench.models.gnn.full_step import FullGraphBPR, StepFactory
from recbench.native.choice import choose_kernels
from recbench.seeding import continue_globally, drawing_from, init_generator
from recbench.train.api import PairwiseModel, RunContext, TrainerBase

Training = Literal["full", "neighbor", "cluster"]


class GNNArchitecture(Strict):
    """What every GNN model config holds (each inherits it): the encoder's shape and
    regularisers, its objective and negatives, and how its graph is fed (full, sampled
    blocks, clusters). The loop's settings (lr, epochs, batch size) live in ``TrainConfig``."""

    emb_dim: PosInt = 64
    num_layers: NonNegInt = 3
    init_std: NonNegFloat = 0.1
    loss: Literal["bpr", "nce"] = "bpr"
    num_negatives: PosInt = 1  # k negatives per positive (NCE: sampled softmax over 1 + k)
    negative_sampler: Literal["uniform", "popularity", "hard"] = "uniform"
    hard_pool: PosInt = 16  # hard sampler: candidates per user, the highest-scoring is kept
    hard_warmup_epochs: NonNegInt = 0  # uniform negatives for the first epochs (PinSage's curriculum)
    reg: NonNegFloat = 1e-4  # L2 on the batch's ego embeddings, / batch size (LightGCN's λ)
    edge_dropout: Share = 0.0  # drop edges (rescale the rest) in every training propagation
    message_dropout: Share = 0.0  # dropout on each layer's output messages
    training: Training = "full"
    fanouts: list[Annotated[int, Field(ge=-1)]] = Field(  # neighbor: per layer, -1 all
        default_factory=lambda: [10, 10, 10])
    num_clusters: PosInt = 32  # cluster: METIS parts of the training graph
    clusters_per_batch: PosInt = 4  # cluster: parts merged into one subgraph per step
    sparse_embeddings: bool = False  # sampled training: sparse grads + SparseAdam on the ego table

    @model_validator(mode="after")
    def _fanouts_fit_layers(self) -> GNNArchitecture:
        """Found here, when the file is read, rather than when the sampler is built."""
        if 0 in self.fanouts:
            raise ValueError(f"fanouts {self.fanouts}: 0 samples no neighbour; give a count "
                             "of at least 1 per layer, or -1 for all neighbours")
        if self.training == "neighbor" and self.fanouts and len(self.fanouts) != self.num_layers:
            raise ValueError(f"fanouts has {len(self.fanouts)} entries for num_layers "
                             f"{self.num_layers}; give one per layer (or set num_layers)")
        return self


def symmetric_norm(src: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``1/sqrt(deg(src) deg(dst))`` per edge of a symmetric edge list (isolated nodes guarded)."""
    deg = torch.bincount(dst, minlength=num_nodes).float().clamp(min=1)
    return deg[src].rsqrt() * deg[dst].rsqrt()


def _social_pairs(view, num_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The follow edges, symmetrised and de-duplicated, self-follows dropped."""
    if FOLLOWS not in view.canonical_etypes or view.num_edges(FOLLOWS) == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    a, b = view.edges(etype=FOLLOWS)
    keep = a != b
    a, b = a[keep], b[keep]
    keys = torch.unique(torch.cat([a * num_users + b, b * num_users + a]))
    return keys // num_users, keys % num_users


def interaction_graph(data_g, num_users: int, num_items: int, social: bool = False,
                      social_weight: float = 1.0):
    """Bidirected training graph over users + items, edge data ``w`` (symmetric norm), ``kind``.

    ``kind`` is 0 for interaction edges and 1 for social (user-user) edges. With ``social``,
    the dataset's follow edges are symmetrised, de-duplicated and normalised on their own
    degrees, scaled by ``social_weight`` (the two relations are normalised separately, as in
    SocialLGN, so adding friends does not shrink the interaction messages). Without social
    edges the norm also rides as node data ``ns``/``nd`` for the fast kernel.
    """
    import dgl

    view = split_view(data_g, "train", keep_social=social)
    u, i = view.edges(etype=RATES)
    n = num_users + num_items
    src = torch.cat([u, i + num_users])
    dst = torch.cat([i + num_users, u])
    w = symmetric_norm(src, dst, n)
    kind = torch.zeros(len(src), dtype=torch.int64)
    sa, sb = _social_pairs(view, num_users) if social else (src[:0], dst[:0])
    src, dst = torch.cat([src, sa]), torch.cat([dst, sb])
    w = torch.cat([w, social_weight * symmetric_norm(sa, sb, n)])
    kind = torch.cat([kind, torch.ones(len(sa), dtype=torch.int64)])
    g = dgl.graph((src, dst), num_nodes=n)
    g.edata["w"] = w
    g.edata["kind"] = kind
    if len(sa) == 0:
        norm = torch.bincount(dst, minlength=n).float().clamp(min=1).rsqrt()
        g.ndata["ns"], g.ndata["nd"] = norm, norm.clone()
    return g


def social_graph(data_g, num_users: int, num_items: int, social_weight: float = 1.0):
    """Only the (symmetrised) follow edges over the same node space, norm as ``ns``/``nd``."""
    import dgl

    view = split_view(data_g, "train", keep_social=True)
    sa, sb = _social_pairs(view, num_users)
    n = num_users + num_items
    g = dgl.graph((sa, sb), num_nodes=n)
    g.edata["w"] = social_weight * symmetric_norm(sa, sb, n)
    g.edata["kind"] = torch.ones(len(sa), dtype=torch.int64)
    norm = torch.bincount(sb, minlength=n).float().clamp(min=1).rsqrt()
    g.ndata["ns"], g.ndata["nd"] = norm, social_weight * norm
    return g


def num_outputs(g) -> int:
    """Rows a propagation over ``g`` produces: its destination nodes (blocks) or all nodes."""
    return g.num_dst_nodes() if g.is_block else g.num_nodes()


class GraphRecommender(PairwiseModel):
    """Ego embeddings for users and items + a graph encoder; scores are dot products.

    Subclasses implement ``propagate(graphs, h) -> (num_outputs(graphs[-1]), out_dim)``, where
    ``graphs`` holds one graph per layer (the same full graph repeated, or sampled blocks).
    """

    def __init__(self, *, num_users: int, num_items: int, generator: torch.Generator,
                 emb_dim: int = 64, num_layers: int = 3, init_std: float = 0.1,
                 edge_dropout: float = 0.0, message_dropout: float = 0.0, sparse: bool = False):
        super().__init__()
        self.num_users, self.num_items, self.num_layers = num_users, num_items, num_layers
        with drawing_from(generator):  # nn.Embedding's own N(0, 1) draw, kept in the stream
            self.emb = nn.Embedding(num_users + num_items, emb_dim, sparse=sparse)
        nn.init.normal_(self.emb.weight, std=init_std, generator=generator)
        self.edge_dropout = edge_dropout
        self.message_dropout = nn.Dropout(message_dropout)
        self.graph = None

    def set_graph(self, g) -> None:
        """The full message graph (built once by the trainer's builder, on the model's device)."""
        self.graph = g

    def forward(self, graphs: list, input_nodes: torch.Tensor, return_ego: bool = False):
        """Propagate from the ego rows of ``input_nodes``; with ``return_ego`` also return the
        output nodes' ego rows (they lead ``input_nodes``, DGL keeps destinations first)."""
        h0 = self.emb(input_nodes)
        h = self.propagate(graphs, h0)
        return (h, h0[:len(h)]) if return_ego else h

    def propagate(self, graphs: list, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def spmm(self, g, h: torch.Tensor) -> torch.Tensor:
        """``Â h`` over the graph's normalised edges: ``(num_outputs(g), d)``."""
        import dgl

        if "ns" in g.srcdata and not (self.training and self.edge_dropout > 0):
            out = dgl.ops.copy_u_sum(g, h * g.srcdata["ns"][:, None])
            return out * g.dstdata["nd"][:, None]
        return dgl.ops.u_mul_e_sum(g, h, self.edge_weight(g))

    def edge_weight(self, g) -> torch.Tensor:
        """The graph's ``w``, with DropEdge (rescaled by 1/(1-p)) while training."""
        w = g.edata["w"]
        if self.training and self.edge_dropout > 0:
            keep = torch.rand(w.shape, device=w.device) >= self.edge_dropout
            w = w * keep / (1 - self.edge_dropout)
        return w

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-graph propagation: ``(user_emb (U, d'), item_emb (I, d'))``."""
        h = self.embed_nodes()
        return h[:self.num_users], h[self.num_users:]

    def embed_nodes(self) -> torch.Tensor:
        """Full-graph propagation, every node's output in one ``(U + I, d')`` table."""
        nodes = torch.arange(self.num_users + self.num_items, device=self.emb.weight.device)
        return self([self.graph] * self.num_layers, nodes)

    def ego(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
            scored: tuple[torch.Tensor, ...] = ()) -> tuple[torch.Tensor, ...]:
        """Layer-0 embeddings of a batch, for the L2 term (LightGCN/NGCF regularise these)."""
        off = self.num_users
        return self.emb(users), self.emb(pos + off), self.emb(neg + off)


def build_gnn(model_cls: type[GraphRecommender], *, cfg: GNNArchitecture, ctx: RunContext,
              **model_kwargs) -> GraphRecommender:
    """The one way a GNN is built: the architecture's shared fields plus the model's own
    ``model_kwargs``, every argument by keyword, initial weights drawn from the run's
    :func:`~recbench.seeding.init_generator`; then the stream goes on in the global generator
    for the training-time dropout (:func:`~recbench.seeding.continue_globally`)."""
    gen = init_generator(ctx.seed)
    model = model_cls(num_users=ctx.data.num_users, num_items=ctx.data.num_items, generator=gen,
                      emb_dim=cfg.emb_dim, num_layers=cfg.num_layers, init_std=cfg.init_std,
                      edge_dropout=cfg.edge_dropout, message_dropout=cfg.message_dropout,
                      sparse=cfg.sparse_embeddings, **model_kwargs)
    continue_globally(gen)
    return model


def make_graph_trainer(model: GraphRecommender, cfg: GNNArchitecture, ctx: RunContext,
                       graph=None, steps: Mapping[str, StepFactory] | None = None
                       ) -> TrainerBase:
    """Attach the training graph and pick the epoch strategy the config asks for. ``steps``:
    a model's written-out full-graph step per path (``{"torch": ..., "native": ...}``), run by
    :class:`FullGraphBPR` on the path ``train.kernels`` declares
    (:func:`~recbench.native.choice.choose_kernels` on the dataset graph's size); without
    them full-graph training is the autograd :class:`PairwiseTrainer`."""
    from recbench.train.trainers import BlockPairwiseTrainer, PairwiseTrainer

    if graph is None:
        graph = interaction_graph(ctx.data.g, ctx.data.num_users, ctx.data.num_items)
    model.set_graph(graph.to(ctx.device))
    common = dict(loss=cfg.loss, num_negatives=cfg.num_negatives,
                  negative_sampler=cfg.negative_sampler, reg=cfg.reg, hard_pool=cfg.hard_pool,
                  hard_warmup_epochs=cfg.hard_warmup_epochs)
    if cfg.training == "full":
        if steps is None:
            return PairwiseTrainer(model, ctx, **common)
        choice = choose_kernels(ctx.train.kernels, ctx.device, ctx.data.g.num_edges())
        return FullGraphBPR(model, ctx, steps, kernel_choice=choice, **common)
    return BlockPairwiseTrainer(model, ctx, mode=cfg.training, fanouts=cfg.fanouts,
                                num_clusters=cfg.num_clusters,
                                clusters_per_batch=cfg.clusters_per_batch, **common)


class ConvEncoder(GraphRecommender):
    """A stack of ``dgl.nn`` convolutions over the ego embeddings (GCN, GAT, GraphSAGE).

    Hidden layers get ``activation``; the last layer is linear so scores can be negative.
    ``combine='mean'`` averages layer 0..L outputs (LightGCN-style layer combination, which we
    found keeps these encoders from over-smoothing on ID embeddings); ``'last'`` is the
    textbook encoder.
    """

    def __init__(self, *, combine: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if combine not in ("mean", "last"):
            raise ValueError(f"combine must be 'mean' or 'last', got '{combine}'")
        self.combine = combine
        self.convs = nn.ModuleList()

    def layer(self, index: int, g, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def edge_mask(self, g) -> torch.Tensor | None:
        """DropEdge as a 0/(1/(1-p)) edge weight while training; None otherwise."""
        if not (self.training and self.edge_dropout > 0):
            return None
        keep = torch.rand(g.num_edges(), device=self.emb.weight.device) >= self.edge_dropout
        return keep.float() / (1 - self.edge_dropout)

    def propagate(self, graphs: list, h: torch.Tensor) -> torch.Tensor:
        n_out = num_outputs(graphs[-1])
        outs = [h[:n_out]]
        for index, g in enumerate(graphs):
            h = self.layer(index, g, self.message_dropout(h))
            if index < len(graphs) - 1:
                h = torch.relu(h)
            outs.append(h[:n_out])
        return torch.stack(outs).mean(0) if self.combine == "mean" else outs[-1]
