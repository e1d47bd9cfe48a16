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
from recbench.models.gnn.full_step import GraphKernels
from recbench.train.api import RunContext


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


class LightGCNStep:
    """Full-graph LightGCN with the BPR gradient written out instead of recorded by autograd.

    The output is linear in the ego table, F = Σ_l α_l Â^l E, so dL/dE = Σ_l α_l (Â^T)^l G
    with G = dL/dF (:func:`~recbench.train.trainers.bpr_row_gradients`, three ``index_add_``).
    Autograd computes the same sums but, on ML-100K, spent more on zero-filled full-size
    gradients for every slice and gather (35 fills a step) and per-direction row scalings than
    on the sparse products. The forward is ``model.embed()`` itself, so the scores are bit for
    bit the autograd path's; the gradients agree to float rounding (tests/test_gnn.py). Used
    when the propagation is linear and deterministic: no message dropout here, and the rest
    :class:`~recbench.models.gnn.full_step.FullGraphBPR` asks; anything else takes autograd."""

    def __init__(self, model: LightGCN, kernels: GraphKernels):
        self.model, self.kernels = model, kernels

    def applies(self) -> bool:
        return self.model.message_dropout.p == 0

    def forward_saved(self) -> tuple[torch.Tensor, None]:
        return self.model.embed_nodes(), None

    def propagate_back(self, grad_out: torch.Tensor, out: torch.Tensor, saved: None
                       ) -> torch.Tensor:
        """dL/dE from dL/dF: the transposed layers applied in reverse order."""
        alpha = self.model.alpha
        grad = alpha[-1] * grad_out
        for layer in range(self.model.num_layers - 1, -1, -1):
            grad = self.kernels.spmm_transposed(grad) + alpha[layer] * grad_out
        return grad


class NativeLightGCNStep(LightGCNStep):
    """:class:`LightGCNStep` on the native kernels (``native_step.NativeGraphKernels``): the
    forward is ``propagate``'s sum over CSR products instead of ``model.embed()``, so training
    agrees with the torch step to float rounding (evaluation still scores through
    ``model.embed()``).

    Issue 36: each backward layer ``Â^T g + α G`` is one pass (``CSR.matmul_add_scaled``), and
    the full tables live in the kernels' buffers (``NativeGraphKernels.buffer``) instead of ~10
    fresh 18 MB tensors a step at Gowalla size. The floats are those of the composition
    (:meth:`LightGCNStep.propagate_back`, the reference in tests/test_native_fused.py): same
    operations, same order, same roundings."""

    def forward_saved(self) -> tuple[torch.Tensor, None]:
        alpha, h = self.model.alpha, self.model.emb.weight.detach()
        kernels = self.kernels
        out = torch.mul(alpha[0], h, out=kernels.buffer("out", h.shape))
        for layer in range(self.model.num_layers):  # h: Â^l E, into two buffers in turn
            h = kernels.csr.matmul(h, out=kernels.buffer("ab"[layer % 2], h.shape))
            out.add_(h, alpha=float(alpha[layer + 1]))
        return out, None  # read by this step's score and backward only

    def propagate_back(self, grad_out: torch.Tensor, out: torch.Tensor, saved: None
                       ) -> torch.Tensor:
        """dL/dE = Σ_l α_l (Â^T)^l G, each layer ``Â^T g + α_l G`` in one pass; the result is
        the kernels' ``grad`` buffer (``weight.grad`` until the next step overwrites it, as
        BPR-MF's step reuses its ``.grad``)."""
        alpha, kernels, layers = self.model.alpha, self.kernels, self.model.num_layers
        grad = torch.mul(alpha[-1], grad_out, out=kernels.buffer("a", grad_out.shape))
        for layer in range(layers - 1, -1, -1):
            into = kernels.buffer("grad" if layer == 0 else "ba"[(layers - 1 - layer) % 2],
                                  grad_out.shape)
            grad = kernels.csr_t.matmul_add_scaled(grad, grad_out, float(alpha[layer]),
                                                   out=into)
        return grad


STEPS = {"torch": LightGCNStep, "native": NativeLightGCNStep}


def make_lightgcn_trainer(cfg: LightGCNConfig, ctx: RunContext):
    model = build_gnn(LightGCN, cfg=cfg, ctx=ctx, alpha=cfg.alpha)
    return make_graph_trainer(model, cfg, ctx, steps=STEPS)
