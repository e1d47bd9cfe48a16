"""The rating evaluator: error metrics of predicted against true ratings."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from recbench.eval.metrics import RATING, compute, squared_errors
from recbench.eval.result import EvalResult


def rating_result(pred: torch.Tensor, true: torch.Tensor, names: Sequence[str] = ()) -> EvalResult:
    """The selected rating metrics (``names``; empty: RMSE and MAE) over every rating, and the
    squared error of each rating as the per-unit vector the studies' statistics resample."""
    metrics = compute({RATING: lambda fn, _k: fn(pred, true)}, names, ())
    return EvalResult(metrics, {"squared_error": squared_errors(pred, true).numpy()})
