"""PinSage (Ying et al., KDD 2018): importance-sampled neighbourhoods, weighted aggregation.

Neighbourhoods come from random walks (``dgl.sampling.PinSAGESampler``): for every item, the
``num_neighbors`` items most visited by item→user→item walks, with their visit counts as
importance α; users get the same from user→item→user walks. One layer (the paper's Algorithm 1):
n_v = Σ_u α_uv ReLU(Q h_u + q) / Σ_u α_uv;  z_v = ReLU(W [h_v ; n_v] + w);  z_v ← z_v / ‖z_v‖.
The last layer has no ReLU; scores are z_u · z_i / τ (cosines sharpened by ``temperature``).
Training resamples the walks every epoch; evaluation uses one fixed walk graph (drawn at
construction) so a reloaded run scores the same. Negatives default to PinSage's curriculum:
uniform first, then hard ones (the highest-scoring of a random candidate pool).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from recbench.config import NonNegInt, PosFloat, PosInt, Share
from recbench.data.graph import ITEM, RATED_BY, RATES, USER, split_view
from recbench.models.gnn.base import (
    GNNArchitecture,
    GraphRecommender,
    build_gnn,
    make_graph_trainer,
    num_outputs,
)
from recbench.seeding import drawing_from
from recbench.train.api import RunContext


class PinSageConfig(GNNArchitecture):
    name: Literal["pinsage"]
    num_layers: NonNegInt = 2
    negative_sampler: Literal["uniform", "popularity", "hard"] = "hard"
    hard_warmup_epochs: NonNegInt = 5
    hard_pool: PosInt = 32
    num_traversals: PosInt = 2  # hops of one walk (item→user→item counts as one)
    termination_prob: Share = 0.5
    num_random_walks: PosInt = 20
    num_neighbors: PosInt = 10  # top-T neighbours by visit count
    temperature: PosFloat = 0.2
    resample_every_epoch: bool = True


class ImportanceWalks:
    """Random-walk neighbourhoods of every user and item, as one graph over users + items."""

    def __init__(self, data_g, num_traversals: int, termination_prob: float,
                 num_random_walks: int, num_neighbors: int):
        import dgl
        from dgl.sampling import PinSAGESampler

        view = split_view(data_g, "train", keep_social=False)
        bip = dgl.heterograph({RATES: view.edges(etype=RATES), RATED_BY: view.edges(etype=RATED_BY)},
                              {USER: view.num_nodes(USER), ITEM: view.num_nodes(ITEM)})
        self.num_users, self.num_items = bip.num_nodes(USER), bip.num_nodes(ITEM)
        args = (num_traversals, termination_prob, num_random_walks, num_neighbors)
        self.items = PinSAGESampler(bip, ITEM, USER, *args)
        self.users = PinSAGESampler(bip, USER, ITEM, *args)

    def sample(self):
        """``src → dst`` importance edges, ``w`` = visit counts normalised per destination."""
        import dgl

        fi = self.items(torch.arange(self.num_items))
        fu = self.users(torch.arange(self.num_users))
        si, di = fi.edges()
        su, du = fu.edges()
        off = self.num_users
        src = torch.cat([su, si + off])
        dst = torch.cat([du, di + off])
        counts = torch.cat([fu.edata["weights"], fi.edata["weights"]]).float()
        n = self.num_users + self.num_items
        total = torch.zeros(n).index_add_(0, dst, counts)
        g = dgl.graph((src, dst), num_nodes=n)
        g.edata["w"] = counts / total[dst].clamp(min=1e-12)
        g.edata["kind"] = torch.zeros(len(src), dtype=torch.int64)
        return g


class PinSage(GraphRecommender):
    """Output ``(num_outputs, emb_dim)``, L2-normalised and scaled by ``1/sqrt(temperature)``."""

    def __init__(self, *, generator: torch.Generator, num_layers: int = 2,
                 temperature: float = 0.2, walks: ImportanceWalks | None = None,
                 resample: bool = True, **kwargs):
        super().__init__(generator=generator, num_layers=num_layers, **kwargs)
        dim = self.emb.embedding_dim
        with drawing_from(generator):  # nn.Linear's own init
            self.q = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
            self.w = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(num_layers))
        self.scale = temperature ** -0.5
        self.walks, self.resample = walks, resample
        self.eval_graph = None

    def start_epoch(self, epoch: int) -> None:
        if self.walks is not None and self.resample and epoch > 0:
            self.set_graph(self.walks.sample().to(self.emb.weight.device))

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        train_graph = self.graph
        if not self.training and self.eval_graph is not None:
            self.graph = self.eval_graph
        try:
            return super().embed()
        finally:
            self.graph = train_graph

    def propagate(self, graphs: list, h: torch.Tensor) -> torch.Tensor:
        import dgl

        n_out = num_outputs(graphs[-1])
        for index, g in enumerate(graphs):
            msg = torch.relu(self.q[index](self.message_dropout(h)))
            neigh = dgl.ops.u_mul_e_sum(g, msg, self.edge_weight(g))
            z = self.w[index](torch.cat([h[:len(neigh)], neigh], dim=1))
            if index < len(graphs) - 1:
                z = torch.relu(z)
            h = F.normalize(z, dim=1)
        return h[:n_out] * self.scale


def make_pinsage_trainer(cfg: PinSageConfig, ctx: RunContext):
    walks = ImportanceWalks(ctx.data.g, cfg.num_traversals, cfg.termination_prob,
                            cfg.num_random_walks, cfg.num_neighbors)
    model = build_gnn(PinSage, cfg=cfg, ctx=ctx, temperature=cfg.temperature, walks=walks,
                      resample=cfg.resample_every_epoch)
    model.eval_graph = walks.sample().to(ctx.device)
    return make_graph_trainer(model, cfg, ctx, model.eval_graph)
