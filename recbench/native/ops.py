"""Tensor-level calls into the native kernels (float32 CPU tensors, contiguous rows), on
torch's thread count (:func:`threads`).

Why they exist (issue 15, NGCF ≥ 3× RecBole at 1 thread): on ML-100K an NGCF step is ~60 small
torch kernels over (2625, 64) tables, each a full pass over memory plus dispatch; fused into one
loop per stage, and with the graph product as a CSR loop whose output row stays in vector
registers, the GNN and BPR-MF epochs take about half the time (figures: docs/benchmarks.md).
The CSR loop is written with GCC's vector extension: over a plain float array the accumulator
went through memory on every edge. Threads (issue 36): the kernels take torch's thread count,
so the path a run takes no longer depends on it (``native.choice``).
Each function checks what it is given (dtype, device, contiguity, shapes, and that every
index is a row of its table), because a wrong pointer here is a crash or silent garbage, not an
exception; a bad call raises ValueError instead.
"""

from __future__ import annotations

import ctypes

import torch

from recbench.csr import by_row
from recbench.native.build import library


def threads() -> int:
    """The kernels' thread count: torch's own (``torch.set_num_threads``, which the run's thread
    choice sets), so a native step uses the cores a torch step would."""
    return max(1, torch.get_num_threads())


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(0 if t is None else t.data_ptr())


