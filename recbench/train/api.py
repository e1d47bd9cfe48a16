"""The contract between the one loop and every model family.

A model family provides ``make_trainer(model_config, ctx) -> Trainer``. The trainer owns the
model, its optimiser and how one epoch runs (lkpy's ``ModelTrainer`` idea); the loop in
``recbench.runner`` owns epochs, validation, early stopping, best-weight selection,
checkpoints, history and progress. Every hook the loop calls is declared on
:class:`Trainer`; :class:`TrainerBase` gives the optional ones their defaults, so the loop
never probes a trainer with ``getattr``.

Stages. ``Trainer.stages()`` splits the run's epochs into consecutive :class:`Stage` spans (one
``train`` stage of ``train.epochs`` by default). Per stage the loop does one of three things:

- ``monitors=None`` — the stage joins the *run's* selection: the run monitor (``Trainer.monitor``,
  else ``train.monitor``, else the task's headline metric), ``train.patience`` counted across
  every such stage, ``best.pt`` holding the best validation epoch, and an early stop ending
  the run. A single-stage trainer is exactly this; GLocal-K's pretrain and fine-tune stages
  both join it, so its best epoch may come from either.
- ``monitors={member: metric, ...}`` — the stage selects its own *members* (parts of the model,
  from ``Trainer.member``): each keeps its best weights on its own validation metric (which
  ``evaluate('valid')`` reports while the stage trains), the stage ends early once every member
  has gone ``patience`` validations without improving, and at the stage's end the loop restores
  each member's best weights. The global/local attention trainer's stages are these.
- ``monitors={}`` — the stage keeps its final weights.

After a stage's last epoch (or its early stop, and after any restore) the loop calls
``Trainer.end_stage`` so the trainer can act on the finished stage (cluster the global space,
choose attention weights on validation). When no stage joins the run's selection, the run
reports its final weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from recbench.config import EvalConfig, TrainConfig
from recbench.data.graph import RATES, Dataset
from recbench.eval.result import EvalResult
from recbench.native.choice import KernelChoice


@dataclass
class RunContext:
    """What a trainer is built from: data, the loop's settings, device and the run seed."""

    data: Dataset
    train: TrainConfig
    eval: EvalConfig
    device: torch.device
    seed: int


@dataclass(frozen=True)
class Stage:
    """A span of consecutive epochs and how the loop selects weights in it (module docstring).

    ``monitors``: None joins the run's selection; a dict maps each member the stage selects to
    the validation metric it is selected on (direction from :func:`lower_is_better`); ``{}``
    keeps the final weights. ``patience``: validations without improvement after which an own-
    selection stage ends early (None: it runs its full budget, still restoring the bests).
    """

    name: str
    epochs: int
    monitors: dict[str, str] | None = None
    patience: int | None = None


class Trainer(Protocol):
    """Everything the loop calls on a trainer; :class:`TrainerBase` has the defaults."""

    model: torch.nn.Module
    monitor: str | None  # the run's validation metric when the trainer fixes it (else config)

    def stages(self) -> list[Stage]:
        """The run's epochs as consecutive stages; their budgets sum to the run's epochs."""

    def has_valid(self) -> bool:
        """Whether the run has a validation split to select on (else the final epoch counts)."""

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Run one epoch (the trainer knows its stage from ``epoch``); return loss parts
        (floats) for history.jsonl."""

    def evaluate(self, split: str) -> EvalResult:
        """Score the model on ``split`` ('valid' or 'test'); on 'valid' also every metric the
        current stage's ``monitors`` name."""

    def member(self, stage: str, name: str) -> torch.nn.Module:
        """The part of the model a stage's member ``name`` is (its weights are kept/restored)."""

    def end_stage(self, stage: str, best_epochs: dict[str, int]) -> None:
        """After a stage's last epoch, early stop or restore: ``best_epochs`` maps each member
        to the epoch whose weights it now holds (empty when the stage selects none)."""

    def extra_metrics(self) -> dict:
        """Model-specific facts for metrics.json's ``extra`` (after the test evaluation)."""

    def kernels(self) -> KernelChoice:
        """The numeric path the step takes, native or torch, and why (env.json)."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimisers whose learning rate the loop may scale (``train.plateau_decay``);
        empty where the trainer's schedule is its own (the loop then refuses the key)."""

    def state_dict(self) -> dict:
        """Optimiser and schedule state (the model's weights are saved by the loop)."""

    def load_state_dict(self, state: dict) -> None: ...


class TrainerBase:
    """Default implementations of the optional :class:`Trainer` hooks.

    Subclasses set ``model`` and ``ctx`` and implement ``train_epoch`` and ``evaluate``; the
    defaults are one ``train`` stage of ``train.epochs`` joining the run's selection, the
    interaction graph's validation edges deciding ``has_valid``, and no trainer state.
    """

    model: torch.nn.Module
    ctx: RunContext
    monitor: str | None = None

    def stages(self) -> list[Stage]:
        return [Stage("train", self.ctx.train.epochs)]

    @property
    def num_epochs(self) -> int:
        """The run's epoch budget: the stages' budgets summed."""
        return sum(s.epochs for s in self.stages())

    def has_valid(self) -> bool:
        return bool(self.ctx.data.g.edges[RATES].data["valid"].any())

    def member(self, stage: str, name: str) -> torch.nn.Module:
        return self.model

    def end_stage(self, stage: str, best_epochs: dict[str, int]) -> None:
        """Nothing to do between stages by default."""

    def extra_metrics(self) -> dict:
        return {}

    def kernels(self) -> KernelChoice:
        """The numeric path this trainer's step actually takes (env.json; ``train.kernels:
        native`` fails the run where it is not native): torch unless a native trainer says so."""
        return KernelChoice("torch", f"{type(self).__name__} has no native step")

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """No state by default."""


class PairwiseModel(torch.nn.Module):
    """What the pairwise trainers call on a model: ``embed`` plus two hooks with defaults.

    ``start_epoch`` runs before each training epoch (PinSage re-walks its neighbourhoods);
    ``ego`` gives the batch's vectors the L2 term regularises: by default the scored vectors
    themselves (plain MF), message-passing models return their layer-0 (ego) rows instead.
    """

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(user_emb (U, d), item_emb (I, d))`` for the whole graph."""
        raise NotImplementedError

    def start_epoch(self, epoch: int) -> None:
        """Nothing to refresh by default."""

    def ego(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
            scored: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return scored


def lower_is_better(metric: str) -> bool:
    return metric.split("@")[0] in {"rmse", "mae", "loss", "mse"}


def ranking_monitor(train: TrainConfig, eval: EvalConfig, has_negatives: bool) -> str:
    """A ranking run's validation metric: ``train.monitor``, else HR@k (sampled 1+99 ranking)
    or Recall@k (full ranking) at the first ``eval.k``. One definition, because a trainer that
    selects inside its fit (the closed-form grids) must pick on the metric the loop reports."""
    k = eval.k[0]
    return train.monitor or (f"hr@{k}" if has_negatives else f"recall@{k}")
