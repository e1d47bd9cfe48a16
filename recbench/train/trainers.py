"""Epoch strategies the loop calls. Models differ in forward, loss and scoring, not in loops.

- :class:`RatingTrainer`: mini-batch MSE over observed training ratings (``model.predict``).
- :class:`PairwiseTrainer`: mini-batch BPR/NCE over training edges with sampled negatives, for
  any model exposing ``embed() -> (user_emb, item_emb)`` (MF and message-passing models alike).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from recbench.config import TrainConfig
from recbench.data.graph import split_edges
from recbench.eval.metrics import mae, rmse, squared_errors
from recbench.eval.ranking import full_ranking, sampled_ranking
from recbench.seeding import torch_generator
from recbench.train import objectives, samplers
from recbench.train.api import EvalResult, RunContext


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer '{cfg.optimizer}' needs its model's own epoch strategy")


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(batch_size))


class RatingTrainer:
    """Mini-batch MSE on training ratings; evaluation clips predictions to the rating range."""

    def __init__(self, model: torch.nn.Module, ctx: RunContext, clip: tuple[float, float] = (1, 5)):
        self.model = model.to(ctx.device)
        self.ctx = ctx
        self.clip = clip
        self.opt = make_optimizer(model.parameters(), ctx.train)
        self.gen = torch_generator(ctx.seed, "batches")
        self.users, self.items, self.ratings = split_edges(ctx.data.g, "train")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        total, dev = 0.0, self.ctx.device
        for idx in _batches(len(self.users), self.ctx.train.batch_size, self.gen):
            u, i, r = self.users[idx].to(dev), self.items[idx].to(dev), self.ratings[idx].to(dev)
            loss = objectives.masked_mse(self.model.predict(u, i), r)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += float(loss) * len(idx)
        return {"mse": total / max(len(self.users), 1)}

    def evaluate(self, split: str) -> EvalResult:
        return evaluate_ratings(self.model.predict, self.ctx, split, self.clip)

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])


def evaluate_ratings(predict: Callable, ctx: RunContext, split: str,
                     clip: tuple[float, float] = (1, 5)) -> EvalResult:
    u, i, r = split_edges(ctx.data.g, split)
    with torch.no_grad():
        pred = predict(u.to(ctx.device), i.to(ctx.device)).float().cpu().clamp(*clip)
    return EvalResult({"rmse": rmse(pred, r), "mae": mae(pred, r)},
                      {"squared_error": squared_errors(pred, r).numpy()})


def evaluate_ranking(score_fn: Callable, pair_score_fn: Callable | None, ctx: RunContext,
                     split: str) -> EvalResult:
    """Sampled 1+99 ranking for leave-one-out splits, full ranking otherwise."""
    if ctx.data.negatives is not None and pair_score_fn is not None:
        return sampled_ranking(pair_score_fn, ctx.data, split, ctx.eval.k)
    return full_ranking(score_fn, ctx.data, split, ctx.eval.k, ctx.eval.batch_size, ctx.device)


class PairwiseTrainer:
    """BPR (or NCE with k negatives) over training edges.

    The model provides ``embed() -> (user_emb, item_emb)``; ``reg`` weighs the L2 norm of the
    batch's ego embeddings (``model.ego(users, items)``) as LightGCN/NGCF do, when present.
    """

    def __init__(self, model: torch.nn.Module, ctx: RunContext, loss: str = "bpr",
                 num_negatives: int = 1, negative_sampler: str = "uniform", reg: float = 0.0,
                 hard_pool: int = 16):
        self.model = model.to(ctx.device)
        self.ctx = ctx
        self.loss, self.k, self.sampler_name, self.reg = loss, num_negatives, negative_sampler, reg
        self.hard_pool = hard_pool
        self.opt = make_optimizer(model.parameters(), ctx.train)
        self.gen = torch_generator(ctx.seed, "batches")
        self.neg_gen = torch_generator(ctx.seed, "negatives")
        g = ctx.data.g
        self.users, self.items, _ = split_edges(g, "train")
        self.seen = samplers.SeenIndex(self.users, self.items, ctx.data.num_items)
        self.popularity = torch.bincount(self.items, minlength=ctx.data.num_items)

    def sample(self, users: torch.Tensor) -> torch.Tensor:
        if self.sampler_name == "uniform":
            return samplers.uniform_negatives(users, self.seen, self.neg_gen, self.k)
        if self.sampler_name == "popularity":
            return samplers.popularity_negatives(users, self.seen, self.popularity, self.neg_gen,
                                                 self.k)
        if self.sampler_name == "hard":
            return samplers.hard_negatives(users, self.seen, self.pair_scores, self.neg_gen,
                                           self.hard_pool, self.k)
        raise ValueError(f"unknown negative sampler '{self.sampler_name}'")

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dev = self.ctx.device
        users_e, items_e = self.model.embed()
        return (users_e[users.to(dev)][:, None, :] * items_e[items.to(dev)]).sum(-1).cpu()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        dev = self.ctx.device
        total, total_reg, n = 0.0, 0.0, 0
        for idx in _batches(len(self.users), self.ctx.train.batch_size, self.gen):
            u, p = self.users[idx], self.items[idx]
            neg = self.sample(u)
            u, p, neg = u.to(dev), p.to(dev), neg.to(dev)
            users_e, items_e = self.model.embed()
            ue, pe, ne = users_e[u], items_e[p], items_e[neg]
            pos_s = (ue * pe).sum(-1)
            neg_s = (ue[:, None, :] * ne).sum(-1) if ne.dim() == 3 else (ue * ne).sum(-1)
            loss = objectives.bpr(pos_s, neg_s) if self.loss == "bpr" else objectives.nce(pos_s, neg_s)
            reg = torch.zeros((), device=dev)
            if self.reg > 0:
                ego = self.model.ego(u, p, neg) if hasattr(self.model, "ego") else (ue, pe, ne)
                reg = self.reg * objectives.l2_sum(*ego) / len(idx)
            self.opt.zero_grad()
            (loss + reg).backward()
            self.opt.step()
            total += float(loss) * len(idx)
            total_reg += float(reg) * len(idx)
            n += len(idx)
        return {self.loss: total / max(n, 1), "reg": total_reg / max(n, 1)}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        users_e, items_e = self.model.embed()
        return users_e[users] @ items_e.T

    def evaluate(self, split: str) -> EvalResult:
        self.model.eval()
        with torch.no_grad():
            users_e, items_e = self.model.embed()
        score = lambda u: users_e[u.to(users_e.device)] @ items_e.T  # noqa: E731
        pair = lambda u, c: (users_e[u.to(users_e.device)][:, None, :]  # noqa: E731
                             * items_e[c.to(users_e.device)]).sum(-1)
        return evaluate_ranking(score, pair, self.ctx, split)

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "neg_gen": self.neg_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.neg_gen.set_state(state["neg_gen"])


