"""Social LightGCN: preferences propagate over follow edges as well as interaction edges.

A LightGCN in which a user's layer-(l+1) embedding adds the normalised mean of its friends'
layer-l embeddings, weighted by β (``social_weight``), to the normalised sum over its items:
e_u^(l+1) = Σ_i e_i^(l)/sqrt(d_u d_i) + β Σ_v e_v^(l)/sqrt(s_u s_v) (d: interaction degrees,
s: social degrees); items are as in LightGCN; output Σ_l α_l e^(l). The interaction and social
relations are normalised separately (SocialLGN, Liao et al. 2022, fuses them the same way
before its graph-fusion step, which we leave out). ``social: false`` is plain LightGCN.
"""

from __future__ import annotations

from typing import Literal

import torch

from recbench.config import NonNegFloat
from recbench.data.graph import FOLLOWS
from recbench.errors import ConfigError
from recbench.models.gnn.base import (
    GNNArchitecture,
    build_gnn,
    interaction_graph,
    make_graph_trainer,
    social_graph,
)
from recbench.models.gnn.lightgcn import LightGCN
from recbench.train.api import RunContext


class SocialConfig(GNNArchitecture):
    name: Literal["social"]
    social: bool = True
    social_weight: NonNegFloat = 1.0


class SocialLightGCN(LightGCN):
    """Full-graph training keeps the social edges in a second graph (both take DGL's fast
    ``copy_u_sum`` kernel); sampled training puts them in the one message graph."""

    social_graph = None

    def propagate(self, graphs: list, h: torch.Tensor) -> torch.Tensor:
        from recbench.models.gnn.base import num_outputs

        n_out = num_outputs(graphs[-1])
        out = self.alpha[0] * h[:n_out]
        for layer, g in enumerate(graphs):
            nxt = self.spmm(g, h)
            if self.social_graph is not None and not g.is_block:
                nxt = nxt + self.spmm(self.social_graph, h)
            h = self.message_dropout(nxt)
            out = out + self.alpha[layer + 1] * h[:n_out]
        return out


def make_social_trainer(cfg: SocialConfig, ctx: RunContext):
    g = ctx.data.g
    if cfg.social and (FOLLOWS not in g.canonical_etypes or g.num_edges(FOLLOWS) == 0):
        raise ConfigError(f"model.social is on but dataset '{ctx.data.meta.get('dataset')}' has "
                          "no follow edges; use douban-monti or set model.social=false")
    model = build_gnn(SocialLightGCN, cfg=cfg, ctx=ctx)
    users, items = ctx.data.num_users, ctx.data.num_items
    if cfg.social and cfg.training == "full":
        model.social_graph = social_graph(g, users, items, cfg.social_weight).to(ctx.device)
        graph = interaction_graph(g, users, items)
    else:
        graph = interaction_graph(g, users, items, cfg.social and cfg.training != "full",
                                  cfg.social_weight)
    return make_graph_trainer(model, cfg, ctx, graph)
