"""The native kernels on several threads (issue 36): the same floats at 1, 2 and 3 threads (each
output element is written by one thread and summed in the serial order), and one OpenMP runtime
in the process (the kernels' libgomp is torch's own, not a second pool spinning beside it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recbench.native import library
from recbench.native import ops as native

needs_native = pytest.mark.skipif(library() is None, reason="native kernels do not build here")


def _skewed_csr(rows: int, cols: int, nnz: int, seed: int) -> native.CSR:
    """A power-law-ish matrix: a few rows hold most entries, as a user-item graph's hubs do."""
    gen = torch.Generator().manual_seed(seed)
    r = (torch.rand(nnz, generator=gen) ** 3 * rows).long()
    c = torch.randint(0, cols, (nnz,), generator=gen)
    return native.CSR(r, c, torch.rand(nnz, generator=gen), rows)


@needs_native
@pytest.mark.parametrize("dim", [16, 24, 64, 128])
def test_csr_product_is_bitwise_the_same_at_any_thread_count(dim, at_threads):
    csr = _skewed_csr(3000, 2500, 40000, dim)
    gen = torch.Generator().manual_seed(1)
    x, base = torch.randn(2500, dim, generator=gen), torch.randn(3000, dim, generator=gen)
    plain = at_threads(lambda: csr.matmul(x))
    added = at_threads(lambda: csr.matmul(x, out=base.clone(), accumulate=True))
    for got in (plain, added):
        assert torch.equal(got[0], got[1]) and torch.equal(got[0], got[2])
    dense = torch.zeros(3000, 2500).index_put_(
        (torch.repeat_interleave(torch.arange(3000), csr.indptr.diff()), csr.col), csr.values,
        accumulate=True)
    torch.testing.assert_close(plain[1], dense @ x, atol=1e-4, rtol=1e-5)


@needs_native
def test_ngcf_kernels_and_adam_are_bitwise_the_same_at_any_thread_count(at_threads):
    from recbench.native.adam import NativeAdam

    gen = torch.Generator().manual_seed(2)
    rows, dim = 4000, 64  # above the kernels' one-thread floor
    side, h, pre = (torch.randn(rows, dim, generator=gen) for _ in range(3))
    mask = (torch.rand(rows, dim, generator=gen) > 0.1).float()
    g = torch.randn(rows, dim, generator=gen)
    wide_g = torch.randn(rows, 2 * dim, generator=gen)

    def ngcf():
        x1, x2 = native.ngcf_mix(side, h)
        normed = torch.empty(rows, 2 * dim)[:, dim:]
        out, norm = native.ngcf_activate(pre, mask, 0.9, 0.2, normed)
        gp, bias = native.ngcf_activate_back(wide_g[:, dim:], normed, norm, h, mask, 0.9, pre,
                                             0.2)
        a, b = native.ngcf_mix_back(g, h, side, pre)
        return x1, x2, out, norm, normed.clone(), gp, bias, a, b

    def adam():
        p = torch.nn.Parameter(side.clone())
        opt = NativeAdam([p], lr=0.01, weight_decay=1e-3)
        for _ in range(3):
            p.grad = g.clone()
            opt.step()
        return (p.detach(),)

    for fn in (ngcf, adam):
        one, two, three = at_threads(fn)
        for a, b, c in zip(one, two, three, strict=True):
            assert torch.equal(a, b) and torch.equal(a, c)


@needs_native
def test_one_openmp_runtime_in_the_process():
    """kernels.c links libgomp.so.1; torch's wheel bundles its own libgomp whose soname is the
    same, so the loader hands the kernels torch's copy: one thread pool, not two spinning.
    (faiss-cpu, imported by the GLA clustering, ships a libgomp of its own under another name;
    that one is faiss's business and is not counted here.)"""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no /proc/self/maps")
    from recbench.native.build import library

    library()
    gomp = {line.split()[-1] for line in maps.read_text().splitlines() if "libgomp" in line}
    ours = {path for path in gomp if "faiss" not in path}
    assert len(ours) <= 1, gomp
    assert all("/torch/" in path for path in ours), gomp


@pytest.fixture
def tiny_data(tiny_paths):
    from recbench.config import DatasetConfig
    from recbench.data.prepare import load

    return load(DatasetConfig(name="tiny", protocol="random", test_ratio=0.2, valid_ratio=0.2),
                tiny_paths)


@needs_native
def test_a_native_lightgcn_epoch_gives_the_same_weights_at_1_and_2_threads(tiny_data):
    """End to end: the native LightGCN step (CSR products on threads, serial BPR/L2 scatters,
    Adam) trains bit-identical weights at 1 and 2 threads (128-d: the products run split)."""
    from tests.test_gnn import make_trainer

    before = torch.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            trainer = make_trainer(tiny_data, "lightgcn", reg=0.01, emb_dim=128)
            assert trainer.kernels().path == "native"
            csr = trainer.step.kernels.csr  # above the kernels' one-thread floor: the product is split
            assert (csr.col.numel() + csr.num_rows) * 128 >= 32768
            torch.set_num_threads(threads)
            for epoch in range(2):
                trainer.train_epoch(epoch)
            weights.append(trainer.model.emb.weight.detach().clone())
    finally:
        torch.set_num_threads(before)
    assert torch.equal(weights[0], weights[1])
