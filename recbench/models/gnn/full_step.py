"""The full-graph BPR step written out, by composition: one trainer, a swappable step.

:class:`FullGraphBPR` is the one full-graph trainer of the GNNs whose step is written out
(LightGCN, NGCF). What varies is held, not inherited: the model's forward and backward (a
:class:`FullGraphStep`, one class per model and numeric path) built on that path's sparse
products and batch rows (:class:`GraphKernels`: :class:`TorchGraphKernels` here,
``native_step.NativeGraphKernels`` for the native kernels). ``train.kernels`` picks the path
(``native/choice.py``); before issue 35 each model had a torch and a native trainer subclass,
the native one inheriting from both (behaviour hung on base order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch

from recbench.native.choice import KernelChoice
from recbench.train.api import RunContext
from recbench.train.trainers import HandWrittenBPR, bpr_row_gradients, l2_value

# a ``base.GraphRecommender`` with its full graph set (base imports this module, so the type
# is named here by what the step reads: graph, spmm, ego, emb, num_users)
GraphModel = torch.nn.Module


class TorchGraphKernels:
    """The torch step's sparse products and batch rows: ``Â^T`` as DGL's ``copy_u_sum`` over
    the reversed graph between two row scalings (the backward of
    ``GraphRecommender.spmm``), the BPR and L2 rows gathered and ``index_add_``-ed back."""

    path = "torch"

    def __init__(self, model: GraphModel):
        import dgl

        self.model = model
        # Â^T h = ns ⊙ A^T (nd ⊙ h): A^T is the reversed graph (the same one for this
        # bidirected graph, but the reverse is cheap and does not rely on it)
        self.reverse = dgl.reverse(model.graph)

    def spmm(self, h: torch.Tensor) -> torch.Tensor:
        """``Â h`` over the full graph: the model's own product (so forwards are its own)."""
        return self.model.spmm(self.model.graph, h)

    def spmm_transposed(self, h: torch.Tensor, add_to: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """``Â^T h`` over the full graph; with ``add_to``, ``add_to += Â^T h`` in place (one
        fused multiply-add for the row scaling)."""
        import dgl

        g = self.model.graph
        ns = g.ndata["ns"][:, None]
        spread = dgl.ops.copy_u_sum(self.reverse, h * g.ndata["nd"][:, None])
        return ns * spread if add_to is None else add_to.addcmul_(ns, spread)

    def score_gradient(self, out: torch.Tensor, u: torch.Tensor, pos: torch.Tensor,
                       neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(BPR loss, dL/dF) for rows ``u``, ``pos``, ``neg`` of the output table F."""
        loss, rows_u, rows_p, _ = bpr_row_gradients(
            out.index_select(0, u), out.index_select(0, pos), out.index_select(0, neg))
        grad_out = torch.zeros_like(out)
        grad_out.index_add_(0, u, rows_u)
        grad_out.index_add_(0, pos, rows_p)
        grad_out.index_add_(0, neg, rows_p, alpha=-1)  # dL/dn = -dL/dp
        return loss, grad_out

    def add_l2(self, grad: torch.Tensor, shrink: float, u: torch.Tensor, p: torch.Tensor,
               n: torch.Tensor) -> torch.Tensor:
        """``grad += d/dE`` of shrink · |e0|² / 2 over the batch's ego rows; returns that term."""
        model, off = self.model, self.model.num_users
        ego = model.ego(u, p, n)
        for rows, index in zip(ego, (u, p + off, n + off), strict=True):
            grad.index_add_(0, index, rows, alpha=shrink)
        return shrink * l2_value(*ego)


class GraphKernels(Protocol):
    """The sparse products and batch rows a :class:`FullGraphStep` runs on: torch's
    (:class:`TorchGraphKernels`) or the native kernels' (``native_step.NativeGraphKernels``)."""

    path: str

    def spmm(self, h: torch.Tensor) -> torch.Tensor: ...

    def spmm_transposed(self, h: torch.Tensor, add_to: torch.Tensor | None = None
                        ) -> torch.Tensor: ...

    def score_gradient(self, out: torch.Tensor, u: torch.Tensor, pos: torch.Tensor,
                       neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def add_l2(self, grad: torch.Tensor, shrink: float, u: torch.Tensor, p: torch.Tensor,
               n: torch.Tensor) -> torch.Tensor: ...


class FullGraphStep(Protocol):
    """A model's full-graph forward and backward written out (LightGCN, NGCF; one class per
    path, built on that path's :class:`GraphKernels`)."""

    kernels: GraphKernels

    def applies(self) -> bool:
        """Whether the model's settings keep the written-out step exact (else autograd)."""

    def forward_saved(self) -> tuple[torch.Tensor, object]:
        """The output table F of every node and what :meth:`propagate_back` reads."""

    def propagate_back(self, grad_out: torch.Tensor, out: torch.Tensor, saved: object
                       ) -> torch.Tensor:
        """dL/dE from dL/dF, filling any other parameter's ``.grad`` on the way."""


StepFactory = Callable[[GraphModel, GraphKernels], FullGraphStep]


class FullGraphBPR(HandWrittenBPR):
    """A full-graph GNN's BPR step with the gradient written out: the output table F of every
    node, dL/dF from the batch's rows, the model's own backward to the ego table, the L2 term
    on the batch's ego rows.

    Why composition: the model's forward/backward (``steps``, one per path) and the path's
    sparse products (:class:`GraphKernels`) vary independently of this loop; the trainer holds
    the one step ``kernel_choice`` picks (``train.kernels``, native/choice.py) instead of a
    subclass per model and path. Used when the propagation can be written out: full-graph
    training over the factorised norm, no DropEdge, a dense table (``hand``), BPR with
    non-hard negatives and the step's own condition (``plain``); else the autograd path.

    k > 1 negatives a positive (:meth:`takes_k_negatives`) only where the run declares
    ``train.kernels: native``: the loss is BPR over the batch's B·k (user, positive, negative)
    triples, the same function as the autograd path's with sums in another order, so ``auto``
    keeps those runs on autograd, the floats they were recorded with (before this, ``native``
    with k > 1 was refused, so no recorded run changes). Why: the propagation, not the scoring,
    is the step's cost, so k negatives cost about one negative's epoch (docs/benchmarks.md)."""

    def __init__(self, model: GraphModel, ctx: RunContext,
                 steps: Mapping[str, StepFactory],
                 kernel_choice: KernelChoice | None = None, **kwargs):
        self.kernel_choice = kernel_choice or KernelChoice("torch", "the torch step")
        # known before the parent builds the optimiser (see native_update)
        self.hand = (model.edge_dropout == 0 and not model.emb.sparse
                     and "ns" in model.graph.ndata)
        super().__init__(model, ctx, **kwargs)
        self.step: FullGraphStep | None = None
        if self.hand:
            path = self.kernel_choice.path
            if path == "native":
                from recbench.models.gnn.native_step import NativeGraphKernels

                kernels: GraphKernels = NativeGraphKernels(model)
            else:
                kernels = TorchGraphKernels(model)
            self.step = steps[path](model, kernels)

    def native_update(self) -> bool:
        return self.hand and self.kernel_choice.path == "native"

    def takes_k_negatives(self) -> bool:
        return self.ctx.train.kernels == "native"

    @property
    def plain(self) -> bool:
        return self.hand and super().plain and self.step.applies()

    def kernels(self) -> KernelChoice:
        if self.kernel_choice.path == "native" and not self.plain:
            return KernelChoice("torch", "autograd step: DropEdge, message dropout (LightGCN), "
                                         "a sparse table, a non-BPR loss, hard negatives, or "
                                         "k > 1 negatives without train.kernels: native")
        return self.kernel_choice

    def batch_gradient(self, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the parameters' ``.grad`` with the batch's BPR (+ L2) gradient; ``n`` is (B,)
        or (B, k): k negatives a positive are BPR over the B·k triples, averaged over all."""
        model, off, step = self.model, self.model.num_users, self.step
        weight = model.emb.weight
        scored_u, scored_p = u, p
        if n.dim() == 2:  # triple b·k + j is (u[b], p[b], n[b, j]), as n.reshape(-1) lists them
            scored_u, scored_p = u.repeat_interleave(n.shape[1]), p.repeat_interleave(n.shape[1])
            n = n.reshape(-1)
        with torch.no_grad():
            out, saved = step.forward_saved()
            loss, grad_out = step.kernels.score_gradient(out, scored_u, scored_p + off, n + off)
            grad = step.propagate_back(grad_out, out, saved)
            reg = torch.zeros((), device=weight.device)
            if self.reg > 0:  # reg * |e0|^2 / 2 / B on the batch's ego rows (each negative's)
                reg = step.kernels.add_l2(grad, self.reg / len(u), u, p, n)
            weight.grad = grad
        return loss, reg
