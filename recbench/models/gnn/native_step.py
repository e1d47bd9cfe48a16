"""The full-graph BPR step through the native kernels (``recbench/native``), for LightGCN and NGCF.

:class:`NativeFullGraphBPR` replaces pieces of :class:`~recbench.models.gnn.base.FullGraphBPR`
(:meth:`spmm_transposed`, :meth:`score_gradient`, :meth:`add_l2`; plus :meth:`spmm` for the
forward) and keeps the rest: Â and Â^T are CSR products built once from the training graph (the
factorised norm ns[j] nd[i] as values) instead of DGL's ``copy_u_sum`` between two row
scalings, and the batch's BPR and L2 rows are scattered straight into the gradients instead of
gathered, differentiated and ``index_add_``-ed back. A model's own native trainer
(``NativeLightGCNTrainer``, ``NativeNGCFTrainer``) puts it after its torch trainer in the bases,
so its forward and backward read :meth:`spmm` / :meth:`spmm_transposed` from here.

Same function, same random draws; sums run in another order, so results agree with the torch
step to float rounding, not bit for bit. The kernels run on torch's thread count (OpenMP, each
output row by one thread: the same floats at any count): :func:`full_trainer` takes them on the
CPU below the large-graph mode's size and when they build. Figures: recbench/native/ops.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from recbench.models.gnn.base import FullGraphBPR, GraphRecommender
from recbench.native import ops as native
from recbench.native.choice import choose_kernels
from recbench.train.api import RunContext


class NativeFullGraphBPR(FullGraphBPR):
    """FullGraphBPR with CSR products and scattered BPR/L2 rows (module docstring)."""

    def __init__(self, model: GraphRecommender, ctx: RunContext, **kwargs):
        super().__init__(model, ctx, **kwargs)
        if self.hand:
            self.csr = native.graph_csr(model.graph)
            self.csr_t = native.graph_csr(model.graph, transpose=True)

    def native_update(self) -> bool:
        return self.hand

    def spmm(self, h: torch.Tensor) -> torch.Tensor:
        """``Â h`` over the full graph (``GraphRecommender.spmm``'s function)."""
        return self.csr.matmul(h)

    def spmm_transposed(self, h: torch.Tensor, add_to: torch.Tensor | None = None
                        ) -> torch.Tensor:
        return self.csr_t.matmul(h, out=add_to, accumulate=add_to is not None)

    def score_gradient(self, out: torch.Tensor, u: torch.Tensor, pos: torch.Tensor,
                       neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad_out = torch.zeros_like(out)
        return torch.tensor(native.bpr_scatter(out, u, pos, neg, grad_out)), grad_out

    def add_l2(self, grad: torch.Tensor, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor
               ) -> torch.Tensor:
        """As the parent's, on the ego table (``model.ego``'s rows) in one native loop."""
        shrink, off = self.reg / len(u), self.model.num_users
        half_sq = native.l2_scatter(self.model.emb.weight.detach(), u, p + off, n + off, shrink,
                                    grad)
        return torch.tensor(shrink * half_sq)


def full_trainer(ctx: RunContext, torch_step: type, native_step: type
                 ) -> Callable[..., FullGraphBPR]:
    """``native_step`` or ``torch_step`` as ``train.kernels`` declares
    (:func:`~recbench.native.choice.choose_kernels` on the training graph's size), given the
    choice so the trainer can report the path it took."""
    choice = choose_kernels(ctx.train.kernels, ctx.device, ctx.data.g.num_edges())
    return functools.partial(native_step if choice.path == "native" else torch_step,
                             kernel_choice=choice)
