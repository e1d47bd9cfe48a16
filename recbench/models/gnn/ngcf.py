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
from recbench.models.gnn.full_step import GraphKernels
from recbench.native import ops as native
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


class NGCFStep:
    """Full-graph NGCF with the BPR gradient written out instead of recorded by autograd.

    Why (issue 15): on ML-100K a step is ~60 small kernels, and autograd's share (zero-filled
    gradients for each slice, gather and concatenation, the recorded graph) was larger than the
    sparse products. The forward below is :meth:`NGCF.propagate` op for op (the same
    ``F.linear``, ``leaky_relu``, normalisation; message dropout draws its mask from the global
    generator exactly as ``nn.Dropout`` does on CPU), so the scores are bit-identical; it keeps
    each layer's input, Â-product, pre-activation and dropout mask, and the backward runs the
    chain rule layer by layer, Â^T over the reversed graph as in LightGCN. Gradients agree with
    autograd's to float rounding (tests/test_gnn.py). Used for full-graph training on a dense
    ego table without DropEdge (BPR, one non-hard negative); anything else takes autograd."""

    def __init__(self, model: NGCF, kernels: GraphKernels):
        self.model, self.kernels = model, kernels

    def applies(self) -> bool:
        return True  # message dropout's mask is drawn here as nn.Dropout draws it

    def forward_saved(self) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]]]:
        """The full-graph output F (N, d·(L+1)) and, per layer, what its backward reads:
        (input h, Âh, Âh + h, Âh ⊙ h, pre-activation, dropout scale or None, |output|)."""
        model = self.model
        p = model.message_dropout.p if model.training else 0.0
        h, dim = model.emb.weight, model.emb.embedding_dim
        full = torch.empty(len(h), dim * (model.num_layers + 1), dtype=h.dtype, device=h.device)
        full[:, :dim] = h
        saved = []  # in-place steps below give the same values as propagate's fresh tensors
        for layer in range(model.num_layers):
            side = self.kernels.spmm(h)
            x1, x2 = side + h, side * h
            pre = F.linear(x1, model.w1[layer].weight, model.w1[layer].bias).add_(
                F.linear(x2, model.w2[layer].weight, model.w2[layer].bias))
            out = F.leaky_relu(pre, model.negative_slope)
            scale = None
            if p > 0:  # at::dropout's CPU path: bernoulli_(1 - p), / (1 - p), multiply
                scale = torch.empty_like(out).bernoulli_(1 - p).div_(1 - p)
                out.mul_(scale)
            norm = out.norm(dim=1, keepdim=True)  # F.normalize: out / max(|out|, 1e-12)
            torch.div(out, norm.clamp(min=1e-12).expand_as(out),
                      out=full[:, (layer + 1) * dim:(layer + 2) * dim])
            saved.append((h, side, x1, x2, pre, scale, norm))
            h = out
        return full, saved

    def propagate_back(self, grad_out: torch.Tensor, out: torch.Tensor,
                       saved: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """dL/dE from dL/dF (F = ``out``); fills the layers' weight and bias ``.grad`` on the way."""
        model, dim = self.model, self.model.emb.embedding_dim
        grad_h = None
        for layer in range(model.num_layers - 1, -1, -1):
            h, side, x1, x2, pre, scale, norm = saved[layer]
            cols = slice((layer + 1) * dim, (layer + 2) * dim)
            grad_y, y = grad_out[:, cols], out[:, cols]
            # below eps F.normalize's divisor is a constant: no radial term there
            inv = norm.clamp(min=1e-12).reciprocal_()
            radial = (y * grad_y).sum(1, keepdim=True).mul_(norm > 1e-12)
            grad = torch.addcmul(grad_y, y, radial, value=-1).mul_(inv)
            if grad_h is not None:
                grad += grad_h
            if scale is not None:
                grad *= scale
            # leaky_relu's own backward kernel (faster than torch.where: docs/benchmarks.md)
            grad_pre = torch.ops.aten.leaky_relu_backward(grad, pre, model.negative_slope, False)
            w1, w2 = model.w1[layer], model.w2[layer]
            w1.weight.grad = grad_pre.T @ x1
            w2.weight.grad = grad_pre.T @ x2
            w1.bias.grad = grad_pre.sum(0)
            w2.bias.grad = w1.bias.grad.clone()
            g1, g2 = grad_pre @ w1.weight, grad_pre @ w2.weight
            grad_h = self.kernels.spmm_transposed(torch.addcmul(g1, g2, h),
                                          add_to=torch.addcmul(g1, g2, side))
        return grad_h + grad_out[:, :dim]


class NativeNGCFStep(NGCFStep):
    """:class:`NGCFStep` through the native kernels: each layer's element-wise stages fused
    into one pass forward and one back, Â / Â^T and the BPR rows from
    ``native_step.NativeGraphKernels``. Message dropout's mask is drawn as before
    (``bernoulli_`` on the global generator), so the function and the draws are
    :class:`NGCFStep`'s (tests/test_gnn.py checks both against autograd). The full-size
    tables a step writes (the output, each layer's Âh, mixes and activation, the backward's
    passes) live in the kernels' buffers (``NativeGraphKernels.buffer``) instead of ~25 fresh
    18-72 MB tensors a step at Gowalla size (issue 36); the floats are unchanged
    (tests/test_native_fused.py keeps the fresh-tensor step as the reference)."""

    def forward_saved(self) -> tuple[torch.Tensor, list[tuple]]:
        """As :meth:`NGCFStep.forward_saved`; per layer (h, Âh, x1, x2, pre, mask, norm)."""
        model = self.model
        p = model.message_dropout.p if model.training else 0.0
        h, dim = model.emb.weight.detach(), model.emb.embedding_dim
        kernels, shape = self.kernels, h.shape
        full = kernels.buffer("full", (len(h), dim * (model.num_layers + 1)))
        full[:, :dim] = h
        saved = []
        for layer in range(model.num_layers):
            side = kernels.csr.matmul(h, out=kernels.buffer(f"side{layer}", shape))
            x1, x2 = native.ngcf_mix(side, h, out=(kernels.buffer(f"x1_{layer}", shape),
                                                   kernels.buffer(f"x2_{layer}", shape)))
            w1, w2 = model.w1[layer], model.w2[layer]
            pre = torch.addmm(w1.bias + w2.bias, x1, w1.weight.T).addmm_(x2, w2.weight.T)
            mask = torch.empty_like(pre).bernoulli_(1 - p) if p > 0 else None
            out, norm = native.ngcf_activate(pre, mask, 1 - p, model.negative_slope,
                                             full[:, (layer + 1) * dim:(layer + 2) * dim],
                                             out=kernels.buffer(f"out{layer}", shape))
            saved.append((h, side, x1, x2, pre, mask, norm))
            h = out
        return full, saved

    def propagate_back(self, grad_out: torch.Tensor, out: torch.Tensor,
                       saved: list[tuple]) -> torch.Tensor:
        model, dim = self.model, self.model.emb.embedding_dim
        keep = 1 - model.message_dropout.p
        grad_h = None
        for layer in range(model.num_layers - 1, -1, -1):
            h, side, x1, x2, pre, mask, norm = saved[layer]
            cols = slice((layer + 1) * dim, (layer + 2) * dim)
            grad_pre, bias = native.ngcf_activate_back(
                grad_out[:, cols], out[:, cols], norm, grad_h, mask, keep, pre,
                model.negative_slope, out=self.kernels.buffer("grad_pre", pre.shape))
            w1, w2 = model.w1[layer], model.w2[layer]
            w1.weight.grad, w2.weight.grad = grad_pre.T @ x1, grad_pre.T @ x2
            w1.bias.grad, w2.bias.grad = bias, bias.clone()
            # two pairs in turn: this layer's b must not be grad_h, the last layer's
            a, b = native.ngcf_mix_back(
                grad_pre @ w1.weight, grad_pre @ w2.weight, h, side,
                out=(self.kernels.buffer(f"mix_a{layer % 2}", h.shape),
                     self.kernels.buffer(f"mix_b{layer % 2}", h.shape)))
            grad_h = self.kernels.spmm_transposed(a, add_to=b)  # b + Â^T a
        return grad_h + grad_out[:, :dim]


STEPS = {"torch": NGCFStep, "native": NativeNGCFStep}


def make_ngcf_trainer(cfg: NGCFConfig, ctx: RunContext):
    model = build_gnn(NGCF, cfg=cfg, ctx=ctx, negative_slope=cfg.negative_slope)
    return make_graph_trainer(model, cfg, ctx, steps=STEPS)
