"""UltraGCN (Mao et al., CIKM 2021): an infinite-layer graph convolution approximated by
constraint losses on plain MF embeddings, so training never propagates over the graph.

Why it is here: the strongest published figure on the NGCF/LightGCN Gowalla split (Recall@20
0.1862, BARS), from a model whose step costs an MF step plus many negatives — the "simple beats
deep" baseline the GNN rows must be held against. The loss, as the authors' ``main.py``
(xue-pai/UltraGCN, read for facts) computes it, per batch of training pairs (u, i) with
``num_negatives`` items j drawn uniformly from all items (their ``sampling_sift_pos=no``):

- ``L = Σ_(u,i) BCE(e_u·e_i, 1) · (w1 + w2 β_ui) + negative_weight · mean_j BCE(e_u·e_j, 0) ·
  (w3 + w4 β_uj)`` with ``β_ui = sqrt(d_u + 1) / d_u · 1 / sqrt(d_i + 1)`` (training degrees):
  the user-item constraint folded into the weights;
- ``L_I = −Σ_(u,i) Σ_{j ∈ S(i)} ω_ij log σ(e_u·e_j)``, S(i) the ``ii_neighbors`` items of the
  largest ``ω_ij = G_ij · sqrt(g_i + 1) / g_i · 1 / sqrt(g_j + 1)``, G = XᵀX the item
  co-occurrence matrix with its diagonal kept (their default), g its row sums;
- ``loss = L + gamma · Σ‖θ‖² / 2 + ii_weight · L_I``, summed over the batch (not averaged), Adam.

Scores are plain dot products, so evaluation is BPR-MF's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from recbench.config import NonNegFloat, PosInt, Strict
from recbench.models.closed_form import item_blocks, training_matrix
from recbench.models.mf import BPRMF
from recbench.native import ops as native
from recbench.native.choice import KernelChoice, choose_kernels
from recbench.seeding import continue_globally, init_generator
from recbench.train.api import RunContext
from recbench.train.trainers import PairwiseTrainer


class UltraGCNConfig(Strict):
    name: Literal["ultragcn"]
    emb_dim: PosInt = 64
    init_std: NonNegFloat = 1e-4  # their initial_weight
    ii_neighbors: PosInt = 10  # |S(i)|, their ii_neighbor_num
    w1: NonNegFloat = 1e-6
    w2: NonNegFloat = 1.0
    w3: NonNegFloat = 1e-6
    w4: NonNegFloat = 1.0
    num_negatives: PosInt = 1500
    negative_weight: NonNegFloat = 300.0
    gamma: NonNegFloat = 1e-4  # weight of Σ‖θ‖² / 2 over all parameters
    ii_weight: NonNegFloat = 5e-4  # λ, the weight of the item-item constraint L_I


def degree_betas(users: torch.Tensor, items: torch.Tensor, num_users: int, num_items: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(β_u = sqrt(d_u + 1) / d_u, β_i = 1 / sqrt(d_i + 1)) from the training pairs; a user with
    no training pair gets β_u = 0 (it never appears in a batch)."""
    d_u = torch.bincount(users, minlength=num_users).double()
    d_i = torch.bincount(items, minlength=num_items).double()
    beta_u = torch.where(d_u > 0, (d_u + 1).sqrt() / d_u.clamp(min=1), torch.zeros_like(d_u))
    return beta_u.float(), (1.0 / (d_i + 1).sqrt()).float()


