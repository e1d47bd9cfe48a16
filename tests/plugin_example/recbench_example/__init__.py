"""An example model plug-in: everything a package outside recbench writes to add a model.

Three pieces: a config (a :class:`recbench.config.Strict` model whose ``name`` literal is the
model's name), a builder ``make_trainer(config, ctx) -> Trainer`` and one
:class:`recbench.models.ModelSpec` naming both, which the package's metadata lists under the
entry-point group ``recbench.models``. In a real package that is one table of pyproject.toml:

    [project.entry-points."recbench.models"]
    projected_mf = "recbench_example:SPEC"

Here the metadata is written by hand (``recbench_example-0.1.dist-info/`` beside this folder),
so the tests can put this folder on sys.path instead of installing it.

The model: BPR matrix factorisation whose item vectors pass through a learnt d × d map shared
by every item (``project: false`` switches it off, which is plain BPR-MF), trained by
recbench's own pairwise trainer; the run loop, checkpoints, evaluation, studies and reports
are recbench's, unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from recbench.config import NonNegFloat, PosInt, Strict
from recbench.models import ModelSpec
from recbench.seeding import continue_globally, init_generator
from recbench.train.api import PairwiseModel, RunContext
from recbench.train.trainers import PairwiseTrainer


class ProjectedMFConfig(Strict):
    name: Literal["projected_mf"]
    emb_dim: PosInt = 16
    project: bool = True  # the shared item map; false gives plain BPR-MF
    init_std: NonNegFloat = 0.1


class ProjectedMF(PairwiseModel):
    """Users ``P``, items ``Q`` and a shared map ``W`` (identity at start): score = p_u · (W q_i)."""

    def __init__(self, num_users: int, num_items: int, cfg: ProjectedMFConfig,
                 generator: torch.Generator):
        super().__init__()
        draw = lambda rows: torch.randn(rows, cfg.emb_dim, generator=generator)  # noqa: E731
        self.user = nn.Parameter(draw(num_users) * cfg.init_std)
        self.item = nn.Parameter(draw(num_items) * cfg.init_std)
        self.map = nn.Parameter(torch.eye(cfg.emb_dim)) if cfg.project else None

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        items = self.item if self.map is None else self.item @ self.map.T
        return self.user, items


def make_trainer(cfg: ProjectedMFConfig, ctx: RunContext) -> PairwiseTrainer:
    gen = init_generator(ctx.seed)  # weights from the run's seed, as the built-ins do
    model = ProjectedMF(ctx.data.num_users, ctx.data.num_items, cfg, gen)
    continue_globally(gen)
    return PairwiseTrainer(model, ctx)


SPEC = ModelSpec(ProjectedMFConfig, make_trainer, "ranking",
                 "example plug-in: BPR-MF with a learnt map shared by the item vectors")
