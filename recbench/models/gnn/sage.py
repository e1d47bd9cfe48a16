"""GraphSAGE (Hamilton et al., NeurIPS 2017) with the mean or max-pooling aggregator.

h^(l+1)_v = W_self h_v + W_neigh AGG({h_u : u ∈ N(v)}), AGG = mean, or pool: max over
σ(W_pool h_u + b) (``dgl.nn.SAGEConv``); ReLU between layers, layer outputs combined.
"""

from __future__ import annotations

from typing import Literal

import torch
from dgl.nn import SAGEConv

from recbench.models.gnn.base import ConvEncoder, GNNArchitecture, build_gnn, make_graph_trainer
from recbench.seeding import drawing_from
from recbench.train.api import RunContext


class SAGEConfig(GNNArchitecture):
    name: Literal["sage"]
    aggregator: Literal["mean", "pool"] = "mean"
    combine: Literal["mean", "last"] = "mean"


class SAGE(ConvEncoder):
    """Output ``(num_outputs, emb_dim)``."""

    def __init__(self, *, generator: torch.Generator, aggregator: str = "mean", **kwargs):
        super().__init__(generator=generator, **kwargs)
        dim = self.emb.embedding_dim
        with drawing_from(generator):  # SAGEConv's own init
            self.convs.extend(SAGEConv(dim, dim, aggregator) for _ in range(self.num_layers))

    def layer(self, index: int, g, h: torch.Tensor) -> torch.Tensor:
        mask = self.edge_mask(g)
        if mask is not None and self.convs[index]._aggre_type == "pool":
            mask = None  # max-pooling ignores edge weights; dropout acts on messages instead
        return self.convs[index](g, h, edge_weight=mask)


def make_sage_trainer(cfg: SAGEConfig, ctx: RunContext):
    model = build_gnn(SAGE, cfg=cfg, ctx=ctx, aggregator=cfg.aggregator, combine=cfg.combine)
    return make_graph_trainer(model, cfg, ctx)
