"""The native kernels (recbench/native): each against the torch ops it replaces, and the off
switch. Skipped where no C compiler builds them (the torch path is then the only one)."""

from __future__ import annotations

import pytest
import torch

from recbench.native import build, library, status
from recbench.native import ops as native
from recbench.train.trainers import bpr_row_gradients, l2_value

needs_native = pytest.mark.skipif(library() is None, reason="native kernels do not build here")


def test_off_switch_and_status(monkeypatch):
    monkeypatch.setenv(build.DISABLE_ENV, "0")
    assert library() is None
    assert status() == "off: RECBENCH_NATIVE=0"
    monkeypatch.delenv(build.DISABLE_ENV)
    assert status().startswith(("on: ", "off: "))


@needs_native
@pytest.mark.parametrize("dim", [8, 16, 64, 70])  # 8, 70: the plain loop; 16, 64: registers
def test_csr_product_is_the_dense_one(dim):
    gen = torch.Generator().manual_seed(0)
    rows, cols = torch.randint(0, 30, (200,), generator=gen), torch.randint(0, 40, (200,),
                                                                             generator=gen)
    values = torch.rand(200, generator=gen)
    dense = torch.zeros(30, 40).index_put_((rows, cols), values, accumulate=True)
    x = torch.randn(40, dim, generator=gen)
    csr = native.CSR(rows, cols, values, 30)
    assert torch.allclose(csr.matmul(x), dense @ x, atol=1e-5)
    base = torch.randn(30, dim, generator=gen)
    assert torch.allclose(csr.matmul(x, out=base.clone(), accumulate=True), base + dense @ x,
                          atol=1e-5)


@needs_native
def test_bpr_and_l2_scatter_are_the_gathered_ones():
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(12, 24, generator=gen)
    u, p, n = (torch.randint(0, 12, (40,), generator=gen) for _ in range(3))
    n[:3] = p[:3]  # p == n: the two rows' updates cancel
    loss, rows_u, rows_p, rows_n = bpr_row_gradients(table[u], table[p], table[n])
    want = torch.zeros_like(table)
    for index, rows in ((u, rows_u), (p, rows_p), (n, rows_n)):
        want.index_add_(0, index, rows)
    got = torch.zeros_like(table)
    assert native.bpr_scatter(table, u, p, n, got) == pytest.approx(float(loss), rel=1e-6)
    assert torch.allclose(got, want, atol=1e-7)
    grad = torch.zeros_like(table)
    half_sq = native.l2_scatter(table, u, p, n, 0.5, grad)
    assert half_sq == pytest.approx(float(l2_value(table[u], table[p], table[n])), rel=1e-6)
    want = torch.zeros_like(table)
    for index in (u, p, n):
        want.index_add_(0, index, table[index], alpha=0.5)
    assert torch.allclose(grad, want, atol=1e-6)


@needs_native
def test_kernels_refuse_what_they_cannot_read():
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match="contiguous CPU"):
        native.ngcf_mix(x.T, x.T)
    with pytest.raises(ValueError, match="contiguous CPU"):
        native.ngcf_mix(x.double(), x.double())


@needs_native
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_native_adam_is_torchs(weight_decay):
    """NativeAdam's weights follow torch.optim.Adam's (multi-tensor) to float rounding, its
    state is torch's (a checkpoint loads into either), and what it does not cover (amsgrad)
    steps through torch."""
    from recbench.native.adam import NativeAdam

    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 4), (4,), (33, 5)]
    start = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(6)]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    ref = [torch.nn.Parameter(t.clone()) for t in start]
    opt = NativeAdam(ours, lr=0.05, weight_decay=weight_decay, foreach=True)
    reference = torch.optim.Adam(ref, lr=0.05, weight_decay=weight_decay, foreach=True)
    for step in grads:
        for params, o in ((ours, opt), (ref, reference)):
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            o.step()
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    loaded = torch.optim.Adam([torch.nn.Parameter(t.clone()) for t in start], lr=0.05)
    loaded.load_state_dict(opt.state_dict())
    assert float(loaded.state_dict()["state"][0]["step"]) == len(grads)
    amsgrad = NativeAdam([torch.nn.Parameter(start[0].clone())], lr=0.05, amsgrad=True)
    assert not amsgrad._native()