def _check(*tensors: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> None:
    for t in tensors:
        if t is not None and (t.dtype != dtype or t.device.type != "cpu"
                              or not t.is_contiguous()):
            raise ValueError(f"native kernels take contiguous CPU {dtype} tensors, got "
                             f"{t.dtype} on {t.device}, contiguous={t.is_contiguous()}")


def _same_shape(*tensors: torch.Tensor | None) -> None:
    shapes = {tuple(t.shape) for t in tensors if t is not None}
    if len(shapes) > 1:
        raise ValueError(f"native kernels take tensors of one shape here, got {sorted(shapes)}")


def _matrix(t: torch.Tensor, name: str) -> None:
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (rows, dim) table, got shape {tuple(t.shape)}")


def _rows(index: torch.Tensor, rows: int, name: str) -> None:
    """``index`` is a 1-D int64 CPU vector of row numbers in [0, rows): a C loop reads
    ``table + index[b] * dim`` with no bounds of its own."""
    _check(index, dtype=torch.int64)
    if index.dim() != 1:
        raise ValueError(f"{name} must be a 1-D index vector, got shape {tuple(index.shape)}")
    if index.numel():
        low, high = torch.aminmax(index)
        if int(low) < 0 or int(high) >= rows:
            raise ValueError(f"{name} holds row {int(low) if int(low) < 0 else int(high)}, "
                             f"outside a table of {rows} rows")


def _triples(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor, user_rows: int,
             item_rows: int) -> None:
    if not len(u) == len(p) == len(n):
        raise ValueError(f"u, p, n must have one length, got {len(u)}, {len(p)}, {len(n)}")
    _rows(u, user_rows, "u")
    _rows(p, item_rows, "p")
    _rows(n, item_rows, "n")


def _user_item_tables(users: torch.Tensor, items: torch.Tensor, grad_u: torch.Tensor,
                      grad_i: torch.Tensor) -> None:
    """A user and an item table of one width, each with its gradient table of its shape."""
    _check(users, items, grad_u, grad_i)
    _matrix(users, "users")
    _matrix(items, "items")
    if users.shape[1] != items.shape[1]:
        raise ValueError(f"users and items differ in width: {users.shape[1]} vs {items.shape[1]}")
    _same_shape(users, grad_u)
    _same_shape(items, grad_i)


def _lib():
    lib = library()
    if lib is None:
        raise RuntimeError("native kernels are off (recbench.native.status() says why)")
    return lib


SPMM_ADD_SCALED = 2  # kernels.c's mode of csr_spmm_fused


class CSR:
    """A sparse (rows, cols) matrix as row pointers, columns and values (int64, float32)."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                 num_rows: int):
        if not rows.shape == cols.shape == values.shape or rows.dim() != 1:
            raise ValueError(f"rows, cols and values must be 1-D of one length, got "
                             f"{tuple(rows.shape)}, {tuple(cols.shape)}, {tuple(values.shape)}")
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= num_rows
                             or int(cols.min()) < 0):
            raise ValueError(f"a CSR row index outside [0, {num_rows}) or a negative column")
        self.indptr, order = by_row(rows, num_rows)
        self.col = cols[order].to(torch.int64).contiguous()
        self.values = values[order].to(torch.float32).contiguous()
        self.num_rows = num_rows
        self.min_x_rows = int(cols.max()) + 1 if cols.numel() else 0  # x needs this many rows

    def matmul(self, x: torch.Tensor, out: torch.Tensor | None = None,
               accumulate: bool = False) -> torch.Tensor:
        """``self @ x`` into ``out`` (a new tensor if None); with ``accumulate``, ``out +=``."""
        out = self._operands(x, out)
        _lib().csr_spmm(_ptr(self.indptr), _ptr(self.col), _ptr(self.values), _ptr(x),
                        _ptr(out), self.num_rows, x.shape[1], int(accumulate), threads())
        return out

    def _operands(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        """Check ``x`` against the matrix and return the output table: ``out`` (checked:
        contiguous float32 of shape (rows, D)) or a new one."""
        _check(x)
        _matrix(x, "x")
        if x.shape[0] < self.min_x_rows:
            raise ValueError(f"x has {x.shape[0]} rows, but the matrix has column "
                             f"{self.min_x_rows - 1}")
        shape = (self.num_rows, x.shape[1])
        if out is None:
            return torch.empty(shape, dtype=x.dtype)
        _check(out)
        if tuple(out.shape) != shape:
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {shape}")
        return out

    def matmul_add_scaled(self, x: torch.Tensor, other: torch.Tensor, alpha: float,
                          out: torch.Tensor | None = None) -> torch.Tensor:
        """``self @ x + alpha * other`` into ``out`` (a new tensor if None), bit for bit torch's
        ``spmm + alpha * other`` on float32 (the product rounded, then the sum) in one pass:
        LightGCN's backward layer without two full-table passes and two allocations."""
        return self._fused(x, out, SPMM_ADD_SCALED, other, alpha)

    def _fused(self, x: torch.Tensor, out: torch.Tensor | None, mode: int,
               other: torch.Tensor, alpha: float) -> torch.Tensor:
        _check(other)
        out = self._operands(x, out)
        if tuple(other.shape) != tuple(out.shape):
            raise ValueError(f"other has shape {tuple(other.shape)}, expected "
                             f"{tuple(out.shape)}")
        if out.data_ptr() in (other.data_ptr(), x.data_ptr()):
            raise ValueError("out must be neither x nor `other`: the loop reads them while it "
                             "writes")
        _lib().csr_spmm_fused(_ptr(self.indptr), _ptr(self.col), _ptr(self.values), _ptr(x),
                              _ptr(out), self.num_rows, x.shape[1], mode, _ptr(other),
                              float(alpha), threads())
        return out


def graph_csr(g, transpose: bool = False) -> CSR:
    """Â of a full graph with the factorised norm (``ndata ns/nd``): row i sums over i's
    in-edges j -> i with weight ns[j] nd[i]; ``transpose``: Â^T, rows by source."""
    src, dst = g.edges()
    weight = g.ndata["ns"][src] * g.ndata["nd"][dst]
    rows, cols = (src, dst) if transpose else (dst, src)
    return CSR(rows, cols, weight, g.num_nodes())


def _outputs(out: tuple[torch.Tensor, ...] | None, like: torch.Tensor, count: int
             ) -> tuple[torch.Tensor, ...]:
    """``count`` output tables of ``like``'s shape: ``out`` (checked: contiguous float32, that
    shape, none of them ``like`` itself) or new ones."""
    if out is None:
        return tuple(torch.empty_like(like) for _ in range(count))
    if len(out) != count:
        raise ValueError(f"out must hold {count} tables, got {len(out)}")
    _check(*out)
    _same_shape(like, *out)
    if len({t.data_ptr() for t in out} | {like.data_ptr()}) != count + 1:
        raise ValueError("the output tables must be distinct from each other and the input")
    return out


def ngcf_mix(side: torch.Tensor, h: torch.Tensor,
             out: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(side + h, side * h)`` in one pass (into ``out``'s two tables if given)."""
    _check(side, h)
    _same_shape(side, h)
    x1, x2 = _outputs(out, h, 2)
    _lib().ngcf_mix(_ptr(side), _ptr(h), _ptr(x1), _ptr(x2), h.numel(), threads())
    return x1, x2


def ngcf_activate(pre: torch.Tensor, mask: torch.Tensor | None, keep: float, slope: float,
                  normed_into: torch.Tensor, out: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``out = leaky_relu(pre) * mask / keep`` (no mask: no dropout) and its rows' norms;
    writes ``out / max(norm, 1e-12)`` into ``normed_into`` (a column slice of a wider table,
    rows contiguous). Returns (out, norm (N, 1)); ``out``, if given, is the table written."""
    _check(pre, mask)
    _matrix(pre, "pre")
    _same_shape(pre, mask)
    if normed_into.dtype != torch.float32 or normed_into.device.type != "cpu":
        raise ValueError("normed_into must be a float32 CPU tensor")
    rows, dim = pre.shape
    if normed_into.shape != pre.shape or normed_into.stride(1) != 1:
        raise ValueError("normed_into must be a (rows, dim) view with contiguous rows")
    (out,), norm = _outputs(None if out is None else (out,), pre, 1), torch.empty(rows, 1)
    _lib().ngcf_activate(_ptr(pre), _ptr(mask), keep, slope, _ptr(out), _ptr(norm),
                         _ptr(normed_into), normed_into.stride(0), rows, dim, threads())
    return out, norm


def ngcf_activate_back(grad_y: torch.Tensor, y: torch.Tensor, norm: torch.Tensor,
                       grad_h: torch.Tensor | None, mask: torch.Tensor | None, keep: float,
                       pre: torch.Tensor, slope: float, out: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The backward of :func:`ngcf_activate` plus the gradient arriving from the next layer:
    (dL/dpre, its column sums = the bias gradient). ``grad_y``/``y``: column slices of the
    output table and its gradient, same strides; ``out``: the table for dL/dpre (else new)."""
    _check(norm, grad_h, mask, pre)
    _matrix(pre, "pre")
    _same_shape(grad_y, y, grad_h, mask, pre)
    if norm.numel() != pre.shape[0]:
        raise ValueError(f"norm has {norm.numel()} entries for {pre.shape[0]} rows")
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in (grad_y, y)):
        raise ValueError("grad_y and y must be float32 CPU tensors")
    if grad_y.stride() != y.stride() or y.stride(1) != 1:
        raise ValueError("grad_y and y must be views with the same strides, rows contiguous")
    rows, dim = pre.shape
    (grad_pre,), bias = _outputs(None if out is None else (out,), pre, 1), torch.empty(dim)
    if grad_pre.data_ptr() in (t.data_ptr() for t in (grad_h, mask, norm) if t is not None):
        raise ValueError("out must not be one of the tables read")
    _lib().ngcf_activate_back(_ptr(grad_y), _ptr(y), y.stride(0), _ptr(norm), _ptr(grad_h),
                              _ptr(mask), keep, _ptr(pre), slope, _ptr(grad_pre), _ptr(bias),
                              rows, dim, threads())
    return grad_pre, bias


def ngcf_mix_back(g1: torch.Tensor, g2: torch.Tensor, h: torch.Tensor, side: torch.Tensor,
                  out: tuple[torch.Tensor, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g1 + g2 * h, g1 + g2 * side)`` in one pass (into ``out``'s two tables if given)."""
    _check(g1, g2, h, side)
    _same_shape(g1, g2, h, side)
    a, b = _outputs(out, h, 2)
    if {a.data_ptr(), b.data_ptr()} & {t.data_ptr() for t in (g1, g2, side)}:
        raise ValueError("the output tables must not be the tables read")
    _lib().ngcf_mix_back(_ptr(g1), _ptr(g2), _ptr(h), _ptr(side), _ptr(a), _ptr(b), h.numel(),
                         threads())
    return a, b


def bpr_scatter(table: torch.Tensor, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor,
                grad: torch.Tensor) -> float:
    """BPR with one negative on rows ``u``, ``p``, ``n`` of ``table``: adds each row's
    gradient of mean(softplus(-u.(p - n))) into ``grad``; returns that mean."""
    return mf_bpr_scatter(table, table, u, p, n, 0.0, grad, grad)[0]


def l2_scatter(table: torch.Tensor, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor,
               alpha: float, grad: torch.Tensor) -> float:
    """``grad[rows] += alpha * table[rows]`` for the rows ``u``, ``p``, ``n``; returns the sum
    of their squares / 2 (``trainers.l2_value``). ``n`` holds one negative a positive or, flat,
    k of them (``len(n) == k * len(u)``)."""
    _check(table, grad)
    _matrix(table, "table")
    _same_shape(table, grad)
    if len(n) != len(u) and (len(u) == 0 or len(n) % len(u)):
        raise ValueError(f"n must hold k negatives for each of the {len(u)} rows, got {len(n)}")
    _triples(u, p, n[:len(u)], len(table), len(table))
    _rows(n, len(table), "n")
    return _lib().l2_scatter(_ptr(table), _ptr(u), _ptr(p), _ptr(n), len(u), len(n),
                             table.shape[1], alpha, _ptr(grad))


def mf_bpr_scatter(users: torch.Tensor, items: torch.Tensor, u: torch.Tensor, p: torch.Tensor,
                   n: torch.Tensor, shrink: float, grad_u: torch.Tensor, grad_i: torch.Tensor
                   ) -> tuple[float, float]:
    """BPR-MF's batch on a user and an item table: adds each row's gradient of the mean BPR loss
    plus ``shrink`` × the row (the L2 term; 0 for none) into ``grad_u`` / ``grad_i``; returns
    (mean loss, the rows' sum of squares / 2, counted only when ``shrink`` ≠ 0). Why: BPR-MF's
    step is ~20 tiny ops over 2048 × 64 rows, dispatch-bound (docs/benchmarks.md)."""
    _user_item_tables(users, items, grad_u, grad_i)
    _triples(u, p, n, len(users), len(items))
    out = (ctypes.c_double * 2)()
    _lib().bpr_scatter(_ptr(users), _ptr(items), _ptr(u), _ptr(p), _ptr(n), len(u),
                       users.shape[1], shrink, _ptr(grad_u), _ptr(grad_i), out)
    return out[0] / len(u), out[1]


def ultragcn_scatter(users: torch.Tensor, items: torch.Tensor, u: torch.Tensor, p: torch.Tensor,
                     neg: torch.Tensor, neighbours: torch.Tensor, omega: torch.Tensor,
                     beta_u: torch.Tensor, beta_i: torch.Tensor,
                     weights: tuple[float, float, float, float, float, float],
                     grad_u: torch.Tensor, grad_i: torch.Tensor,
                     work: torch.Tensor | None = None) -> tuple[float, float]:
    """UltraGCN's batch (``models.ultragcn``): adds the gradient of L + ii_weight · L_I for the
    pairs (``u``, ``p``), their negatives ``neg`` (B, k) and ``p``'s item-item ``neighbours``
    (I, m) weighted ``omega`` into ``grad_u`` / ``grad_i``; returns (L, L_I), sums over the
    batch. ``weights`` = (w1, w2, w3, w4, negative_weight, ii_weight); ``work``: a float32
    scratch vector of at least :func:`ultragcn_work_size` entries, kept by the caller from
    batch to batch (a fresh one is ~3 MB of page faults a step at Gowalla's settings). Why:
    the autograd step gathers a (B, k, d) block of negatives, ~200 MB a batch at 1,500
    negatives, and scatters it back; this reads each row once (docs/gnn.md, UltraGCN). Same
    floats at any thread count (kernels.c says how)."""
    _user_item_tables(users, items, grad_u, grad_i)
    _check(omega, beta_u, beta_i, work)
    _check(neg, neighbours, dtype=torch.int64)
    if neg.dim() != 2 or neg.shape[0] != len(u) or neg.shape[1] == 0:
        raise ValueError(f"neg must be ({len(u)}, k) with k ≥ 1, got {tuple(neg.shape)}")
    if neighbours.dim() != 2 or neighbours.shape != omega.shape or len(neighbours) != len(items):
        raise ValueError(f"neighbours and omega must be ({len(items)}, m), got "
                         f"{tuple(neighbours.shape)} and {tuple(omega.shape)}")
    if beta_u.shape != (len(users),) or beta_i.shape != (len(items),):
        raise ValueError(f"beta_u / beta_i must hold one value a user / item, got "
                         f"{tuple(beta_u.shape)} / {tuple(beta_i.shape)}")
    if len(weights) != 6:
        raise ValueError(f"weights must be (w1, w2, w3, w4, negative_weight, ii_weight), got "
                         f"{len(weights)} values")
    if len(u) != len(p):
        raise ValueError(f"u and p must have one length, got {len(u)}, {len(p)}")
    _rows(u, len(users), "u")
    _rows(p, len(items), "p")
    _rows(neg.reshape(-1), len(items), "neg")
    _rows(neighbours.reshape(-1), len(items), "neighbours")
    size = ultragcn_work_size(len(u), neg.shape[1], neighbours.shape[1], users.shape[1])
    if work is None:
        work = torch.empty(size)
    elif work.dim() != 1 or work.numel() < size:
        raise ValueError(f"work must be a vector of at least {size} floats, got shape "
                         f"{tuple(work.shape)}")
    w = (ctypes.c_float * 6)(*weights)
    out = (ctypes.c_double * 2)()
    _lib().ultragcn_scatter(_ptr(users), _ptr(items), _ptr(u), _ptr(p), _ptr(neg), len(u),
                            neg.shape[1], _ptr(neighbours), _ptr(omega), neighbours.shape[1],
                            _ptr(beta_u), _ptr(beta_i), len(items), users.shape[1], w,
                            _ptr(grad_u), _ptr(grad_i), _ptr(work), out, threads())
    return out[0], out[1]


def ultragcn_work_size(batch: int, k: int, m: int, dim: int) -> int:
    """The float32 entries :func:`ultragcn_scatter`'s ``work`` needs (kernels.c's layout)."""
    return int(_lib().ultragcn_work_size(batch, k, m, dim))
