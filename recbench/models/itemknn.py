"""ItemKNN: item-based neighbourhood CF with shrunk cosine similarity (Sarwar et al. 2001;
the configuration of Dacrema et al. 2019's baselines).

sim(i, j) = x_i · x_j / (‖x_i‖ ‖x_j‖ + shrink), with x_i item i's column of the binary training
matrix; each item j keeps its ``top_k`` most similar items (a sparse ``I × I`` matrix W with
top_k entries a column, the diagonal left out); a user's score is ``x_u W``. Fitted in item
blocks (closed_form.item_blocks), so the dense item-item matrix is never held.
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
    item_blocks,
    sparse_items,
    top_k_entries,
)
from recbench.train.api import RunContext


class ItemKNNConfig(Strict):
    name: Literal["itemknn"]
    # lists: every (top_k, shrink) fitted and the best on validation kept (closed_form.GridTrainer)
    top_k: PosInts = 100  # neighbours kept per item
    shrink: NonNegFloats = 10.0  # added to the cosine's denominator: damps rare co-occurrences


class ItemKNN(ClosedFormModel):
    def __init__(self, *, top_k: int = 100, shrink: float = 10.0):
        super().__init__()
        self.top_k, self.shrink = top_k, shrink
        self.w: sp.csr_matrix | None = None

    def fit(self, x: sp.csr_matrix) -> dict[str, float]:
        n_items = x.shape[1]
        xt, xc = x.T.tocsr(), x.tocsc()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel()).astype(np.float32)
        parts = []
        for start, end in item_blocks(n_items, n_items):
            block = (xt @ xc[:, start:end]).toarray()  # co-occurrence counts, items × block
            block /= norms[:, None] * norms[None, start:end] + np.float32(self.shrink + 1e-6)
            block[np.arange(start, end), np.arange(end - start)] = 0.0  # no self-neighbour
            parts.append(top_k_entries(block, self.top_k, start, axis=0))
        self.w = sparse_items(parts, n_items)
        return {"neighbour_nnz": float(self.w.nnz)}

    def score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        return (rows @ self.w).toarray()


def make_itemknn_trainer(cfg: ItemKNNConfig, ctx: RunContext) -> ClosedFormTrainer:
    return closed_form_trainer(ItemKNN, {"top_k": cfg.top_k, "shrink": cfg.shrink}, ctx)
