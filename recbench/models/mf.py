"""Matrix factorisation baselines: biased MF (ratings), BPR-MF and NeuMF (implicit), most popular.

BPR-MF (Rendle et al. 2009) is also the baseline of the attention paper's Table 6 and of the
GNN family; it shares :class:`~recbench.train.trainers.PairwiseTrainer` with them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from recbench.config import NonNegFloat, PosInt, Strict
from recbench.data.graph import split_edges
from recbench.eval.result import EvalResult
from recbench.seeding import continue_globally, drawing_from, init_generator, torch_generator
from recbench.train import objectives, samplers
from recbench.train.api import PairwiseModel, RunContext, Stage, TrainerBase
from recbench.train.trainers import (
    DotProductPairwiseTrainer,
    PairwiseTrainer,
    RatingTrainer,
    evaluate_ranking,
    make_optimizer,
    shuffled_batches,
)


class BiasedMFConfig(Strict):
    name: Literal["biased_mf"]
    emb_dim: PosInt = 64
    init_std: NonNegFloat = 0.01


class BiasedMF(nn.Module):
    """r̂(u, i) = μ + b_u + b_i + p_u · q_i."""

    def __init__(self, *, num_users: int, num_items: int, generator: torch.Generator,
                 emb_dim: int = 64, global_mean: float = 0.0, init_std: float = 0.01):
        super().__init__()
        with drawing_from(generator):  # nn.Embedding's own N(0, 1) draws, kept in the stream
            self.user = nn.Embedding(num_users, emb_dim)
            self.item = nn.Embedding(num_items, emb_dim)
            self.user_bias = nn.Embedding(num_users, 1)
            self.item_bias = nn.Embedding(num_items, 1)
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))
        for emb in (self.user, self.item):
            nn.init.normal_(emb.weight, std=init_std, generator=generator)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user(users) * self.item(items)).sum(-1)
        return (self.global_mean + self.user_bias(users).squeeze(-1)
                + self.item_bias(items).squeeze(-1) + dot)


def make_biased_mf_trainer(cfg: BiasedMFConfig, ctx: RunContext) -> RatingTrainer:
    _, _, ratings = split_edges(ctx.data.g, "train")
    gen = init_generator(ctx.seed)
    model = BiasedMF(num_users=ctx.data.num_users, num_items=ctx.data.num_items, generator=gen,
                     emb_dim=cfg.emb_dim, global_mean=float(ratings.mean()),
                     init_std=cfg.init_std)
    continue_globally(gen)
    return RatingTrainer(model, ctx)


class BPRMFConfig(Strict):
    name: Literal["bpr_mf"]
    emb_dim: PosInt = 64
    init_std: NonNegFloat = 0.1
    reg: NonNegFloat = 0.0  # L2 on the batch's embeddings, scaled by batch size (on top of weight decay)
    loss: Literal["bpr", "nce"] = "bpr"
    num_negatives: PosInt = 1
    negative_sampler: Literal["uniform", "popularity", "hard"] = "uniform"


class BPRMF(PairwiseModel):
    """Plain user and item embedding tables scored by dot product."""

    def __init__(self, *, num_users: int, num_items: int, generator: torch.Generator,
                 emb_dim: int = 64, init_std: float = 0.1):
        super().__init__()
        with drawing_from(generator):  # nn.Embedding's own N(0, 1) draws, kept in the stream
            self.user = nn.Embedding(num_users, emb_dim)
            self.item = nn.Embedding(num_items, emb_dim)
        nn.init.normal_(self.user.weight, std=init_std, generator=generator)
        nn.init.normal_(self.item.weight, std=init_std, generator=generator)

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight


def make_bpr_mf_trainer(cfg: BPRMFConfig, ctx: RunContext) -> DotProductPairwiseTrainer:
    gen = init_generator(ctx.seed)
    model = BPRMF(num_users=ctx.data.num_users, num_items=ctx.data.num_items, generator=gen,
                  emb_dim=cfg.emb_dim, init_std=cfg.init_std)
    continue_globally(gen)
    return DotProductPairwiseTrainer(model, ctx, model.user.weight, model.item.weight,
                                     loss=cfg.loss, num_negatives=cfg.num_negatives,
                                     negative_sampler=cfg.negative_sampler, reg=cfg.reg)


class MostPopularConfig(Strict):
    name: Literal["most_popular"]


class MostPopular(nn.Module):
    """Scores every item by its number of training interactions, for every user alike."""

    def __init__(self, popularity: torch.Tensor):
        super().__init__()
        self.register_buffer("popularity", popularity.float())

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.popularity.expand(len(users), -1)


class MostPopularTrainer(TrainerBase):
    """Nothing to learn: the popularity counts are computed at construction."""

    def __init__(self, ctx: RunContext):
        _, items, _ = split_edges(ctx.data.g, "train")
        self.ctx = ctx
        self.model = MostPopular(torch.bincount(items, minlength=ctx.data.num_items))

    def stages(self) -> list[Stage]:
        return [Stage("count", 1)]  # nothing to learn: one (empty) epoch whatever train.epochs

    def train_epoch(self, epoch: int) -> dict[str, float]:
        return {}

    def evaluate(self, split: str) -> EvalResult:
        pop = self.model.popularity
        return evaluate_ranking(self.model.score, lambda u, c: pop[c], self.ctx, split)


def make_most_popular_trainer(cfg: MostPopularConfig, ctx: RunContext) -> MostPopularTrainer:
    return MostPopularTrainer(ctx)


class NeuMFConfig(Strict):
    name: Literal["neumf"]
    emb_dim: PosInt = 64  # predictive factors: GMF size; the MLP tower ends at this width too
    mlp_dims: list[PosInt] = Field(default_factory=lambda: [128, 64])  # hidden widths after the
    # concatenated (2 × emb_dim) MLP embeddings; the last one feeds NeuMF's output layer
    num_negatives: PosInt = 4  # sampled negatives per positive (NCF's pointwise log loss)
    loss: Literal["bce", "bpr"] = "bce"
    init_std: NonNegFloat = 0.01


class NeuMF(nn.Module):
    """NeuMF (He et al. 2017): GMF (p_u ⊙ q_i) and an MLP on [p'_u, q'_i], fused by one linear
    output layer; ``score`` is the logit ŷ_ui before the sigmoid."""

    def __init__(self, *, num_users: int, num_items: int, generator: torch.Generator,
                 emb_dim: int = 64, mlp_dims: list[int] | None = None, init_std: float = 0.01):
        super().__init__()
        dims = [128, 64] if mlp_dims is None else mlp_dims
        with drawing_from(generator):  # nn.Embedding's own N(0, 1) draws, kept in the stream
            self.gmf_user = nn.Embedding(num_users, emb_dim)
            self.gmf_item = nn.Embedding(num_items, emb_dim)
            self.mlp_user = nn.Embedding(num_users, emb_dim)
            self.mlp_item = nn.Embedding(num_items, emb_dim)
        for emb in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(emb.weight, std=init_std, generator=generator)
        layers: list[nn.Module] = []
        width = 2 * emb_dim
        with drawing_from(generator):  # nn.Linear's own (Kaiming-uniform) init
            for h in dims:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            self.mlp = nn.Sequential(*layers)
            self.out = nn.Linear(emb_dim + width, 1)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for users (B,) against items (B, C) → (B, C)."""
        b, c = items.shape
        gu = self.gmf_user(users)[:, None].expand(b, c, -1)
        mu = self.mlp_user(users)[:, None].expand(b, c, -1)
        gmf = gu * self.gmf_item(items)
        mlp = self.mlp(torch.cat([mu, self.mlp_item(items)], -1))
        return self.out(torch.cat([gmf, mlp], -1)).squeeze(-1)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        items = torch.arange(self.gmf_item.num_embeddings, device=users.device)
        return self.pair_scores(users, items.expand(len(users), -1))


