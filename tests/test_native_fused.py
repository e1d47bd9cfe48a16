"""The native CSR product's fused variant and the LightGCN / NGCF steps on reused buffers (issue
36): bit for bit the composition they replace. Same operations, same order, same roundings; the checks
are ``torch.equal``, never a tolerance, at odd sizes (vector tails), every register width, 1-3
threads; and a pure reference of the product (numpy, one float32 rounding per operation in
entry order) shows the prefetch changes no value, at the end of each thread's block included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbench.native import library
from recbench.native import ops as native

needs_native = pytest.mark.skipif(library() is None, reason="native kernels do not build here")
DIMS = [16, 24, 32, 64, 128]  # 24: the plain loop; the others keep a row in vector registers


def _skewed_csr(rows: int, nnz: int, seed: int) -> native.CSR:
    """A square power-law-ish matrix: a few rows hold most entries, as a graph's hubs do."""
    gen = torch.Generator().manual_seed(seed)
    r = (torch.rand(nnz, generator=gen) ** 3 * rows).long()
    c = torch.randint(0, rows, (nnz,), generator=gen)
    return native.CSR(r, c, torch.rand(nnz, generator=gen), rows)


def reference_product(csr: native.CSR, x: torch.Tensor) -> torch.Tensor:
    """Row r = Σ_j w_j x_{col j} in entry order from zero, each product and each sum rounded to
    float32 (the kernel's definition, written without the kernel)."""
    indptr, col, w, xs = (csr.indptr.numpy(), csr.col.numpy(), csr.values.numpy(), x.numpy())
    out = np.zeros((csr.num_rows, x.shape[1]), dtype=np.float32)
    for r in range(csr.num_rows):
        acc = np.zeros(x.shape[1], dtype=np.float32)
        for j in range(indptr[r], indptr[r + 1]):
            acc = acc + w[j] * xs[col[j]]  # float32 * float32 row: rounded, then the sum
        out[r] = acc
    return torch.from_numpy(out)


@pytest.fixture
def tiny_data(tiny_paths):
    from recbench.config import DatasetConfig
    from recbench.data.prepare import load

    return load(DatasetConfig(name="tiny", protocol="random", test_ratio=0.2, valid_ratio=0.2),
                tiny_paths)


@needs_native
@pytest.mark.parametrize("dim", DIMS)
def test_the_prefetching_product_is_the_reference_at_any_thread_count(dim, at_threads):
    """Entries close to each block's end (where the prefetch stops) and a last row with many."""
    rows = 601
    csr = _skewed_csr(rows, 5000, dim)
    last = native.CSR(torch.full((40,), rows - 1), torch.arange(40), torch.rand(40), rows)
    gen = torch.Generator().manual_seed(dim)
    x = torch.randn(rows, dim, generator=gen)
    for m in (csr, last):
        want = reference_product(m, x)
        for got in at_threads(lambda m=m: m.matmul(x)):
            assert torch.equal(got, want)


@needs_native
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("rows", [7, 997, 3001])
def test_the_fused_product_is_the_composition_bitwise(dim, rows, at_threads):
    csr = _skewed_csr(rows, rows * 12, rows + dim)
    gen = torch.Generator().manual_seed(rows * dim)
    x, other = torch.randn(rows, dim, generator=gen), torch.randn(rows, dim, generator=gen)
    alpha = torch.tensor(1 / 3)  # a float32 0-d tensor, as LightGCN's model.alpha[l]
    want = csr.matmul(x) + alpha * other  # the product rounded, then the sum
    for got in at_threads(lambda: csr.matmul_add_scaled(x, other, float(alpha))):
        assert torch.equal(got, want)
    h = csr.matmul(x)  # one rounding instead of two is told apart: the check above can fail
    assert not torch.equal(want, (h.double() + alpha.double() * other.double()).float())


@needs_native
def test_the_fused_product_refuses_overlapping_tables():
    csr = _skewed_csr(50, 300, 0)
    x, other = torch.randn(50, 16), torch.randn(50, 16)
    with pytest.raises(ValueError, match="neither x nor"):
        csr.matmul_add_scaled(x, other, 0.5, out=other)
    with pytest.raises(ValueError, match="neither x nor"):
        csr.matmul_add_scaled(x, other, 0.5, out=x)
    with pytest.raises(ValueError, match="expected"):
        csr.matmul_add_scaled(x, torch.randn(49, 16), 0.5)


