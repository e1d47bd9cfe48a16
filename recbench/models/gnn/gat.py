"""GAT (Veličković et al., ICLR 2018), multi-head, as an encoder of the user-item graph.

Hidden layers concatenate ``num_heads`` heads of ``emb_dim / num_heads`` (``dgl.nn.GATConv``);
the last layer averages ``num_heads`` heads of ``emb_dim``, as the paper does for its output
layer. Edge dropout is GAT's attention dropout.
"""

from __future__ import annotations

from typing import Literal

import torch
from dgl.nn import GATConv
from pydantic import model_validator

from recbench.models.gnn.base import ConvEncoder, GraphTrainOptions, make_graph_trainer
from recbench.train.api import RunContext


class GATConfig(GraphTrainOptions):
    name: Literal["gat"]
    num_heads: int = 4
    combine: Literal["mean", "last"] = "mean"
    negative_slope: float = 0.2

    @model_validator(mode="after")
    def _heads_divide(self) -> GATConfig:
        if self.num_heads < 1:
            raise ValueError(f"num_heads must be at least 1, got {self.num_heads}")
        if self.emb_dim % self.num_heads:
            raise ValueError(f"emb_dim {self.emb_dim} must be divisible by num_heads")
        return self


class GAT(ConvEncoder):
    """Output ``(num_outputs, emb_dim)``."""

    def __init__(self, num_users: int, num_items: int, emb_dim: int = 64, num_layers: int = 3,
                 num_heads: int = 4, init_std: float = 0.1, combine: str = "mean",
                 negative_slope: float = 0.2, **kwargs):
        super().__init__(num_users, num_items, emb_dim, num_layers, init_std, combine, **kwargs)
        for index in range(num_layers):
            out = emb_dim if index == num_layers - 1 else emb_dim // num_heads
            self.convs.append(GATConv(emb_dim, out, num_heads, attn_drop=self.edge_dropout,
                                      negative_slope=negative_slope, allow_zero_in_degree=True))

    def edge_mask(self, g) -> None:
        return None  # GATConv drops attention weights itself (attn_drop)

    def layer(self, index: int, g, h: torch.Tensor) -> torch.Tensor:
        out = self.convs[index](g, h)  # (N, heads, out)
        return out.mean(1) if index == len(self.convs) - 1 else out.flatten(1)


def make_gat_trainer(cfg: GATConfig, ctx: RunContext):
    torch.manual_seed(ctx.seed)
    model = GAT(ctx.data.num_users, ctx.data.num_items, cfg.emb_dim, cfg.num_layers,
                cfg.num_heads, cfg.init_std, cfg.combine, cfg.negative_slope,
                edge_dropout=cfg.edge_dropout, message_dropout=cfg.message_dropout,
                sparse=cfg.sparse_embeddings)
    return make_graph_trainer(model, cfg, ctx)
