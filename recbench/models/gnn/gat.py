"""GAT (Veličković et al., ICLR 2018), multi-head, as an encoder of the user-item graph.

Hidden layers concatenate ``num_heads`` heads of ``emb_dim / num_heads`` (``dgl.nn.GATConv``);
the last layer averages ``num_heads`` heads of ``emb_dim``, as the paper does for its output
layer. Edge dropout is GAT's attention dropout.

On the full training graph (full-graph training and every evaluation) a layer does not run
``GATConv.forward``: :func:`gat_layer` computes the same function from the same parameters
(``fc``, ``attn_l``, ``attn_r``, ``bias``) with the edges kept sorted by destination, the
edge softmax as tensor ops whose per-node reductions are DGL's fused ``copy_e_sum`` /
``copy_e_max`` (no per-head edge weight: fast), and the weighted aggregation as one
block-diagonal CSR product with int32 indices over all heads (:class:`HeadSpMM`, backward by
the transposed CSR and ``torch.sparse.sampled_addmm``). Why: DGL 2.1's CPU kernels for a per-head edge weight
(``u_mul_e_sum`` and its backward, ``u_add_v``, ``edge_softmax``) took most of a GAT epoch;
the torch CSR kernels compute the same sums several times faster (figures:
docs/benchmarks.md). Without attention dropout a layer is one :class:`AttentionAggregate`
(the softmax normalised after the product, every edge tensor head-major). Sampled blocks
keep ``GATConv`` (their graphs change every step, so nothing is worth caching).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import dgl
import torch
from dgl.nn import GATConv
from pydantic import model_validator
from torch.nn import functional as F

from recbench.config import PosInt, check_heads_divide
from recbench.csr import row_pointers
from recbench.models.gnn.base import ConvEncoder, GNNArchitecture, build_gnn, make_graph_trainer
from recbench.seeding import drawing_from
from recbench.train.api import RunContext


class GATConfig(GNNArchitecture):
    name: Literal["gat"]
    num_heads: PosInt = 4
    combine: Literal["mean", "last"] = "mean"
    negative_slope: float = 0.2

    @model_validator(mode="after")
    def _heads_divide(self) -> GATConfig:
        check_heads_divide(self.emb_dim, self.num_heads, "emb_dim")  # num_heads >= 1: PosInt
        return self


class HeadCSR:
    """The full graph's edges sorted by destination, as the index arrays of a block-diagonal
    ``(H*N_dst, H*N_src)`` CSR matrix (one diagonal block per head) and of its transpose, and
    as a DGL graph with the same edge order for the per-node reductions of the edge softmax."""

    def __init__(self, g, num_heads: int):
        src, dst = g.edges()
        self.num_src, self.num_dst, self.heads = g.num_src_nodes(), g.num_dst_nodes(), num_heads
        order = torch.argsort(dst, stable=True)
        self.src, self.dst = src[order], dst[order]
        self.crow, self.col = self._block_csr(self.dst, self.src, self.num_dst, self.num_src)
        self.t_order = torch.argsort(self.src, stable=True)  # dst-sorted -> src-sorted edges
        self.t_crow, self.t_col = self._block_csr(self.src[self.t_order], self.dst[self.t_order],
                                                  self.num_src, self.num_dst)
        self._pattern: torch.Tensor | None = None
        self.has_in_edges = torch.bincount(self.dst, minlength=self.num_dst) > 0
        self.ones = torch.ones(self.heads * self.num_src, 1, device=src.device)  # row sums
        # edge i of these graphs is edge i of the dst-sorted order: copy_e_sum/copy_e_max over
        # (E, H) edge values are DGL's fused segment reductions (faster than a scatter or a CSR
        # product with a 0/1 matrix: docs/benchmarks.md)
        num_nodes = max(self.num_src, self.num_dst)
        self.by_dst = dgl.graph((self.src, self.dst), num_nodes=num_nodes)
        self.by_src = dgl.graph((self.dst, self.src), num_nodes=num_nodes)

    def edge_dots(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Per head and edge e = j -> i, ``left[h, i] . right[h, j]``: (H, E), dst-sorted.

        ``left`` is ``(H*N_dst, D)``, ``right`` ``(H*N_src, D)``, both row-major. One
        ``sampled_addmm`` that writes into a pattern kept for the purpose (``out=`` the pattern
        itself): given another output, torch copies the pattern's indices and values into it
        first, and given a contiguous ``right.T`` it transposes it back into a copy — three
        passes of 2.6 MB each on ML-100K's four heads (docs/benchmarks.md). The result is the
        pattern's value buffer:
        valid until the next call, so callers consume or copy it at once."""
        if self._pattern is None:
            self._pattern = self.matrix(torch.zeros(self.heads, len(self.src),
                                                    device=self.src.device))
        pattern = self._pattern
        pattern.values().zero_()  # beta = 0 still multiplies the old values (inf * 0 = nan)
        torch.sparse.sampled_addmm(pattern, left, right.T, beta=0.0, out=pattern)
        return pattern.values().view(self.heads, -1)

    def segment_sum(self, values: torch.Tensor, by_src: bool = False) -> torch.Tensor:
        """Per-head sums of edge ``values`` (E, H) over each node's in-edges (or out-edges),
        (N, H)."""
        sums = dgl.ops.copy_e_sum(self.by_src if by_src else self.by_dst, values)
        return sums[: self.num_src if by_src else self.num_dst]

    def segment_max(self, values: torch.Tensor) -> torch.Tensor:
        """Per-head maxima of edge ``values`` (E, H) over each node's in-edges, (N_dst, H)."""
        return dgl.ops.copy_e_max(self.by_dst, values)[: self.num_dst]

    def _block_csr(self, rows: torch.Tensor, cols: torch.Tensor, num_rows: int,
                   num_cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row pointers and columns of H diagonal copies of the (row-sorted) edge list."""
        edges = len(rows)
        crow = row_pointers(rows, num_rows)
        crows = [crow[:-1] + h * edges for h in range(self.heads)]
        crows.append(torch.tensor([self.heads * edges], device=rows.device))
        crow_all = torch.cat(crows)
        col_all = torch.cat([cols + h * num_cols for h in range(self.heads)])
        # int32 indices where they fit: torch's CPU CSR kernels (MKL) convert int64 indices on
        # every product; int32 avoids that (docs/benchmarks.md)
        if self.heads * max(edges, num_rows, num_cols) < torch.iinfo(torch.int32).max:
            crow_all, col_all = crow_all.int(), col_all.int()
        return crow_all, col_all

    def matrix(self, values: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """The block-diagonal CSR with per-head, per-edge ``values`` (H, E), dst-sorted."""
        h = self.heads
        with warnings.catch_warnings():  # "sparse CSR support is in beta": these ops are tested
            warnings.simplefilter("ignore", UserWarning)
            if transpose:
                flat = values.index_select(1, self.t_order).reshape(-1)
                return torch.sparse_csr_tensor(self.t_crow, self.t_col, flat,
                                               (h * self.num_src, h * self.num_dst))
            return torch.sparse_csr_tensor(self.crow, self.col, values.reshape(-1),
                                           (h * self.num_dst, h * self.num_src))


class HeadSpMM(torch.autograd.Function):
    """``out[h, i] = sum over edges e = j->i of a[h, e] * x[h, j]`` for every head at once;
    ``x`` and ``out`` are head-major ``(H, N, D)``, so they stack into the block rows freely."""

    @staticmethod
    def forward(ctx, csr: HeadCSR, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.csr = csr
        ctx.save_for_backward(a, x)
        out = csr.matrix(a) @ x.reshape(-1, x.shape[-1])
        return out.view(csr.heads, csr.num_dst, -1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        csr = ctx.csr
        a, x = ctx.saved_tensors
        grad_rows = grad_out.reshape(-1, grad_out.shape[-1])
        grad_a = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_a = csr.edge_dots(grad_rows, x.reshape(-1, x.shape[-1])).clone()
        if ctx.needs_input_grad[2]:
            grad_x = (csr.matrix(a, transpose=True) @ grad_rows).view(csr.heads, csr.num_src, -1)
        return None, grad_a, grad_x


class EdgeAttention(torch.autograd.Function):
    """GAT's attention: ``softmax over in-edges of leaky_relu(el[src] + er[dst])``, (H, E).

    One function with a hand-written backward, so every per-node reduction is one of DGL's
    fused segment reductions (:meth:`HeadCSR.segment_sum`) instead of the scatter-adds autograd
    would chain. Inside, edge tensors are edge-major (E, H): DGL's layout, and a gather of a
    node's H values is one contiguous row."""

    @staticmethod
    def forward(ctx, csr: HeadCSR, el: torch.Tensor, er: torch.Tensor, slope: float):
        pre = el.T.contiguous().index_select(0, csr.src) + er.T.contiguous().index_select(0, csr.dst)
        e = F.leaky_relu(pre, slope)
        ex = torch.exp(e - csr.segment_max(e).index_select(0, csr.dst))
        a = ex / csr.segment_sum(ex).index_select(0, csr.dst)  # (E, H)
        ctx.csr, ctx.slope = csr, slope
        ctx.save_for_backward(a, pre > 0)
        return a.T.contiguous()

    @staticmethod
    def backward(ctx, grad_a: torch.Tensor):
        csr = ctx.csr
        a, positive = ctx.saved_tensors
        weighted = a * grad_a.T
        grad_e = weighted - a * csr.segment_sum(weighted).index_select(0, csr.dst)
        grad_pre = torch.where(positive, grad_e, grad_e * ctx.slope)
        return (None, csr.segment_sum(grad_pre, by_src=True).T, csr.segment_sum(grad_pre).T,
                None)


class AttentionAggregate(torch.autograd.Function):
    """GAT's attention and aggregation in one: ``out[h, i] = sum over edges e = j->i of
    softmax_i(leaky_relu(el[h, j] + er[h, i])) x[h, j]``, ``(H, N_dst, D)``.

    Why (issue 15, GAT ≤ 2 s/epoch): :class:`EdgeAttention` + :class:`HeadSpMM` normalise every
    edge's weight, and move (E, H) edge tensors between DGL's edge-major and the CSR's
    head-major layout: ~12 passes over the 650k edge values per layer, forward and back. Here
    the softmax is left unnormalised until after the product (``out = (A_ex x) / (A_ex 1)``,
    the same function), every edge tensor stays head-major (the CSR's values as they are),
    and the exponent is shifted by one bound per head, ``leaky_relu(max el + max er)``, which
    no logit exceeds (the softmax does not change with the shift, so the gradient ignores it).
    Where a node's logits all lie far (> 60) below that bound, its shift is its own maximum
    instead (``copy_e_max``), so no weight underflows. Without attention dropout only; with it
    :func:`gat_layer` keeps the two functions."""

    FAR = 60.0  # e^-60: a node whose sum is below this gets its own shift

    @staticmethod
    def forward(ctx, csr: HeadCSR, el: torch.Tensor, er: torch.Tensor, x: torch.Tensor,
                slope: float) -> torch.Tensor:
        heads, dim = csr.heads, x.shape[-1]
        pre = el.index_select(1, csr.src) + er.index_select(1, csr.dst)  # (H, E)
        logit = F.leaky_relu(pre, slope)
        bound = F.leaky_relu(el.max(1).values + er.max(1).values, slope)  # (H,)
        ex = torch.exp(logit - bound[:, None])
        weights = csr.matrix(ex)
        sums = (weights @ csr.ones).view(heads, csr.num_dst)
        if bool(((sums < math.exp(-AttentionAggregate.FAR)) & csr.has_in_edges).any()):
            top = csr.segment_max(logit.T.contiguous()).T  # (H, N_dst): exact per-node maxima
            ex = torch.exp(logit - top.index_select(1, csr.dst))
            weights = csr.matrix(ex)
            sums = (weights @ csr.ones).view(heads, csr.num_dst)
        sums = torch.where(csr.has_in_edges, sums, torch.ones_like(sums))  # no in-edges: out 0
        out = (weights @ x.reshape(-1, dim)).view(heads, csr.num_dst, dim)
        out = out.div_(sums[..., None])
        ctx.csr, ctx.slope = csr, slope
        ctx.save_for_backward(pre, ex, x, sums, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        csr = ctx.csr
        pre, ex, x, sums, out = ctx.saved_tensors
        heads, dim = csr.heads, x.shape[-1]
        grad_u = grad_out / sums[..., None]  # d/d(A_ex x)
        radial = (grad_u * out).sum(-1)  # d/d(A_ex 1) = -radial
        dots = csr.edge_dots(grad_u.reshape(-1, dim), x.reshape(-1, dim))
        grad_ex = torch.sub(dots, radial.index_select(1, csr.dst)).mul_(ex)  # -> d/d logit
        grad_x = (csr.matrix(ex, transpose=True) @ grad_u.reshape(-1, dim)).view(
            heads, csr.num_src, dim)
        grad_pre = torch.ops.aten.leaky_relu_backward(grad_ex, pre, ctx.slope, False)
        grad_el = pre.new_zeros(heads, csr.num_src).index_add_(1, csr.src, grad_pre)
        grad_er = pre.new_zeros(heads, csr.num_dst).index_add_(1, csr.dst, grad_pre)
        return None, grad_el, grad_er, grad_x, None


def gat_layer(conv: GATConv, csr: HeadCSR, feat: torch.Tensor) -> torch.Tensor:
    """``conv(g, feat)`` head-major, ``(H, N, D)``, on the graph ``csr`` was built from
    (GATConv's own math and parameters: no feature dropout, residual or activation, which this
    encoder never sets). Edge tensors are (heads, edges), the layout of the block-diagonal
    matrix's values, and ``fc`` is applied per head so nothing needs transposing."""
    heads, out = conv._num_heads, conv._out_feats
    weight = conv.fc.weight.view(heads, out, -1).transpose(1, 2)  # (H, in, D)
    ft = torch.matmul(feat, weight)  # (H, N, D)
    el = (ft * conv.attn_l.view(heads, 1, out)).sum(-1)  # (H, N)
    er = (ft * conv.attn_r.view(heads, 1, out)).sum(-1)
    slope = conv.leaky_relu.negative_slope
    if conv.training and conv.attn_drop.p > 0:  # dropout acts on the normalised weights
        rst = HeadSpMM.apply(csr, conv.attn_drop(EdgeAttention.apply(csr, el, er, slope)), ft)
    else:
        rst = AttentionAggregate.apply(csr, el, er, ft, slope)
    return rst + conv.bias.view(heads, 1, out) if conv.has_explicit_bias else rst


class GAT(ConvEncoder):
    """Output ``(num_outputs, emb_dim)``."""

    def __init__(self, *, generator: torch.Generator, num_heads: int = 4,
                 negative_slope: float = 0.2, **kwargs):
        super().__init__(generator=generator, **kwargs)
        dim, layers = self.emb.embedding_dim, self.num_layers
        with drawing_from(generator):  # GATConv's own Glorot init
            for index in range(layers):
                out = dim if index == layers - 1 else dim // num_heads
                self.convs.append(GATConv(dim, out, num_heads, attn_drop=self.edge_dropout,
                                          negative_slope=negative_slope,
                                          allow_zero_in_degree=True))
        self.num_heads = num_heads
        self._csr: tuple | None = None  # (graph, HeadCSR) of the full graph, built on first use

    def edge_mask(self, g) -> None:
        return None  # GATConv drops attention weights itself (attn_drop)

    def full_graph_csr(self, g) -> HeadCSR | None:
        """The CSR form of ``g`` when it is the full training graph (cached); else None."""
        if g is not self.graph or g.is_block:
            return None
        if self._csr is None or self._csr[0] is not g:
            self._csr = (g, HeadCSR(g, self.num_heads))
        return self._csr[1]

    def layer(self, index: int, g, h: torch.Tensor) -> torch.Tensor:
        csr = self.full_graph_csr(g)
        last = index == len(self.convs) - 1
        if csr is None:
            out = self.convs[index](g, h)  # (N, heads, out)
            return out.mean(1) if last else out.flatten(1)
        out = gat_layer(self.convs[index], csr, h)  # (heads, N, out)
        return out.mean(0) if last else out.transpose(0, 1).reshape(len(h), -1)


def make_gat_trainer(cfg: GATConfig, ctx: RunContext):
    model = build_gnn(GAT, cfg=cfg, ctx=ctx, num_heads=cfg.num_heads, combine=cfg.combine,
                      negative_slope=cfg.negative_slope)
    return make_graph_trainer(model, cfg, ctx)
