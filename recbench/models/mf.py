"""Matrix factorisation baselines: biased MF (ratings), BPR-MF (implicit), most popular.

BPR-MF (Rendle et al. 2009) is also the baseline of the attention paper's Table 6 and of the
GNN family; it shares :class:`~recbench.train.trainers.PairwiseTrainer` with them.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from recbench.config import Strict
from recbench.data.graph import split_edges
from recbench.train.api import EvalResult, RunContext
from recbench.train.trainers import PairwiseTrainer, RatingTrainer, evaluate_ranking


class BiasedMFConfig(Strict):
    name: Literal["biased_mf"]
    emb_dim: int = 64
    init_std: float = 0.01


class BiasedMF(nn.Module):
    """r̂(u, i) = μ + b_u + b_i + p_u · q_i."""

    def __init__(self, num_users: int, num_items: int, emb_dim: int = 64, global_mean: float = 0.0,
                 init_std: float = 0.01):
        super().__init__()
        self.user = nn.Embedding(num_users, emb_dim)
        self.item = nn.Embedding(num_items, emb_dim)
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items, 1)
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))
        for emb in (self.user, self.item):
            nn.init.normal_(emb.weight, std=init_std)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user(users) * self.item(items)).sum(-1)
        return (self.global_mean + self.user_bias(users).squeeze(-1)
                + self.item_bias(items).squeeze(-1) + dot)


def make_biased_mf_trainer(cfg: BiasedMFConfig, ctx: RunContext) -> RatingTrainer:
    _, _, ratings = split_edges(ctx.data.g, "train")
    torch.manual_seed(ctx.seed)
    model = BiasedMF(ctx.data.num_users, ctx.data.num_items, cfg.emb_dim,
                     float(ratings.mean()), cfg.init_std)
    return RatingTrainer(model, ctx)


class BPRMFConfig(Strict):
    name: Literal["bpr_mf"]
    emb_dim: int = 64
    init_std: float = 0.1
    reg: float = 0.0  # L2 on the batch's embeddings, scaled by batch size (on top of weight decay)
    loss: Literal["bpr", "nce"] = "bpr"
    num_negatives: int = 1
    negative_sampler: Literal["uniform", "popularity", "hard"] = "uniform"


class BPRMF(nn.Module):
    """Plain user and item embedding tables scored by dot product."""

    def __init__(self, num_users: int, num_items: int, emb_dim: int = 64, init_std: float = 0.1):
        super().__init__()
        self.user = nn.Embedding(num_users, emb_dim)
        self.item = nn.Embedding(num_items, emb_dim)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight


def make_bpr_mf_trainer(cfg: BPRMFConfig, ctx: RunContext) -> PairwiseTrainer:
    torch.manual_seed(ctx.seed)
    model = BPRMF(ctx.data.num_users, ctx.data.num_items, cfg.emb_dim, cfg.init_std)
    return PairwiseTrainer(model, ctx, cfg.loss, cfg.num_negatives, cfg.negative_sampler, cfg.reg)


class MostPopularConfig(Strict):
    name: Literal["most_popular"]


class MostPopular(nn.Module):
    """Scores every item by its number of training interactions, for every user alike."""

    def __init__(self, popularity: torch.Tensor):
        super().__init__()
        self.register_buffer("popularity", popularity.float())

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.popularity.expand(len(users), -1)


class MostPopularTrainer:
    """Nothing to learn: the popularity counts are computed at construction."""

    def __init__(self, ctx: RunContext):
        _, items, _ = split_edges(ctx.data.g, "train")
        self.ctx = ctx
        self.model = MostPopular(torch.bincount(items, minlength=ctx.data.num_items))
        self.num_epochs = 1

    def train_epoch(self, epoch: int) -> dict[str, float]:
        return {}

    def evaluate(self, split: str) -> EvalResult:
        pop = self.model.popularity
        return evaluate_ranking(self.model.score, lambda u, c: pop[c], self.ctx, split)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def make_most_popular_trainer(cfg: MostPopularConfig, ctx: RunContext) -> MostPopularTrainer:
    return MostPopularTrainer(ctx)
