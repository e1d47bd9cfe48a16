"""What every closed-form and neighbourhood recommender shares (EASE^R, ItemKNN, RP3β, GF-CF).

These models are fitted in one pass over the training matrix and score a user from the user's
own training row, so they train in one "epoch" of the one loop and need no optimiser. Why they
are built this way:

- **Nothing fitted is a parameter.** The fitted matrices are plain attributes, recomputed from
  the training split whenever a trainer is built (``recbench eval RUN`` refits, deterministically):
  EASE^R's 40,981² weights are 6.7 GB at Gowalla size, which ``best.pt`` and ``last.pt`` must
  not copy twice a run. ``best.pt`` holds an empty state; ``extra.fit_seconds`` says what a
  refit costs.
- **Item-item work in column blocks** (:func:`item_blocks`): a dense block of
  ``num_items × b`` float32 scores is at most :data:`BLOCK_BYTES`, so ItemKNN and RP3β never
  hold the dense item-item matrix, only its top-k neighbours (sparse).
- **Scoring** is ``score_rows(X[users])``: the batch's sparse training rows in, dense
  ``(batch, num_items)`` float32 out; the ranking evaluator masks and ranks it per batch.
- **Hyperparameters chosen inside the run** (:class:`GridTrainer`): a setting given as a list
  (``l2: [10, 50, 100]``) is a grid. Each combination is fitted on the training split and
  scored on validation with the run's monitor (the same evaluator every model is selected
  with); the best is kept and the only one tested, and metrics.json's ``extra.grid`` /
  ``extra.chosen`` record every figure and the choice, so the command regenerates the choice
  that used to live in YAML comments. One fitted combination is held at a time (EASE^R at
  Gowalla size is 6.7 GB a fit), so the chosen one is refitted unless it was the last. A run
  with only scalars builds the plain :class:`ClosedFormTrainer`, exactly as before.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from recbench.config import NonNegFloat, NonNegInt, PosFloat, PosInt
from recbench.data.graph import split_edges
from recbench.errors import ConfigError
from recbench.eval.result import EvalResult
from recbench.train.api import RunContext, Stage, TrainerBase, lower_is_better, ranking_monitor
from recbench.train.trainers import evaluate_ranking

BLOCK_BYTES = 256 << 20  # one dense float32 item block while fitting

# A closed-form setting: one value, or a non-empty list of values chosen on validation
PosFloats = PosFloat | Annotated[list[PosFloat], Field(min_length=1)]
NonNegFloats = NonNegFloat | Annotated[list[NonNegFloat], Field(min_length=1)]
PosInts = PosInt | Annotated[list[PosInt], Field(min_length=1)]
NonNegInts = NonNegInt | Annotated[list[NonNegInt], Field(min_length=1)]
Bools = bool | Annotated[list[bool], Field(min_length=1)]


def training_matrix(users: torch.Tensor, items: torch.Tensor, num_users: int,
                    num_items: int) -> sp.csr_matrix:
    """The binary user × item matrix of the training pairs (float32 CSR)."""
    data = np.ones(len(users), dtype=np.float32)
    x = sp.csr_matrix((data, (users.numpy(), items.numpy())), shape=(num_users, num_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def item_blocks(num_items: int, rows: int, budget: int | None = None) -> Iterator[tuple[int, int]]:
    """``(start, end)`` spans of items such that a dense ``rows × (end - start)`` float32 block
    stays within ``budget`` bytes (default :data:`BLOCK_BYTES`; at least one item a block)."""
    budget = BLOCK_BYTES if budget is None else budget
    size = max(1, budget // (4 * max(rows, 1)))
    for start in range(0, num_items, size):
        yield start, min(num_items, start + size)


def inverse_power(values: np.ndarray, power: float) -> np.ndarray:
    """``values ** -power`` with 0 where a value is 0 (an item or user with no training pair)."""
    out = np.zeros(values.shape, dtype=np.float64)
    nz = values > 0
    out[nz] = np.power(values[nz].astype(np.float64), -power)
    return out


def top_k_entries(block: np.ndarray, k: int, offset: int,
                  axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, values)`` of the ``k`` largest positive entries along ``axis`` of a dense
    block placed at ``offset`` in the item-item matrix (assemble with :func:`sparse_items`).

    ``axis=0``: the block holds columns ``offset…`` (each column keeps its top-k rows, ItemKNN);
    ``axis=1``: it holds rows ``offset…`` (each row keeps its top-k columns, RP3β).
    """
    k = min(k, block.shape[axis])
    top = torch.from_numpy(block).topk(k, dim=axis)
    vals, idx = top.values.numpy(), top.indices.numpy()
    if axis == 0:  # vals (k, b): column offset + c keeps the rows idx[:, c]
        rows, cols = idx, np.broadcast_to(np.arange(block.shape[1]) + offset, vals.shape)
    else:  # vals (b, k): row offset + r keeps the columns idx[r]
        rows = np.broadcast_to((np.arange(block.shape[0]) + offset)[:, None], vals.shape)
        cols = idx
    keep = vals > 0
    return rows[keep], cols[keep], vals[keep]


def sparse_items(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 num_items: int) -> sp.csr_matrix:
    """The sparse ``num_items × num_items`` matrix of the blocks' :func:`top_k_entries`."""
    rows, cols, vals = (np.concatenate([p[n] for p in parts]) if parts else np.zeros(0)
                        for n in range(3))
    return sp.csr_matrix((vals.astype(np.float32), (rows.astype(np.int64), cols.astype(np.int64))),
                         shape=(num_items, num_items))


