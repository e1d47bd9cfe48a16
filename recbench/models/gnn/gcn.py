"""GCN (Kipf & Welling, ICLR 2017) as an encoder of the user-item graph, scored by dot product.

h^(l+1) = σ(D^-1/2 A D^-1/2 h^(l) W^(l)) with ``dgl.nn.GraphConv(norm='both')``; no self-loops
(users and items only see each other), ReLU between layers, layer outputs combined.
"""

from __future__ import annotations

from typing import Literal

import torch
from dgl.nn import GraphConv

from recbench.models.gnn.base import ConvEncoder, GNNArchitecture, build_gnn, make_graph_trainer
from recbench.seeding import drawing_from
from recbench.train.api import RunContext


class GCNConfig(GNNArchitecture):
    name: Literal["gcn"]
    combine: Literal["mean", "last"] = "mean"


class GCN(ConvEncoder):
    """Output ``(num_outputs, emb_dim)``."""

    def __init__(self, *, generator: torch.Generator, **kwargs):
        super().__init__(generator=generator, **kwargs)
        dim = self.emb.embedding_dim
        with drawing_from(generator):  # GraphConv's own Glorot init
            self.convs.extend(GraphConv(dim, dim, norm="both", allow_zero_in_degree=True)
                              for _ in range(self.num_layers))

    def layer(self, index: int, g, h: torch.Tensor) -> torch.Tensor:
        return self.convs[index](g, h, edge_weight=self.edge_mask(g))


def make_gcn_trainer(cfg: GCNConfig, ctx: RunContext):
    model = build_gnn(GCN, cfg=cfg, ctx=ctx, combine=cfg.combine)
    return make_graph_trainer(model, cfg, ctx)
