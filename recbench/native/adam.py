"""Adam with its update as one native loop per parameter (``kernels.c: adam_update``).

Why: torch's multi-tensor Adam runs ~10 element-wise kernels over every parameter each step,
a large share of BPR-MF's step once its gradient is one native loop (figures:
docs/benchmarks.md). One pass over each tensor does the
same arithmetic, op for op as torch 2.2's ``_multi_tensor_adam`` (lerp for the first moment,
``mul_`` + ``addcmul_`` for the second, ``addcdiv_`` for the step), so weights agree with
``torch.optim.Adam`` to float rounding. The state is torch's (``step``, ``exp_avg``,
``exp_avg_sq``), so checkpoints load either way. Anything the loop does not cover (amsgrad,
maximize, a non-float32 or non-contiguous tensor, a GPU) steps through ``torch.optim.Adam``.
Taken only by the trainers whose step is native (``trainers.make_optimizer(native_step=True)``).
"""

from __future__ import annotations

import torch

from recbench.native.build import library
from recbench.native.ops import _check, _ptr, threads


class NativeAdam(torch.optim.Adam):
    def _native(self) -> bool:
        if library() is None:
            return False
        for group in self.param_groups:
            if (group["amsgrad"] or group["maximize"] or group["capturable"]
                    or group["differentiable"] or group.get("fused")):
                return False
            for p in group["params"]:
                if p.grad is None:
                    continue
                if (p.dtype != torch.float32 or p.device.type != "cpu" or p.grad.is_sparse
                        or not p.is_contiguous() or not p.grad.is_contiguous()):
                    return False
        return True

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None or not self._native():
            return super().step(closure)
        lib = library()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # torch's own initial state (Adam._init_group)
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p,
                                                           memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                _check(p, p.grad, m, v)
                if not p.shape == p.grad.shape == m.shape == v.shape:
                    raise ValueError(f"Adam state of shape {tuple(m.shape)} / {tuple(v.shape)} "
                                     f"for a parameter of shape {tuple(p.shape)}")
                lib.adam_update(_ptr(p), _ptr(p.grad), _ptr(m), _ptr(v), p.numel(),
                                -group["lr"] / (1 - beta1 ** step), 1 - beta1, beta2, 1 - beta2,
                                (1 - beta2 ** step) ** 0.5, group["eps"], group["weight_decay"],
                                threads())
        return None
