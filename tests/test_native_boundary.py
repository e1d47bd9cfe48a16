"""The C boundary of the native kernels (issue 36): kernels.c's exported prototypes against the
ctypes signatures, every wrapper's refusal of what a C loop would misread, each kernel against
torch at every vector width (16/32/64/128 in registers, 24 on the plain loop), and a damaged or
foreign cached library rebuilt instead of mapped (a truncated one used to kill with SIGBUS)."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbench.native import build, library
from recbench.native import ops as native
from recbench.train.trainers import bpr_row_gradients, l2_value

needs_native = pytest.mark.skipif(library() is None, reason="native kernels do not build here")
DIMS = [16, 24, 32, 64, 128]  # 24: the plain loop; the others keep a row in vector registers
_C_TYPES = {"int64_t": ctypes.c_int64, "float": ctypes.c_float, "double": ctypes.c_double,
            "int": ctypes.c_int}


def exported_prototypes(source: str) -> dict[str, tuple[list, type | None]]:
    """Each non-static top-level function definition of a C file as (argtypes, restype) in
    ctypes terms: any pointer is ``c_void_p`` (ops.py passes ``data_ptr``s), scalars by type."""
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    found: dict[str, tuple[list, type | None]] = {}
    for ret, name, args in re.findall(r"^(\w+)\s+(\w+)\s*\(([^)]*)\)\s*\{", source, flags=re.M):
        if ret == "static":
            continue
        argtypes = []
        for arg in " ".join(args.split()).split(","):
            if "*" in arg:
                argtypes.append(ctypes.c_void_p)
                continue
            words = [w for w in arg.split() if w != "const"]
            if len(words) != 2 or words[0] not in _C_TYPES:
                raise ValueError(f"{name}: cannot map argument {arg.strip()!r}")
            argtypes.append(_C_TYPES[words[0]])
        found[name] = (argtypes, None if ret == "void" else _C_TYPES[ret])
    return found


def test_prototypes_in_kernels_c_are_the_ctypes_signatures():
    assert exported_prototypes(build.SOURCE.read_text()) == build.SIGNATURES


def test_the_prototype_check_sees_a_changed_argument():
    source = build.SOURCE.read_text().replace("float *out, int64_t rows, int64_t dim, "
                                              "int accumulate", "float *out, int rows, "
                                              "int64_t dim, int accumulate")
    assert exported_prototypes(source)["csr_spmm"] != build.SIGNATURES["csr_spmm"]
    assert "static_helper" not in exported_prototypes(
        "static void static_helper(int a) {\n}\nvoid f(const float *x, int64_t n) {\n}\n")


def _table_and_triples(rows: int = 12, dim: int = 16, batch: int = 40):
    gen = torch.Generator().manual_seed(5)
    table = torch.randn(rows, dim, generator=gen)
    u, p, n = (torch.randint(0, rows, (batch,), generator=gen) for _ in range(3))
    return table, u, p, n


@needs_native
@pytest.mark.parametrize("case", ["index past the end", "negative index", "lengths differ",
                                  "int32 index", "grad shape", "2-D index",
                                  "negatives not a multiple", "negatives without rows"])
def test_bpr_and_l2_scatter_refuse_bad_indices_and_shapes(case):
    table, u, p, n = _table_and_triples()
    grad = torch.zeros_like(table)
    if case == "index past the end":
        n[7] = len(table)
    elif case == "negative index":
        u[0] = -1
    elif case == "lengths differ":
        p = p[:-1]
    elif case == "int32 index":
        u = u.int()
    elif case == "grad shape":
        grad = torch.zeros(len(table) - 1, table.shape[1])
    elif case == "negatives not a multiple":
        n = torch.cat([n, n[:3]])
    elif case == "negatives without rows":
        u, p = u[:0], p[:0]
    else:
        u, p, n = u[:, None], p[:, None], n[:, None]
    with pytest.raises(ValueError):
        native.bpr_scatter(table, u, p, n, grad)
    with pytest.raises(ValueError):
        native.l2_scatter(table, u, p, n, 0.1, grad)
    assert not grad.any()  # refused before the C loop touched anything


@needs_native
def test_mf_bpr_scatter_checks_each_table_separately():
    users, u, _, _ = _table_and_triples(rows=5)
    items, _, p, n = _table_and_triples(rows=12)
    u = u % 5
    gu, gi = torch.zeros_like(users), torch.zeros_like(items)
    native.mf_bpr_scatter(users, items, u, p, n, 0.0, gu, gi)  # fine as it is
    with pytest.raises(ValueError, match="outside a table of 5 rows"):
        native.mf_bpr_scatter(users, items, p, p, n, 0.0, gu, gi)  # item rows as users
    with pytest.raises(ValueError, match="width"):
        native.mf_bpr_scatter(users, items[:, :8].contiguous(), u, p, n, 0.0, gu, gi)
    with pytest.raises(ValueError, match="one shape"):
        native.mf_bpr_scatter(users, items, u, p, n, 0.0, gi, gu)


@needs_native
def test_csr_product_refuses_a_short_x_and_bad_entries():
    rows, cols = torch.tensor([0, 1, 2]), torch.tensor([0, 4, 9])
    csr = native.CSR(rows, cols, torch.ones(3), 3)
    csr.matmul(torch.randn(10, 16))
    with pytest.raises(ValueError, match="column 9"):
        csr.matmul(torch.randn(9, 16))
    with pytest.raises(ValueError, match="2-D"):
        csr.matmul(torch.randn(10))
    with pytest.raises(ValueError, match="out has shape"):
        csr.matmul(torch.randn(10, 16), out=torch.empty(3, 8))
    with pytest.raises(ValueError, match="CSR row index"):
        native.CSR(torch.tensor([0, 3]), torch.tensor([0, 1]), torch.ones(2), 3)
    with pytest.raises(ValueError, match="one length"):
        native.CSR(rows, cols[:2], torch.ones(3), 3)


@needs_native
def test_ngcf_kernels_refuse_mismatched_shapes():
    a, b = torch.randn(6, 16), torch.randn(5, 16)
    with pytest.raises(ValueError, match="one shape"):
        native.ngcf_mix(a, b)
    with pytest.raises(ValueError, match="one shape"):
        native.ngcf_mix_back(a, a, a, b)
    with pytest.raises(ValueError, match="one shape"):
        native.ngcf_activate(a, torch.ones(5, 16), 1.0, 0.2, torch.empty(6, 16))
    out, norm = native.ngcf_activate(a, None, 1.0, 0.2, torch.empty(6, 16))
    with pytest.raises(ValueError, match="norm has"):
        native.ngcf_activate_back(a, out, norm[:5], None, None, 1.0, a, 0.2)
    with pytest.raises(ValueError, match="one shape"):
        native.ngcf_activate_back(b, out, norm, None, None, 1.0, a, 0.2)


@needs_native
@pytest.mark.parametrize("dim", DIMS)
def test_csr_product_against_torch_at_each_width(dim):
    gen = torch.Generator().manual_seed(dim)
    rows, cols = torch.randint(0, 50, (600,), generator=gen), torch.randint(0, 70, (600,),
                                                                             generator=gen)
    values = torch.rand(600, generator=gen)
    dense = torch.zeros(50, 70).index_put_((rows, cols), values, accumulate=True)
    x = torch.randn(70, dim, generator=gen)
    csr = native.CSR(rows, cols, values, 50)
    torch.testing.assert_close(csr.matmul(x), dense @ x, atol=1e-5, rtol=1e-5)
    base = torch.randn(50, dim, generator=gen)
    torch.testing.assert_close(csr.matmul(x, out=base.clone(), accumulate=True), base + dense @ x,
                               atol=1e-5, rtol=1e-5)


@needs_native
@pytest.mark.parametrize("dim", DIMS)
def test_bpr_and_l2_scatter_against_torch_at_each_width(dim):
    table, u, p, n = _table_and_triples(rows=20, dim=dim, batch=64)
    n[:3] = p[:3]
    loss, rows_u, rows_p, rows_n = bpr_row_gradients(table[u], table[p], table[n])
    want = torch.zeros_like(table)
    for index, rows in ((u, rows_u), (p, rows_p), (n, rows_n)):
        want.index_add_(0, index, rows)
    got = torch.zeros_like(table)
    assert native.bpr_scatter(table, u, p, n, got) == pytest.approx(float(loss), rel=1e-5)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    grad = torch.zeros_like(table)
    half_sq = native.l2_scatter(table, u, p, n, 0.5, grad)
    assert half_sq == pytest.approx(float(l2_value(table[u], table[p], table[n])), rel=1e-5)
    want = torch.zeros_like(table)
    for index in (u, p, n):
        want.index_add_(0, index, table[index], alpha=0.5)
    torch.testing.assert_close(grad, want, atol=1e-6, rtol=1e-5)


@needs_native
@pytest.mark.parametrize("dim", DIMS)
def test_native_adam_against_torch_at_each_width(dim):
    from recbench.native.adam import NativeAdam

    gen = torch.Generator().manual_seed(dim)
    start = torch.randn(37, dim, generator=gen)
    ours, ref = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt = NativeAdam([ours], lr=0.01, weight_decay=1e-3)
    reference = torch.optim.Adam([ref], lr=0.01, weight_decay=1e-3, foreach=True)
    assert opt._native() or ours.grad is None
    for _ in range(5):
        g = torch.randn(37, dim, generator=gen)
        ours.grad, ref.grad = g.clone(), g.clone()
        opt.step()
        reference.step()
    torch.testing.assert_close(ours.detach(), ref.detach(), atol=1e-6, rtol=1e-5)


_TRAIN_ONE_EPOCH = """
import sys
from pathlib import Path
import torch
from recbench.config import DatasetConfig, EvalConfig, TrainConfig
from recbench.data.prepare import DataPaths, load, register_custom
from recbench.models import MODELS
from recbench.native import status
from recbench.train.api import RunContext

