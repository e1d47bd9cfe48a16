"""The contract between the one loop and every model family.

A model family provides ``make_trainer(model_config, ctx) -> Trainer``. The trainer owns the
model, its optimiser and how one epoch runs (lkpy's ``ModelTrainer`` idea); the loop in
``loop.py`` owns epochs, validation, early stopping, checkpoints, history and progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from recbench.config import EvalConfig, TrainConfig
from recbench.data.graph import Dataset


@dataclass
class RunContext:
    """What a trainer is built from: data, the loop's settings, device and the run seed."""

    data: Dataset
    train: TrainConfig
    eval: EvalConfig
    device: torch.device
    seed: int


@dataclass
class EvalResult:
    """Metric means plus per-unit vectors (per user or per rating) for significance tests."""

    metrics: dict[str, float]
    per_unit: dict[str, np.ndarray] = field(default_factory=dict)


class Trainer(Protocol):
    model: torch.nn.Module

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Run one epoch; return loss parts (floats) for history.jsonl."""

    def evaluate(self, split: str) -> EvalResult:
        """Score the model on ``split`` ('valid' or 'test')."""

    def state_dict(self) -> dict:
        """Optimiser and schedule state (the model's weights are saved by the loop)."""

    def load_state_dict(self, state: dict) -> None: ...


def lower_is_better(metric: str) -> bool:
    return metric.split("@")[0] in {"rmse", "mae", "loss", "mse"}
