"""The full-graph BPR step's sparse products and batch rows through the native kernels
(``recbench/native``), for LightGCN and NGCF.

:class:`NativeGraphKernels` is :class:`~recbench.models.gnn.full_step.TorchGraphKernels`'s
counterpart: Â and Â^T are CSR products built once from the training graph (the factorised
norm ns[j] nd[i] as values) instead of DGL's ``copy_u_sum`` between two row scalings, and the
batch's BPR and L2 rows are scattered straight into the gradients instead of gathered,
differentiated and ``index_add_``-ed back. A model's native step (``NativeLightGCNStep``,
``NativeNGCFStep``) is built on it when ``train.kernels`` chooses the native path
(:class:`~recbench.models.gnn.full_step.FullGraphBPR`).

Same function, same random draws; sums run in another order, so results agree with the torch
step to float rounding, not bit for bit. The kernels run on torch's thread count (OpenMP, each
output row by one thread: the same floats at any count). Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import torch

from recbench.native import ops as native


class NativeGraphKernels:
    """CSR products and scattered BPR/L2 rows (module docstring)."""

    path = "native"

    def __init__(self, model: torch.nn.Module):
        """``model``: a ``base.GraphRecommender`` with its full graph set."""
        self.model = model
        self.csr = native.graph_csr(model.graph)
        self.csr_t = native.graph_csr(model.graph, transpose=True)
        self._buffers: dict[str, torch.Tensor] = {}

    def buffer(self, name: str, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """A float32 table of ``shape`` kept under ``name`` from step to step, contents
        undefined. Why: at Gowalla size each full table is 18 MB (NGCF's output 72 MB); a fresh
        one every product, every step, cost page faults and a pass of its own (issue 36). A step
        may hand one out only where nothing keeps it past the next step's overwrite."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = self._buffers[name] = torch.empty(shape, dtype=torch.float32)
        return buf

    def spmm(self, h: torch.Tensor) -> torch.Tensor:
        """``Â h`` over the full graph (``GraphRecommender.spmm``'s function)."""
        return self.csr.matmul(h)

    def spmm_transposed(self, h: torch.Tensor, add_to: torch.Tensor | None = None
                        ) -> torch.Tensor:
        return self.csr_t.matmul(h, out=add_to, accumulate=add_to is not None)

    def score_gradient(self, out: torch.Tensor, u: torch.Tensor, pos: torch.Tensor,
                       neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad_out = self.buffer("grad_out", out.shape).zero_()  # read only within this step
        return torch.tensor(native.bpr_scatter(out, u, pos, neg, grad_out)), grad_out

    def add_l2(self, grad: torch.Tensor, shrink: float, u: torch.Tensor, p: torch.Tensor,
               n: torch.Tensor) -> torch.Tensor:
        """As the torch kernels', on the ego table (``model.ego``'s rows) in one native loop."""
        off = self.model.num_users
        half_sq = native.l2_scatter(self.model.emb.weight.detach(), u, p + off, n + off, shrink,
                                    grad)
        return torch.tensor(shrink * half_sq)
