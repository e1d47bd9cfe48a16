"""EASE^R (Steck 2019, "Embarrassingly shallow autoencoders for sparse data"): the item-item
weights B minimising ‖X − XB‖² + λ‖B‖² subject to diag(B) = 0, in closed form:

    P = (XᵀX + λI)⁻¹,   B_ij = −P_ij / P_jj,   B_jj = 0;   scores s_u = x_u B.

Memory, the one thing that limits it: B is dense ``I × I``. At Gowalla size (40,981 items) one
float32 matrix is 40,981² × 4 B = 6.72 GB (6.26 GiB). The fit keeps exactly one: the Gram matrix
is written block by block into it (never a sparse XᵀX of ~10⁸ entries plus a dense copy), the
Cholesky factor and the inverse overwrite it in place (LAPACK spotrf/spotri, no copy for a
Fortran-ordered float32 array), the mirror half is filled block by block and the columns are
scaled in place, so the peak is one matrix + one column block (≤ 256 MB) + the training matrix.
Work: spotrf + spotri ≈ n³ = 6.9 × 10¹³ flops at Gowalla size.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from recbench.config import Strict
from recbench.models.closed_form import (
    ClosedFormModel,
    ClosedFormTrainer,
    PosFloats,
    closed_form_trainer,
    item_blocks,
)
from recbench.train.api import RunContext


class EASEConfig(Strict):
    name: Literal["ease"]
    # λ on the diagonal of the Gram matrix (Steck: 200-1000 on large data); a list: chosen on
    # validation inside the run (closed_form.GridTrainer)
    l2: PosFloats = 500.0


def gram_into(out: np.ndarray, x: sp.csr_matrix) -> None:
    """XᵀX into ``out`` (items × items), one column block at a time."""
    xt, xc = x.T.tocsr(), x.tocsc()
    for start, end in item_blocks(x.shape[1], x.shape[1]):
        out[:, start:end] = (xt @ xc[:, start:end]).toarray()


def mirror_lower(a: np.ndarray) -> None:
    """Copy the lower triangle of a square array onto its upper one, in column blocks."""
    n = a.shape[0]
    for start, end in item_blocks(n, n):
        diag = a[start:end, start:end]
        a[start:end, start:end] = np.tril(diag) + np.tril(diag, -1).T
        if end < n:
            a[start:end, end:] = a[end:, start:end].T


def ease_weights(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """B (items × items, float32, C order) of EASE^R, computed in one dense buffer."""
    from scipy.linalg import lapack

    n = x.shape[1]
    g = np.empty((n, n), dtype=np.float32, order="F")  # Fortran order: LAPACK works in place
    gram_into(g, x)
    g[np.diag_indices(n)] += np.float32(l2)
    chol, info = lapack.spotrf(g, lower=1, overwrite_a=1, clean=0)
    if info != 0:
        raise ValueError(f"EASE^R: XᵀX + λI is not positive definite (info {info}); raise l2")
    inv, info = lapack.spotri(chol, lower=1, overwrite_c=1)
    if info != 0:
        raise ValueError(f"EASE^R: the inverse failed (LAPACK info {info}); raise l2")
    if not np.shares_memory(inv, g):  # a LAPACK wrapper that copied: keep one buffer only
        g = inv
    mirror_lower(g)  # P is symmetric: its Fortran array read in C order is P itself
    p = g.T  # C-ordered view of the same memory (P = Pᵀ)
    diag = p.diagonal().copy()
    for start, end in item_blocks(n, n):
        p[start:end] /= -diag[None, :]  # B_ij = −P_ij / P_jj, row block by row block
    p[np.diag_indices(n)] = 0.0
    return p


class EASE(ClosedFormModel):
    def __init__(self, *, l2: float = 500.0):
        super().__init__()
        self.l2 = l2
        self.b: np.ndarray | None = None

    def fit(self, x: sp.csr_matrix) -> dict[str, float]:
        self.b = ease_weights(x, self.l2)
        return {"weights_gb": self.b.nbytes / 1e9}

    def score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows @ self.b)  # CSR × C-ordered dense: no copy of B


def make_ease_trainer(cfg: EASEConfig, ctx: RunContext) -> ClosedFormTrainer:
    return closed_form_trainer(EASE, {"l2": cfg.l2}, ctx)
