"""RP3β (Paudel et al. 2017, "Updatable, accurate, diverse, and scalable recommendations for
interactive applications"): a 3-step random walk user → item → user → item with transition
probabilities raised to ``alpha``, each destination item divided by its popularity to the
power ``beta``; each item keeps its ``top_k`` strongest destinations.

W[i, j] = Σ_u P_iu^α P_uj^α / deg(j)^β, with P_uj = x_uj / deg(u) and P_iu = x_ui / deg(i)
(row-stochastic walks on the binary training matrix), the diagonal left out; top_k entries a
row (as Dacrema et al.'s implementation); a user's score is ``x_u W``. Fitted in row blocks,
so the dense item-item matrix is never held.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from recbench.config import Strict
from recbench.models.closed_form import (
    ClosedFormModel,
    ClosedFormTrainer,
    NonNegFloats,
    PosInts,
    closed_form_trainer,
    inverse_power,
    item_blocks,
    sparse_items,
    top_k_entries,
)
from recbench.train.api import RunContext


class RP3betaConfig(Strict):
    name: Literal["rp3beta"]
    # alpha, beta, top_k as lists: every combination fitted, the best on validation kept
    alpha: NonNegFloats = 1.0  # power of the transition probabilities (1: plain P^3)
    beta: NonNegFloats = 0.5  # popularity penalty of the destination item (0: P^3_alpha)
    top_k: PosInts = 100  # destinations kept per item
    normalize: bool = False  # rescale each item's kept weights to sum 1


def row_stochastic(m: sp.csr_matrix, power: float) -> sp.csr_matrix:
    """Each row divided by its sum (rows of zeros stay zero), then raised to ``power``."""
    sums = np.asarray(m.sum(axis=1)).ravel()
    out = sp.csr_matrix(sp.diags(inverse_power(sums, 1.0)) @ m, dtype=np.float64)
    if power != 1.0:
        out.data = np.power(out.data, power)
    return out


class RP3beta(ClosedFormModel):
    def __init__(self, *, alpha: float = 1.0, beta: float = 0.5, top_k: int = 100,
                 normalize: bool = False):
        super().__init__()
        self.alpha, self.beta, self.top_k, self.normalize = alpha, beta, top_k, normalize
        self.w: sp.csr_matrix | None = None

    def fit(self, x: sp.csr_matrix) -> dict[str, float]:
        n_items = x.shape[1]
        p_ui = row_stochastic(x, self.alpha)  # users × items
        p_iu = row_stochastic(x.T.tocsr(), self.alpha)  # items × users
        penalty = inverse_power(np.asarray(x.sum(axis=0)).ravel(), self.beta).astype(np.float32)
        parts = []
        for start, end in item_blocks(n_items, n_items):
            # block × items; the product is float64 (≤ 2 × BLOCK_BYTES) until this copy
            block = (p_iu[start:end] @ p_ui).toarray().astype(np.float32)
            block *= penalty[None, :]
            block[np.arange(end - start), np.arange(start, end)] = 0.0
            parts.append(top_k_entries(block, self.top_k, start, axis=1))
        w = sparse_items(parts, n_items)
        if self.normalize:
            w = sp.csr_matrix(sp.diags(inverse_power(np.asarray(w.sum(axis=1)).ravel(), 1.0)) @ w,
                              dtype=np.float32)
        self.w = w
        return {"neighbour_nnz": float(w.nnz)}

    def score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        return (rows @ self.w).toarray()


def make_rp3beta_trainer(cfg: RP3betaConfig, ctx: RunContext) -> ClosedFormTrainer:
    return closed_form_trainer(RP3beta, {"alpha": cfg.alpha, "beta": cfg.beta, "top_k": cfg.top_k,
                                         "normalize": cfg.normalize}, ctx)
