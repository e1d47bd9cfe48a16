"""ItemKNN: item-based neighbourhood CF with shrunk cosine similarity (Sarwar et al. 2001;
the configuration of Dacrema et al. 2019's baselines).

sim(i, j) = x_i · x_j / (‖x_i‖ ‖x_j‖ + shrink), with x_i item i's column of the binary training
matrix; each item j keeps its ``top_k`` most similar items (a sparse ``I × I`` matrix W with
top_k entries a column, the diagonal left out); a user's score is ``x_u W``. Fitted in item
blocks (closed_form.item_blocks), so the dense item-item matrix is never held.

Three switches, off by default (the runs before them unchanged), reproduce the scoring of
BARS's ItemCF (reczoo/BARS candidate_matching/benchmarks/ItemKNN/ItemKNN.py, the code behind its
Gowalla row), which differs from the plain sum above in ways that move Recall@20 by about 0.01:

- ``shift_similarity``: each similarity s is mapped to (s + 1) / 2 before the neighbours are
  chosen (their ``renormalize_similarity``). Binary cosines lie in [0, 1], so the order of the
  neighbours is kept but their weights are flattened towards uniform (0.5 … 1); an item with
  no training pair stays at 0, as their NaN → -1 → 0.
- ``normalize_neighbours``: each target item's kept weights are divided by their sum (their
  ``normalize(sim, 'l1', axis=1)``), so a score is a weighted share of the item's neighbours
  the user has, not a sum that grows with the item's popularity.
- ``average_bias``: scores are centred on item means, ``W(x - m) + m`` with ``m_j`` the share
  of users who have item j (their ``enable_average_bias``): a per-item offset
  ``m_j - Σ_i W_ij m_i`` added to every user's score.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from recbench.config import Strict
from recbench.models.closed_form import (
    Bools,
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
    # BARS's ItemCF scoring (module docstring); off: the plain sum of the kept similarities
    shift_similarity: Bools = False
    normalize_neighbours: Bools = False
    average_bias: Bools = False


class ItemKNN(ClosedFormModel):
    def __init__(self, *, top_k: int = 100, shrink: float = 10.0, shift_similarity: bool = False,
                 normalize_neighbours: bool = False, average_bias: bool = False):
        super().__init__()
        self.top_k, self.shrink = top_k, shrink
        self.shift, self.normalize, self.average_bias = (shift_similarity, normalize_neighbours,
                                                         average_bias)
        self.w: sp.csr_matrix | None = None
        self.offset: np.ndarray | None = None  # per-item score offset (average_bias)

    def fit(self, x: sp.csr_matrix) -> dict[str, float]:
        n_items = x.shape[1]
        xt, xc = x.T.tocsr(), x.tocsc()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel()).astype(np.float32)
        parts, unseen = [], norms == 0  # unseen: items without a training pair
        for start, end in item_blocks(n_items, n_items):
            block = (xt @ xc[:, start:end]).toarray()  # co-occurrence counts, items × block
            block /= norms[:, None] * norms[None, start:end] + np.float32(self.shrink + 1e-6)
            if self.shift:  # an item without training pairs stays at 0 (BARS: NaN → -1 → 0)
                block += np.float32(1.0)
                block *= np.float32(0.5)
                block[unseen, :] = 0.0
                block[:, unseen[start:end]] = 0.0
            block[np.arange(start, end), np.arange(end - start)] = 0.0  # no self-neighbour
            parts.append(top_k_entries(block, self.top_k, start, axis=0))
        self.w = sparse_items(parts, n_items)
        if self.normalize:  # each target item's (column's) weights sum to one
            sums = np.asarray(self.w.sum(axis=0)).ravel()
            self.w = (self.w @ sp.diags(np.where(sums > 0, 1.0 / np.maximum(sums, 1e-30), 0.0)
                                        .astype(np.float32))).tocsr()
        if self.average_bias:  # W(x - m) + m = xW + (m - mW), one offset an item
            mean = np.asarray(x.sum(axis=0)).ravel().astype(np.float64) / max(x.shape[0], 1)
            self.offset = (mean - self.w.T.astype(np.float64) @ mean).astype(np.float32)
        return {"neighbour_nnz": float(self.w.nnz)}

    def score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        scores = (rows @ self.w).toarray()
        if self.offset is not None:
            scores += self.offset[None, :]
        return scores


def make_itemknn_trainer(cfg: ItemKNNConfig, ctx: RunContext) -> ClosedFormTrainer:
    # every setting of the config is one of ItemKNN's, in the config's order (the grid's order)
    return closed_form_trainer(ItemKNN, cfg.model_dump(exclude={"name"}), ctx)
