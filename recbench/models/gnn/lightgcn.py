"""LightGCN (He et al., SIGIR 2020): neighbourhood aggregation only, layers combined by α_l.

e^(l+1)_u = Σ_{i∈N(u)} e^(l)_i / sqrt(|N(u)||N(i)|) (and symmetrically for items): no feature
transformation, no non-linearity, no self-loop; the output is e = Σ_{l=0..L} α_l e^(l) with
α_l = 1/(L+1) by default (the paper's choice). Trained with BPR plus λ‖E^(0)_batch‖² / B.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import model_validator

from recbench.models.gnn.base import (
    GNNArchitecture,
    GraphRecommender,
    build_gnn,
    make_graph_trainer,
    num_outputs,
)
from recbench.train import objectives
from recbench.train.api import RunContext
from recbench.train.trainers import PairwiseTrainer, shuffled_batches


class LightGCNConfig(GNNArchitecture):
    name: Literal["lightgcn"]
    alpha: list[float] | None = None  # α_0..α_L; None: 1/(L+1) each

    @model_validator(mode="after")
    def _alpha_len(self) -> LightGCNConfig:
        if self.alpha is not None and len(self.alpha) != self.num_layers + 1:
            raise ValueError(f"alpha needs num_layers + 1 = {self.num_layers + 1} weights")
        return self


class LightGCN(GraphRecommender):
    """Output ``(num_outputs, emb_dim)``: the α-weighted sum of layer 0..L embeddings."""

    def __init__(self, *, alpha: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        alpha = alpha or [1.0 / (self.num_layers + 1)] * (self.num_layers + 1)
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.float32))

    def propagate(self, graphs: list, h: torch.Tensor) -> torch.Tensor:
        n_out = num_outputs(graphs[-1])
        out = self.alpha[0] * h[:n_out]
        for layer, g in enumerate(graphs):
            h = self.spmm(g, h)
            h = self.message_dropout(h)
            out = out + self.alpha[layer + 1] * h[:n_out]
        return out


class LightGCNTrainer(PairwiseTrainer):
    """Full-graph LightGCN with the BPR gradient written out instead of recorded by autograd.

    Why: the output is linear in the ego table, F = Σ_l α_l Â^l E, so its gradient is the
    transposed propagation of the score gradient: dL/dE = Σ_l α_l (Â^T)^l G with G = dL/dF
    (three index_add_ of the batch's rows). Autograd computes the same sums but, on ML-100K,
    spent more on its bookkeeping than on the sparse products: zero-filled full-size gradient
    buffers for every slice and gather (35 fills a step) and a scaling multiply per node per
    edge direction (1,569 small multiplies an epoch). The forward is ``model.embed()`` itself,
    so the scores are bit for bit the autograd path's; the gradients agree to float rounding
    (tests/test_gnn.py). Used when the propagation is linear and deterministic: full-graph
    training, no DropEdge or message dropout, a dense ego table, BPR with one uniform or
    popularity negative; anything else takes the autograd path of the parent class."""

    def __init__(self, model: LightGCN, ctx: RunContext, **kwargs):
        super().__init__(model, ctx, **kwargs)
        import dgl

        g = model.graph
        self.plain = (self.loss == "bpr" and self.k == 1 and self.sampler_name != "hard"
                      and model.edge_dropout == 0 and model.message_dropout.p == 0
                      and not model.emb.sparse and "ns" in g.ndata)
        # Â^T h = ns ⊙ A^T (nd ⊙ h): A^T is the reversed graph (the same one for this
        # bidirected graph, but the reverse is cheap and does not rely on it)
        self.reverse = dgl.reverse(g) if self.plain else None

    def propagate_back(self, grad_out: torch.Tensor) -> torch.Tensor:
        """dL/dE from dL/dF: the transposed layers applied in reverse order."""
        import dgl

        model, g = self.model, self.model.graph
        ns, nd = g.ndata["ns"][:, None], g.ndata["nd"][:, None]
        alpha = model.alpha
        grad = alpha[-1] * grad_out
        for layer in range(model.num_layers - 1, -1, -1):
            grad = ns * dgl.ops.copy_u_sum(self.reverse, grad * nd) + alpha[layer] * grad_out
        return grad

    def batch_gradient(self, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the ego table's ``.grad`` with the batch's BPR (+ L2) gradient."""
        model, size = self.model, len(u)
        weight, off = model.emb.weight, model.num_users
        with torch.no_grad():
            users_e, items_e = model.embed()
            ue, pe, ne = users_e.index_select(0, u), items_e.index_select(0, p), \
                items_e.index_select(0, n)
            diff = pe - ne
            x = (ue * diff).sum(-1)
            loss = torch.nn.functional.softplus(-x).mean()
            c = (torch.sigmoid(-x) * (-1.0 / size))[:, None]
            grad_out = torch.zeros_like(weight)
            rows_p = ue * c
            grad_out.index_add_(0, u, diff.mul_(c))
            grad_out.index_add_(0, p + off, rows_p)
            grad_out.index_add_(0, n + off, rows_p, alpha=-1.0)
            grad = self.propagate_back(grad_out)
            reg = torch.zeros((), device=weight.device)
            if self.reg > 0:
                ego = model.ego(u, p, n)
                reg = self.reg * objectives.l2_sum(*ego) / size
                for rows, index in zip(ego, (u, p + off, n + off), strict=True):
                    grad.index_add_(0, index, rows, alpha=self.reg / size)
            weight.grad = grad
        return loss, reg

    def train_epoch(self, epoch: int) -> dict[str, float]:
        if not self.plain:
            return super().train_epoch(epoch)
        self.start_epoch(epoch)
        dev = self.ctx.device
        total, total_reg, rows = 0.0, 0.0, 0
        for idx in shuffled_batches(len(self.users), self.ctx.train.batch_size, self.gen):
            u, p = self.users[idx], self.items[idx]
            neg = self.sample(u)
            loss, reg = self.batch_gradient(u.to(dev), p.to(dev), neg.to(dev))
            self.opt.step()
            total += float(loss) * len(idx)
            total_reg += float(reg) * len(idx)
            rows += len(idx)
        return {self.loss: total / max(rows, 1), "reg": total_reg / max(rows, 1)}


def make_lightgcn_trainer(cfg: LightGCNConfig, ctx: RunContext):
    model = build_gnn(LightGCN, cfg=cfg, ctx=ctx, alpha=cfg.alpha)
    return make_graph_trainer(model, cfg, ctx, full_trainer=LightGCNTrainer)
