"""GCN (Kipf & Welling, ICLR 2017) as an encoder of the user-item graph, scored by dot product.

h^(l+1) = σ(D^-1/2 A D^-1/2 h^(l) W^(l)) with ``dgl.nn.GraphConv(norm='both')``; no self-loops
(users and items only see each other), ReLU between layers, layer outputs combined.
"""

from __future__ import annotations

from typing import Literal

import torch
from dgl.nn import GraphConv

from recbench.models.gnn.base import ConvEncoder, GraphTrainOptions, make_graph_trainer
from recbench.train.api import RunContext


class GCNConfig(GraphTrainOptions):
    name: Literal["gcn"]
    combine: Literal["mean", "last"] = "mean"


class GCN(ConvEncoder):
    """Output ``(num_outputs, emb_dim)``."""

    def __init__(self, num_users: int, num_items: int, emb_dim: int = 64, num_layers: int = 3,
                 init_std: float = 0.1, combine: str = "mean", **kwargs):
        super().__init__(num_users, num_items, emb_dim, num_layers, init_std, combine, **kwargs)
        self.convs.extend(GraphConv(emb_dim, emb_dim, norm="both", allow_zero_in_degree=True)
                          for _ in range(num_layers))

    def layer(self, index: int, g, h: torch.Tensor) -> torch.Tensor:
        return self.convs[index](g, h, edge_weight=self.edge_mask(g))


def make_gcn_trainer(cfg: GCNConfig, ctx: RunContext):
    torch.manual_seed(ctx.seed)
    model = GCN(ctx.data.num_users, ctx.data.num_items, cfg.emb_dim, cfg.num_layers,
                cfg.init_std, cfg.combine, edge_dropout=cfg.edge_dropout,
                message_dropout=cfg.message_dropout, sparse=cfg.sparse_embeddings)
    return make_graph_trainer(model, cfg, ctx)
