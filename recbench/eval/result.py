"""What every evaluator returns. It lives with the evaluators, below the training code that
calls them, so that evaluation never imports from training (the layers only point down)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EvalResult:
    """Metric means plus per-unit vectors (per user or per rating) for significance tests."""

    metrics: dict[str, float]
    per_unit: dict[str, np.ndarray] = field(default_factory=dict)
