"""Row-sparse Adam for large embedding tables trained on sampled mini-batches.

``torch.optim.SparseAdam`` spends most of a neighbour-sampled step on bookkeeping that does not
scale with the batch: ``sparse_mask`` against the whole moment tables and sparse ``add_`` into
them (over half of a batch on the 20M-edge scale benchmark; docs/benchmarks.md). This
optimiser performs the same update — the same formula, bias correction on the global step, only
the rows present in the gradient touched — with ``index_select``/``index_copy_``/``index_add_``
on the gradient's rows, so its cost follows the rows a batch touches. A test checks it matches
``SparseAdam`` step for step.
"""
from __future__ import annotations

import math

import torch


class RowSparseAdam(torch.optim.Optimizer):
    """Adam on the rows of sparse gradients; dense parameters, sparse (COO) gradients only."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        if lr <= 0 or eps <= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid RowSparseAdam settings lr={lr} betas={betas} eps={eps}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("RowSparseAdam takes sparse gradients (nn.Embedding(sparse=True))")
                rows, grad = _rows(p.grad)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                m = state["exp_avg"].index_select(0, rows)
                v = state["exp_avg_sq"].index_select(0, rows)
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
                p.index_add_(0, rows, m.div_(v.sqrt_().add_(group["eps"])), alpha=-step_size)
        return loss


def _rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct row ids of a sparse gradient and their summed values (what coalesce gives)."""
    if grad.is_coalesced():
        return grad.indices()[0], grad.values()
    idx, values = grad._indices()[0], grad._values()
    rows, inverse = torch.unique(idx, return_inverse=True)
    if len(rows) == len(idx):  # already distinct (one lookup of unique ids): nothing to sum
        return idx, values
    summed = torch.zeros((len(rows),) + values.shape[1:], dtype=values.dtype, device=values.device)
    return rows, summed.index_add_(0, inverse, values)
