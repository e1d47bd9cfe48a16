"""The native CSR product against a pure reference (issue 36): numpy, one float32 rounding per
operation in entry order, checked with ``torch.equal`` at every register width and 1-3 threads:
the prefetch changes no value, at the end of each thread's block included."""

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
def at_threads():
    before = torch.get_num_threads()

    def run(fn):
        out = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            out.append(fn())
        return out

    yield run
    torch.set_num_threads(before)


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