def lightgcn_forward_fresh(step):
    """NativeLightGCNStep.forward_saved before issue 36, op for op: the reference."""
    alpha, h = step.model.alpha, step.model.emb.weight.detach()
    out = alpha[0] * h
    for layer in range(step.model.num_layers):
        h = step.kernels.spmm(h)
        out.add_(h, alpha=float(alpha[layer + 1]))
    return out, None


@needs_native
@pytest.mark.parametrize("layers,dim", [(3, 64), (2, 24), (1, 128)])
def test_native_lightgcn_step_is_the_composed_step_bitwise(tiny_data, layers, dim):
    """The fused backward and the buffers against the step before them (the forward above,
    the backward :meth:`LightGCNStep.propagate_back`'s composition on the native products),
    twice through the buffers, then a few trained epochs: the same weights."""
    from recbench.models.gnn.lightgcn import LightGCNStep
    from tests.test_gnn import make_trainer

    trainers = [make_trainer(tiny_data, "lightgcn", reg=0.01, emb_dim=dim, num_layers=layers)
                for _ in range(2)]
    fused, composed = trainers
    assert fused.kernels().path == "native"
    step = fused.step
    off = fused.model.num_users
    for start in (0, 32):
        want, _ = lightgcn_forward_fresh(step)
        out, _ = step.forward_saved()
        assert torch.equal(out, want)
        u, p = fused.users[start:start + 32], fused.items[start:start + 32]
        _, grad_out = step.kernels.score_gradient(out, u, p + off, p.flip(0) + off)
        assert torch.equal(step.propagate_back(grad_out, out, None),
                           LightGCNStep.propagate_back(step, grad_out.clone(), want, None))
    composed.step.forward_saved = lambda: lightgcn_forward_fresh(composed.step)
    composed.step.propagate_back = lambda g, o, s: LightGCNStep.propagate_back(
        composed.step, g, o, s)
    for epoch in range(3):
        for t in trainers:
            t.train_epoch(epoch)
    assert torch.equal(fused.model.emb.weight, composed.model.emb.weight)

def reference_l2_scatter(table: np.ndarray, rows: list[np.ndarray], alpha: float,
                         grad: np.ndarray) -> float:
    """kernels.c's l2_scatter without the kernel: lists u, p, n in turn, each row in batch
    order: ``g += alpha * e`` (product rounded, then the sum, float32) and the squares summed
    in double, each row's as the kernel's ``dot`` (8 float32 partial sums, then a tail, then
    the partials in order)."""
    alpha32, sq = np.float32(alpha), 0.0
    for index in rows:
        for r in index:
            e = table[r]
            grad[r] = grad[r] + alpha32 * e
            dim, acc = len(e), np.zeros(8, dtype=np.float32)
            for k in range(0, dim - dim % 8, 8):
                acc = acc + e[k:k + 8] * e[k:k + 8]
            s = np.float32(0)
            for k in range(dim - dim % 8, dim):
                s = np.float32(s + e[k] * e[k])
            for j in range(8):
                s = np.float32(s + acc[j])
            sq += float(s)
    return sq / 2


@needs_native
@pytest.mark.parametrize("dim", [16, 24])
@pytest.mark.parametrize("batch", [1, 7, 8, 9, 300])
@pytest.mark.parametrize("k", [1, 3])
def test_the_prefetching_l2_scatter_is_the_reference(dim, batch, k):
    """Batches shorter than, at and past the prefetch distance (8 triples), rows repeated;
    ``k`` negatives a positive (n holds batch · k rows)."""
    gen = torch.Generator().manual_seed(batch * dim)
    table = torch.randn(40, dim, generator=gen)
    u, p, n = (torch.randint(0, 40, (size,), generator=gen) for size in (batch, batch, batch * k))
    grad = torch.randn(40, dim, generator=gen)
    want = grad.numpy().copy()
    want_sq = reference_l2_scatter(table.numpy(), [u.numpy(), p.numpy(), n.numpy()], 0.3, want)
    assert native.l2_scatter(table, u, p, n, 0.3, grad) == want_sq
    assert torch.equal(grad, torch.from_numpy(want))


def ngcf_forward_fresh(step):
    """NativeNGCFStep.forward_saved before issue 36's buffers, op for op: the reference."""
    model = step.model
    p = model.message_dropout.p if model.training else 0.0
    h, dim = model.emb.weight.detach(), model.emb.embedding_dim
    full = torch.empty(len(h), dim * (model.num_layers + 1))
    full[:, :dim] = h
    saved = []
    for layer in range(model.num_layers):
        side = step.kernels.spmm(h)
        x1, x2 = native.ngcf_mix(side, h)
        w1, w2 = model.w1[layer], model.w2[layer]
        pre = torch.addmm(w1.bias + w2.bias, x1, w1.weight.T).addmm_(x2, w2.weight.T)
        mask = torch.empty_like(pre).bernoulli_(1 - p) if p > 0 else None
        out, norm = native.ngcf_activate(pre, mask, 1 - p, model.negative_slope,
                                         full[:, (layer + 1) * dim:(layer + 2) * dim])
        saved.append((h, side, x1, x2, pre, mask, norm))
        h = out
    return full, saved