def item_constraints(users: torch.Tensor, items: torch.Tensor, num_users: int, num_items: int,
                     k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(neighbours (I, k) int64, ω (I, k) float32): each item's k largest ω_ij (module
    docstring), computed a block of G's columns at a time (G is symmetric), so the dense
    item-item matrix is never held."""
    x = training_matrix(users, items, num_users, num_items)
    xt, xc = x.T.tocsr(), x.tocsc()
    # g_i = Σ_j G_ij = Σ_u X_ui d_u: G's row sums without forming G
    g = np.asarray(xt @ np.asarray(x.sum(axis=1)).ravel(), dtype=np.float64).ravel()
    own = (np.sqrt(g + 1.0) / np.maximum(g, 1.0)) * (g > 0)  # sqrt(g_i + 1) / g_i; 0 if unseen
    other = 1.0 / np.sqrt(g + 1.0)  # 1 / sqrt(g_j + 1)
    k = min(k, num_items)
    neighbours = torch.zeros(num_items, k, dtype=torch.int64)
    weights = torch.zeros(num_items, k, dtype=torch.float32)
    for start, end in item_blocks(num_items, num_items):
        block = (xt @ xc[:, start:end]).toarray().astype(np.float64)  # G[:, start:end]
        block *= other[:, None] * own[None, start:end]  # ω_ij at [j, i]: G is symmetric
        top = torch.from_numpy(block).topk(k, dim=0)
        neighbours[start:end] = top.indices.T
        weights[start:end] = top.values.T.float()
    return neighbours, weights


class UltraGCNTrainer(PairwiseTrainer):
    """BPR-MF's tables and evaluation; the step is UltraGCN's constrained loss (module docstring).

    On the CPU the batch's gradient is one native loop (``native.ops.ultragcn_scatter``, taken
    as ``train.kernels`` chooses: ``native.choice``), the γ·θ term a pass over each table, and
    Adam's update native too; elsewhere autograd over :meth:`batch_loss`. Same function, sums in
    another order: the two agree to float rounding (tests/test_ultragcn.py). Why: the autograd
    step materialises (batch × negatives × d) gathers and their backward, hours an epoch at
    Gowalla's 1,500 negatives a pair on this CPU (docs/gnn.md, UltraGCN)."""

    def __init__(self, model: BPRMF, ctx: RunContext, cfg: UltraGCNConfig):
        self.choice = choose_kernels(ctx.train.kernels, ctx.device)
        self.native = self.choice.path == "native"  # read by native_update in the parent
        super().__init__(model, ctx)
        self.cfg = cfg
        data = ctx.data
        self.beta_u, self.beta_i = degree_betas(self.users, self.items, data.num_users,
                                                data.num_items)
        self.ii_neighbours, self.ii_weights = item_constraints(
            self.users, self.items, data.num_users, data.num_items, cfg.ii_neighbors)
        self.work: torch.Tensor | None = None  # the native loop's scratch (_work)

    def native_update(self) -> bool:
        return self.native

    def kernels(self) -> KernelChoice:
        return self.choice

    def batch_loss(self, u: torch.Tensor, p: torch.Tensor, neg: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L, L_I, Σ‖θ‖²/2) of one batch, each a sum over the batch."""
        cfg, model = self.cfg, self.model
        ue, pe, ne = model.user(u), model.item(p), model.item(neg)
        pos_w = cfg.w1 + cfg.w2 * self.beta_u[u] * self.beta_i[p]
        neg_w = cfg.w3 + cfg.w4 * self.beta_u[u][:, None] * self.beta_i[neg]
        pos_s = (ue * pe).sum(-1)
        neg_s = torch.bmm(ne, ue[:, :, None]).squeeze(-1)
        pos_loss = F.binary_cross_entropy_with_logits(pos_s, torch.ones_like(pos_s),
                                                      weight=pos_w, reduction="none")
        neg_loss = F.binary_cross_entropy_with_logits(neg_s, torch.zeros_like(neg_s),
                                                      weight=neg_w, reduction="none").mean(-1)
        main = (pos_loss + cfg.negative_weight * neg_loss).sum()
        nbr = model.item(self.ii_neighbours[p])  # (B, k, d)
        sims = torch.bmm(nbr, ue[:, :, None]).squeeze(-1)
        item_loss = -(self.ii_weights[p] * F.logsigmoid(sims)).sum()
        norm = sum((w ** 2).sum() for w in model.parameters()) / 2
        return main, item_loss, norm

    def batch_gradient(self, u: torch.Tensor, p: torch.Tensor, neg: torch.Tensor
                       ) -> tuple[float, float, float]:
        """The native step's gradient of :meth:`batch_loss`'s ``L + γ·norm + λ·L_I`` into the
        tables' ``.grad`` (each ``γ·θ``, then the batch's rows added); returns (L, L_I, norm)."""
        cfg = self.cfg
        users_w, items_w = self.model.user.weight, self.model.item.weight
        with torch.no_grad():
            grads = []
            for w in (users_w, items_w):
                grads.append(torch.mul(w, cfg.gamma, out=w.grad if w.grad is not None
                                       else torch.empty_like(w)))
            main, item_loss = native.ultragcn_scatter(
                users_w.detach(), items_w.detach(), u, p, neg, self.ii_neighbours,
                self.ii_weights, self.beta_u, self.beta_i,
                (cfg.w1, cfg.w2, cfg.w3, cfg.w4, cfg.negative_weight, cfg.ii_weight),
                grads[0], grads[1], self._work(len(u), neg.shape[1], users_w.shape[1]))
            users_w.grad, items_w.grad = grads
            norm = sum(float(torch.dot(w.view(-1), w.view(-1))) for w in (users_w, items_w)) / 2
        return main, item_loss, norm

    def _work(self, batch: int, k: int, dim: int) -> torch.Tensor:
        """The native loop's scratch vector, kept from batch to batch (ops.ultragcn_scatter)."""
        size = native.ultragcn_work_size(batch, k, self.ii_neighbours.shape[1], dim)
        work = self.work
        if work is None or work.numel() < size:
            work = self.work = torch.empty(size)
        return work

    def draw_negatives(self, u: torch.Tensor) -> torch.Tensor:
        """(len(u), num_negatives) items uniform over all items (the authors'
        ``sampling_sift_pos=no``: a positive may be drawn), from the run's negative stream."""
        return torch.randint(self.ctx.data.num_items, (len(u), self.cfg.num_negatives),
                             generator=self.neg_gen)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.start_epoch(epoch)
        cfg, dev = self.cfg, self.ctx.device
        totals, batches = np.zeros(3), 0
        for u, p in self.epoch_pairs():
            neg = self.draw_negatives(u)
            if self.native:
                main, item_loss, norm = self.batch_gradient(u, p, neg)
            else:
                main, item_loss, norm = self.batch_loss(u.to(dev), p.to(dev), neg.to(dev))
                loss = main + cfg.gamma * norm + cfg.ii_weight * item_loss
                self.opt.zero_grad()
                loss.backward()
            self.opt.step()
            totals += [float(main), float(item_loss), float(norm)]
            batches += 1
        n = max(batches, 1)
        return {"loss_l": totals[0] / n, "loss_i": totals[1] / n, "norm": totals[2] / n}


def make_ultragcn_trainer(cfg: UltraGCNConfig, ctx: RunContext) -> UltraGCNTrainer:
    gen = init_generator(ctx.seed)
    model = BPRMF(num_users=ctx.data.num_users, num_items=ctx.data.num_items, generator=gen,
                  emb_dim=cfg.emb_dim, init_std=cfg.init_std)
    continue_globally(gen)
    return UltraGCNTrainer(model, ctx, cfg)
