"""GraphSAGE (Hamilton et al., NeurIPS 2017) with the mean or max-pooling aggregator.

h^(l+1)_v = W_self h_v + W_neigh AGG({h_u : u ∈ N(v)}), AGG = mean, or pool: max over
σ(W_pool h_u + b) (``dgl.nn.SAGEConv``); ReLU between layers, layer outputs combined.
"""

from __future__ import annotations

from typing import Literal

import torch
from dgl.nn import SAGEConv

from recbench.models.gnn.base import ConvEncoder, GraphTrainOptions, make_graph_trainer
from recbench.train.api import RunContext


class SAGEConfig(GraphTrainOptions):
    name: Literal["sage"]
    aggregator: Literal["mean", "pool"] = "mean"
    combine: Literal["mean", "last"] = "mean"


class SAGE(ConvEncoder):
    """Output ``(num_outputs, emb_dim)``."""

    def __init__(self, num_users: int, num_items: int, emb_dim: int = 64, num_layers: int = 3,
                 aggregator: str = "mean", init_std: float = 0.1, combine: str = "mean",
                 **kwargs):
        super().__init__(num_users, num_items, emb_dim, num_layers, init_std, combine, **kwargs)
        self.convs.extend(SAGEConv(emb_dim, emb_dim, aggregator) for _ in range(num_layers))

    def layer(self, index: int, g, h: torch.Tensor) -> torch.Tensor:
        mask = self.edge_mask(g)
        if mask is not None and self.convs[index]._aggre_type == "pool":
            mask = None  # max-pooling ignores edge weights; dropout acts on messages instead
        return self.convs[index](g, h, edge_weight=mask)


def make_sage_trainer(cfg: SAGEConfig, ctx: RunContext):
    torch.manual_seed(ctx.seed)
    model = SAGE(ctx.data.num_users, ctx.data.num_items, cfg.emb_dim, cfg.num_layers,
                 cfg.aggregator, cfg.init_std, cfg.combine, edge_dropout=cfg.edge_dropout,
                 message_dropout=cfg.message_dropout, sparse=cfg.sparse_embeddings)
    return make_graph_trainer(model, cfg, ctx)