def ngcf_back_fresh(step, grad_out, out, saved):
    """NativeNGCFStep.propagate_back before issue 36's buffers, op for op: the reference."""
    model, dim = step.model, step.model.emb.embedding_dim
    keep = 1 - model.message_dropout.p
    grad_h = None
    for layer in range(model.num_layers - 1, -1, -1):
        h, side, x1, x2, pre, mask, norm = saved[layer]
        cols = slice((layer + 1) * dim, (layer + 2) * dim)
        grad_pre, bias = native.ngcf_activate_back(grad_out[:, cols], out[:, cols], norm,
                                                   grad_h, mask, keep, pre,
                                                   model.negative_slope)
        w1, w2 = model.w1[layer], model.w2[layer]
        w1.weight.grad, w2.weight.grad = grad_pre.T @ x1, grad_pre.T @ x2
        w1.bias.grad, w2.bias.grad = bias, bias.clone()
        a, b = native.ngcf_mix_back(grad_pre @ w1.weight, grad_pre @ w2.weight, h, side)
        grad_h = step.kernels.spmm_transposed(a, add_to=b)
    return grad_h + grad_out[:, :dim]


@needs_native
@pytest.mark.parametrize("dropout,layers", [(0.0, 3), (0.1, 2)])
def test_native_ngcf_step_with_buffers_is_the_fresh_step_bitwise(tiny_data, dropout, layers):
    """Buffers reused across steps (issue 36) against the step that allocated every table:
    the same output, gradients and (over a few epochs, twice through every buffer) weights."""
    from tests.test_gnn import make_trainer

    trainers = [make_trainer(tiny_data, "ngcf", reg=0.01, emb_dim=16, num_layers=layers,
                             message_dropout=dropout) for _ in range(2)]
    buffered, fresh = trainers
    assert buffered.kernels().path == "native"
    step = buffered.step
    params = list(buffered.model.parameters())

    def one_step(forward, backward):
        torch.manual_seed(7)  # the dropout masks' draws
        out, saved = forward()
        u, p = buffered.users[:32], buffered.items[:32]
        off = buffered.model.num_users
        _, grad_out = step.kernels.score_gradient(out, u, p + off, p.flip(0) + off)
        grad = backward(grad_out, out, saved)
        return [out.clone(), grad.clone()] + [q.grad.clone() for q in params[1:]]

    for _ in range(2):  # the second time through the buffers, too
        want = one_step(lambda: ngcf_forward_fresh(step),
                        lambda g, o, s: ngcf_back_fresh(step, g.clone(), o, s))
        got = one_step(step.forward_saved, step.propagate_back)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
    fresh.step.forward_saved = lambda: ngcf_forward_fresh(fresh.step)
    fresh.step.propagate_back = lambda g, o, s: ngcf_back_fresh(fresh.step, g, o, s)
    for epoch in range(3):
        for t in trainers:
            torch.manual_seed(epoch)
            t.train_epoch(epoch)
    for a, b in zip(buffered.model.parameters(), fresh.model.parameters(), strict=True):
        assert torch.equal(a, b)


@needs_native
def test_ngcf_kernels_write_into_given_tables_and_refuse_aliases():
    gen = torch.Generator().manual_seed(0)
    side, h = torch.randn(30, 16, generator=gen), torch.randn(30, 16, generator=gen)
    x1, x2 = native.ngcf_mix(side, h)
    into = (torch.empty(30, 16), torch.empty(30, 16))
    got = native.ngcf_mix(side, h, out=into)
    assert got[0] is into[0] and torch.equal(got[0], x1) and torch.equal(got[1], x2)
    with pytest.raises(ValueError, match="distinct"):
        native.ngcf_mix(side, h, out=(h, into[1]))
    with pytest.raises(ValueError, match="not be the tables read"):
        native.ngcf_mix_back(side, h, h.clone(), h.clone(), out=(side, into[1]))
    with pytest.raises(ValueError):
        native.ngcf_mix(side, h, out=(torch.empty(29, 16), into[1]))