class NeuMFTrainer(TrainerBase):
    """Pointwise log loss on each positive and ``num_negatives`` sampled unobserved items
    (NCF's protocol), or BPR on the same samples; scored by full or sampled ranking."""

    def __init__(self, model: NeuMF, ctx: RunContext, num_negatives: int = 4, loss: str = "bce"):
        self.model = model.to(ctx.device)
        self.ctx, self.k, self.loss = ctx, num_negatives, loss
        self.opt = make_optimizer(model.parameters(), ctx.train)
        self.gen = torch_generator(ctx.seed, "batches")
        self.neg_gen = torch_generator(ctx.seed, "negatives")
        self.users, self.items, _ = split_edges(ctx.data.g, "train")
        self.seen = samplers.SeenIndex(self.users, self.items, ctx.data.num_items)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        dev, total, n = self.ctx.device, 0.0, 0
        for idx in shuffled_batches(len(self.users), self.ctx.train.batch_size, self.gen):
            u, p = self.users[idx], self.items[idx]
            neg = samplers.uniform_negatives(u, self.seen, self.neg_gen, max(self.k, 1))
            neg = neg if neg.dim() == 2 else neg[:, None]
            u, p, neg = u.to(dev), p.to(dev), neg.to(dev)
            s = self.model.pair_scores(u, torch.cat([p[:, None], neg], 1))
            if self.loss == "bce":
                labels = torch.zeros_like(s)
                labels[:, 0] = 1
                loss = F.binary_cross_entropy_with_logits(s, labels)
            else:
                loss = objectives.bpr(s[:, 0], s[:, 1:])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += float(loss) * len(idx)
            n += len(idx)
        return {self.loss: total / max(n, 1)}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt]

    def evaluate(self, split: str) -> EvalResult:
        self.model.eval()
        return evaluate_ranking(self.model.score, self.model.pair_scores, self.ctx, split)

    # the same optimiser + two generators as PairwiseTrainer, checkpointed the same way
    state_dict = PairwiseTrainer.state_dict
    load_state_dict = PairwiseTrainer.load_state_dict


def make_neumf_trainer(cfg: NeuMFConfig, ctx: RunContext) -> NeuMFTrainer:
    gen = init_generator(ctx.seed)
    model = NeuMF(num_users=ctx.data.num_users, num_items=ctx.data.num_items, generator=gen,
                  emb_dim=cfg.emb_dim, mlp_dims=cfg.mlp_dims, init_std=cfg.init_std)
    continue_globally(gen)
    return NeuMFTrainer(model, ctx, cfg.num_negatives, cfg.loss)
