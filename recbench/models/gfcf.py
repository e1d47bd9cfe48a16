"""GF-CF (Shen et al. 2021, "How powerful is graph convolution for recommendation?"): a
closed-form graph filter, the linear filter of the normalised item-item graph plus an ideal
low-pass filter from its top singular vectors.

With R̃ = D_U^{-1/2} R D_I^{-1/2} (R the binary training matrix, D the degrees) and V the
``rank`` leading right singular vectors of R̃, a user's scores are

    s_u = r_u R̃ᵀ R̃  +  alpha · r_u D_I^{-1/2} V Vᵀ D_I^{1/2}

(the authors' code; alpha 0.3 and rank 256 on Gowalla and Yelp2018, the ideal term dropped on
Amazon-Book). R̃ᵀR̃ is never formed: a batch is scored as (r_u R̃ᵀ) R̃ with sparse products; V
(rank × items) is the only dense state, 42 MB at Gowalla size in float32.
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
    NonNegInts,
    closed_form_trainer,
    inverse_power,
)
from recbench.train.api import RunContext


class GFCFConfig(Strict):
    name: Literal["gfcf"]
    # alpha and rank as lists: every combination fitted, the best on validation kept
    alpha: NonNegFloats = 0.3  # weight of the ideal low-pass term (0: linear filter only)
    rank: NonNegInts = 256  # singular vectors of the ideal low-pass filter (0: none)


class GFCF(ClosedFormModel):
    def __init__(self, *, alpha: float = 0.3, rank: int = 256, seed: int = 0):
        super().__init__()
        self.alpha, self.rank, self.seed = alpha, rank, seed
        self.norm: sp.csr_matrix | None = None
        self.norm_t: sp.csr_matrix | None = None
        self.vt: np.ndarray | None = None
        self.d_inv = self.d = np.zeros(0)

    def fit(self, x: sp.csr_matrix) -> dict[str, float]:
        from scipy.sparse.linalg import svds

        deg_u = np.asarray(x.sum(axis=1)).ravel()
        deg_i = np.asarray(x.sum(axis=0)).ravel()
        self.d_inv = inverse_power(deg_i, 0.5)  # D_I^{-1/2}
        self.d = np.sqrt(deg_i)  # D_I^{1/2} (0 for an item without training pairs)
        norm = sp.diags(inverse_power(deg_u, 0.5)) @ x @ sp.diags(self.d_inv)
        self.norm = sp.csr_matrix(norm, dtype=np.float64)
        self.norm_t = self.norm.T.tocsr()
        rank = min(self.rank, min(x.shape) - 1) if self.alpha > 0 else 0
        if rank > 0:  # ARPACK's start vector drawn from the run seed: the same V every fit
            _, s, vt = svds(self.norm, k=rank, random_state=np.random.default_rng(self.seed))
            self.vt = vt[np.argsort(-s)]
        return {"rank": float(rank)}

    def score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        rows = sp.csr_matrix(rows, dtype=np.float64)
        scores = ((rows @ self.norm_t) @ self.norm).toarray()
        if self.vt is not None:
            low = (rows @ sp.diags(self.d_inv)) @ self.vt.T  # batch × rank
            scores += self.alpha * ((low @ self.vt) * self.d[None, :])
        return scores.astype(np.float32)


def make_gfcf_trainer(cfg: GFCFConfig, ctx: RunContext) -> ClosedFormTrainer:
    return closed_form_trainer(lambda **kw: GFCF(**kw, seed=ctx.seed),
                               {"alpha": cfg.alpha, "rank": cfg.rank}, ctx)