class ClosedFormModel(nn.Module):
    """A model fitted in closed form; subclasses implement ``fit`` and ``score_rows``."""

    def __init__(self) -> None:
        super().__init__()
        self.fitted = False

    def fit(self, x: sp.csr_matrix) -> dict[str, float]:
        """Fit on the binary training matrix; return facts for metrics.json's extra."""
        raise NotImplementedError

    def score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        """Dense float32 scores ``(len(rows), num_items)`` from users' training rows."""
        raise NotImplementedError


class ClosedFormTrainer(TrainerBase):
    """One ``fit`` stage of one epoch; validation and test score from the training rows.

    The fit happens in ``train_epoch`` (so it is timed as training) or, for a run re-checked by
    ``recbench eval`` whose weights are recomputed rather than loaded, at the first evaluation.
    """

    def __init__(self, model: ClosedFormModel, ctx: RunContext):
        self.model, self.ctx = model, ctx
        users, items, _ = split_edges(ctx.data.g, "train")
        self.x = training_matrix(users, items, ctx.data.num_users, ctx.data.num_items)
        self.info: dict[str, float] = {}

    def stages(self) -> list[Stage]:
        return [Stage("fit", 1)]  # closed form: one pass whatever train.epochs says

    def _ensure_fitted(self) -> None:
        if not self.model.fitted:
            t0 = time.perf_counter()
            self.info = dict(self.model.fit(self.x))
            self.info["fit_seconds"] = time.perf_counter() - t0
            self.model.fitted = True

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self._ensure_fitted()
        return {"fit_seconds": self.info["fit_seconds"]}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        self._ensure_fitted()
        rows = self.x[users.cpu().numpy()]
        return torch.from_numpy(np.ascontiguousarray(self.model.score_rows(rows),
                                                     dtype=np.float32))

    def pair_scores(self, users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return self.score(users).gather(1, candidates.cpu())

    def evaluate(self, split: str) -> EvalResult:
        return evaluate_ranking(self.score, self.pair_scores, self.ctx, split)

    def extra_metrics(self) -> dict:
        return dict(self.info)


def combinations(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of ``settings`` (a list is a grid axis, a scalar a single value), the
    first key varying slowest: the order the grid is fitted, recorded and tie-broken in."""
    axes = [value if isinstance(value, list) else [value] for value in settings.values()]
    return [dict(zip(settings, combo, strict=True)) for combo in itertools.product(*axes)]


class GridTrainer(ClosedFormTrainer):
    """A :class:`ClosedFormTrainer` whose model is chosen among ``grid`` on validation.

    ``build(**combination)`` makes an unfitted model. The fit stage fits each combination in
    grid order, scores validation with the run's monitor (:func:`ranking_monitor`, the metric
    the loop then reports as ``best_valid``), drops it, and keeps the best (ties: the first);
    the test split is never read. ``extra.fit_seconds`` is the chosen combination's own fit,
    ``extra.grid_seconds`` the whole search with its validation scoring.
    """

    def __init__(self, build: Callable[..., ClosedFormModel], grid: list[dict[str, Any]],
                 ctx: RunContext):
        super().__init__(build(**grid[0]), ctx)
        self.build, self.grid = build, grid
        self.choice_monitor = ranking_monitor(ctx.train, ctx.eval, ctx.data.negatives is not None)

    def _fit(self, combo: dict[str, Any]) -> tuple[dict, float]:
        self.model = self.build(**combo)  # the previous fit is released here, before this one
        t0 = time.perf_counter()
        info = dict(self.model.fit(self.x))
        self.model.fitted = True
        return info, time.perf_counter() - t0

    def _ensure_fitted(self) -> None:
        if self.model.fitted:
            return
        t0, monitor = time.perf_counter(), self.choice_monitor
        records: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        best_value, best_info, best_seconds = 0.0, {}, 0.0
        for combo in self.grid:
            info, seconds = self._fit(combo)
            value = float(self.evaluate("valid").metrics[monitor])
            records.append({**combo, monitor: value, "fit_seconds": seconds})
            better = value < best_value if lower_is_better(monitor) else value > best_value
            if best is None or better:
                best, best_value, best_info, best_seconds = combo, value, info, seconds
        assert best is not None  # the grid has at least one combination
        if best is not self.grid[-1]:  # the chosen fit was released: fit it again
            best_info, best_seconds = self._fit(best)
        self.info = {**best_info, "fit_seconds": best_seconds, "chosen": dict(best),
                     "grid": records, "grid_monitor": monitor,
                     "grid_seconds": time.perf_counter() - t0}


def closed_form_trainer(build: Callable[..., ClosedFormModel], settings: Mapping[str, Any],
                        ctx: RunContext) -> ClosedFormTrainer:
    """The trainer for a model config's ``settings``: the plain :class:`ClosedFormTrainer`
    when every one is a scalar (today's runs, unchanged), else a :class:`GridTrainer`, which
    needs a validation split to choose on (a one-line refusal without one)."""
    grid = combinations(settings)
    if len(grid) == 1:
        return ClosedFormTrainer(build(**grid[0]), ctx)
    trainer = GridTrainer(build, grid, ctx)
    if not trainer.has_valid():
        listed = ", ".join(f"model.{k}" for k, v in settings.items() if isinstance(v, list))
        raise ConfigError(f"{listed}: a list is chosen on validation, and this run has none "
                          "(valid_ratio 0 / the published refit); choose on the honest variant "
                          "first and give the chosen value as a scalar")
    return trainer