root = Path(sys.argv[1])
paths = DataPaths(root / "data")
if not (root / "data").exists():
    register_custom(root / "tiny.csv", "tiny", paths, None, None, "rating", "timestamp")
data = load(DatasetConfig(name="tiny", protocol="random", test_ratio=0.2, valid_ratio=0.2), paths)
torch.set_num_threads(1)
spec = MODELS["bpr_mf"]
ctx = RunContext(data, TrainConfig(lr=0.05, batch_size=32), EvalConfig(k=[5]),
                 torch.device("cpu"), 0)
trainer = spec.make_trainer(spec.config(name="bpr_mf", emb_dim=16), ctx)
print(trainer.train_epoch(0)["bpr"])
print("native", trainer.native)
print(status())
"""


def _run(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            **env}
    full.pop(build.DISABLE_ENV, None)
    return subprocess.run([sys.executable, "-c", _TRAIN_ONE_EPOCH, str(tmp_path)], env=full,
                          capture_output=True, text=True, timeout=300)


@needs_native
@pytest.mark.parametrize("damage", ["truncated", "foreign", "no checksum"])
def test_a_damaged_cached_library_is_rebuilt_not_mapped(tmp_path, damage):
    """Before the checksum, a truncated cached .so was mapped by ctypes and the first BPR-MF
    step died with SIGBUS (exit -7), every run, until someone deleted the cache by hand."""
    from tests.conftest import make_interactions

    make_interactions().to_csv(tmp_path / "tiny.csv", index=False)
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "native True" in first.stdout
    (so,) = (tmp_path / "cache" / "recbench" / "native").glob("kernels-*.so")
    assert (so.parent / (so.name + ".sha256")).read_text().strip() == build.sha256_of(so)
    body = so.read_bytes()
    if damage == "truncated":
        so.write_bytes(body[: len(body) // 2])
    elif damage == "foreign":  # the same size, other bytes: another machine's build
        so.write_bytes(body[:-64] + bytes(64))
    else:
        (so.parent / (so.name + ".sha256")).unlink()
    second = _run(tmp_path)
    assert second.returncode == 0, (second.returncode, second.stderr[-2000:])
    assert "native True" in second.stdout
    assert "rebuilt: the cached library was damaged or foreign" in second.stdout
    assert float(second.stdout.split()[0]) == float(first.stdout.split()[0])  # same epoch
    third = _run(tmp_path)
    assert "rebuilt" not in third.stdout  # the rebuilt file checks from now on


@needs_native
def test_a_damaged_library_that_cannot_be_rebuilt_means_the_torch_path(tmp_path):
    from tests.conftest import make_interactions

    make_interactions().to_csv(tmp_path / "tiny.csv", index=False)
    assert _run(tmp_path).returncode == 0
    (so,) = (tmp_path / "cache" / "recbench" / "native").glob("kernels-*.so")
    so.write_bytes(so.read_bytes()[:1000])
    broken = tmp_path / "broken-cc"  # gcc's --version (the same cache key), but every build fails
    broken.write_text(f'#!/bin/sh\n[ "$1" = --version ] && exec {build._compiler()} --version\n'
                      'echo "internal compiler error" >&2\nexit 1\n')
    broken.chmod(0o755)
    out = _run(tmp_path, CC=str(broken))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "native False" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == (
        "off: broken-cc failed on kernels.c (internal compiler error)")


@needs_native
@pytest.mark.parametrize("dim", [16, 24])
def test_no_fused_multiply_add_so_floats_do_not_depend_on_the_cpu(dim):
    """Built with -ffp-contract=off: ``out += w * x`` rounds the product, then the sum, as torch
    does, on every CPU (with contraction GCC emits an FMA where the CPU has one, one rounding
    fewer, and the trained floats depend on the machine)."""
    gen = torch.Generator().manual_seed(3)
    rows = torch.arange(500)
    csr = native.CSR(rows, rows, torch.rand(500, generator=gen) * 3, 500)
    x, base = torch.randn(500, dim, generator=gen), torch.randn(500, dim, generator=gen)
    want = base + csr.values[:, None] * x  # one rounding for the product, one for the sum
    got = csr.matmul(x, out=base.clone(), accumulate=True)
    assert torch.equal(got, want)


@needs_native
def test_a_compiler_without_openmp_builds_the_kernels_serial(tmp_path):
    from tests.conftest import make_interactions

    make_interactions().to_csv(tmp_path / "tiny.csv", index=False)
    no_omp = tmp_path / "no-omp-cc"  # gcc, except that -fopenmp is an error
    no_omp.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && '
                      '{ echo "unsupported option -fopenmp" >&2; exit 1; }; done\n'
                      f'exec {build._compiler()} "$@"\n')
    no_omp.chmod(0o755)
    out = _run(tmp_path, CC=str(no_omp))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "native True" in out.stdout
    assert "(serial: the compiler has no OpenMP)" in out.stdout.strip().splitlines()[-1]
