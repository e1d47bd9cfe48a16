"""NGCF (Wang et al., SIGIR 2019): transformed messages with an element-wise interaction term.

Per layer (the paper's matrix form, eq. 7): E^(l+1) = LeakyReLU((L + I) E^(l) W1 + (L E^(l) ⊙
E^(l)) W2), L the symmetric-normalised adjacency; message dropout on each layer's output; the
final representation concatenates E^(0..L) with layers 1..L L2-normalised, as the official code
does, so the scoring dimension is emb_dim × (L + 1).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from recbench.config import Share
from recbench.models.gnn.base import (
    GNNArchitecture,
    GraphRecommender,
    build_gnn,
    make_graph_trainer,
    num_outputs,
)
from recbench.seeding import drawing_from
from recbench.train.api import RunContext


class NGCFConfig(GNNArchitecture):
    name: Literal["ngcf"]
    message_dropout: Share = 0.1
    negative_slope: float = 0.2


class NGCF(GraphRecommender):
    """Output ``(num_outputs, emb_dim * (num_layers + 1))``."""

    def __init__(self, *, generator: torch.Generator, negative_slope: float = 0.2, **kwargs):
        super().__init__(generator=generator, **kwargs)
        dim, layers = self.emb.embedding_dim, self.num_layers
        with drawing_from(generator):  # nn.Linear's own init, redrawn below but kept in the stream
            self.w1 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
            self.w2 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        for lin in [*self.w1, *self.w2]:
            nn.init.xavier_uniform_(lin.weight, generator=generator)
            nn.init.zeros_(lin.bias)
        self.negative_slope = negative_slope

    def propagate(self, graphs: list, h: torch.Tensor) -> torch.Tensor:
        n_out = num_outputs(graphs[-1])
        outs = [h[:n_out]]
        for layer, g in enumerate(graphs):
            side = self.spmm(g, h)
            h_dst = h[:len(side)]
            h = F.leaky_relu(self.w1[layer](side + h_dst) + self.w2[layer](side * h_dst),
                             self.negative_slope)
            h = self.message_dropout(h)
            outs.append(F.normalize(h[:n_out], dim=1))
        return torch.cat(outs, dim=1)


def make_ngcf_trainer(cfg: NGCFConfig, ctx: RunContext):
    model = build_gnn(NGCF, cfg=cfg, ctx=ctx, negative_slope=cfg.negative_slope)
    return make_graph_trainer(model, cfg, ctx)
