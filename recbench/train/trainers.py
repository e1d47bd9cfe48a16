"""Epoch strategies the loop calls. Models differ in forward, loss and scoring, not in loops.

- :class:`RatingTrainer`: mini-batch MSE over observed training ratings (``model.predict``).
- :class:`PairwiseTrainer`: mini-batch BPR/NCE over training edges with sampled negatives, for
  any model exposing ``embed() -> (user_emb, item_emb)`` (MF and message-passing models alike).
- :class:`BlockPairwiseTrainer`: the same objective on sampled blocks (DGL neighbour sampling)
  or Cluster-GCN subgraphs, data-parallel under ``torchrun`` (``train/distributed.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from recbench.config import TrainConfig
from recbench.data.graph import rating_range, split_edges
from recbench.eval.ranking import full_ranking, sampled_ranking
from recbench.eval.rating import rating_result
from recbench.eval.result import EvalResult
from recbench.native import ops as native
from recbench.native.choice import KernelChoice, choose_kernels
from recbench.seeding import torch_generator
from recbench.train import objectives, samplers
from recbench.train.api import PairwiseModel, RunContext, TrainerBase
from recbench.train.sparse_adam import RowSparseAdam


def make_optimizer(params, cfg: TrainConfig, native_step: bool = False
                   ) -> torch.optim.Optimizer:
    """The run's optimiser, always on torch's multi-tensor (``foreach``) path.

    Why: torch picks that path by itself only when every parameter is on CUDA; on CPU it loops
    over the parameters in Python. The arithmetic is the same op for op, so weights are bit for
    bit the per-parameter loop's (tests/test_mf.py), and a model of many small tensors steps
    faster (figures: docs/benchmarks.md). ``native_step``: a trainer whose step runs
    through the native kernels takes Adam's update from them too (``native.adam``)."""
    params = [p for p in params if p.requires_grad]
    common = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    betas = tuple(cfg.betas)
    if cfg.optimizer == "adam":
        if native_step:
            from recbench.native.adam import NativeAdam

            return NativeAdam(params, betas=betas, **common)
        return torch.optim.Adam(params, betas=betas, **common)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, betas=betas, **common)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, **common)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, **common)
    raise ValueError(f"train.optimizer: {cfg.optimizer} is run by models with their own "
                     "epoch (glocal_k); choose adam, adamw, sgd or adagrad")


def shuffled_batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(batch_size))


class RatingTrainer(TrainerBase):
    """Mini-batch MSE on training ratings; evaluation clips predictions to the rating range."""

    def __init__(self, model: torch.nn.Module, ctx: RunContext,
                 clip: tuple[float, float] | None = None):
        self.model = model.to(ctx.device)
        self.ctx = ctx
        self.clip = clip or rating_range(ctx.data.g)  # the data's own scale, not 1–5
        self.opt = make_optimizer(model.parameters(), ctx.train)
        self.gen = torch_generator(ctx.seed, "batches")
        self.users, self.items, self.ratings = split_edges(ctx.data.g, "train")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        total, dev = 0.0, self.ctx.device
        for idx in shuffled_batches(len(self.users), self.ctx.train.batch_size, self.gen):
            u, i, r = self.users[idx].to(dev), self.items[idx].to(dev), self.ratings[idx].to(dev)
            loss = objectives.masked_mse(self.model.predict(u, i), r)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += float(loss) * len(idx)
        return {"mse": total / max(len(self.users), 1)}

    def evaluate(self, split: str) -> EvalResult:
        return evaluate_ratings(self.model.predict, self.ctx, split, self.clip)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt]

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])


def evaluate_ratings(predict: Callable, ctx: RunContext, split: str,
                     clip: tuple[float, float] | None = None) -> EvalResult:
    clip = clip or rating_range(ctx.data.g)
    u, i, r = split_edges(ctx.data.g, split)
    with torch.no_grad():
        pred = predict(u.to(ctx.device), i.to(ctx.device)).float().cpu().clamp(*clip)
    return rating_result(pred, r, ctx.eval.metrics)


def evaluate_ranking(score_fn: Callable, pair_score_fn: Callable | None, ctx: RunContext,
                     split: str) -> EvalResult:
    """Sampled 1+99 ranking for leave-one-out splits, full ranking otherwise."""
    if ctx.data.negatives is not None and pair_score_fn is not None:
        return sampled_ranking(pair_score_fn, ctx.data, split, ctx.eval.k,
                               metrics=ctx.eval.metrics)
    return full_ranking(score_fn, ctx.data, split, ctx.eval.k, ctx.eval.batch_size, ctx.device,
                        metrics=ctx.eval.metrics)


class PairwiseTrainer(TrainerBase):
    """BPR (or NCE with k negatives) over training edges.

    The model is a :class:`~recbench.train.api.PairwiseModel`: ``embed() -> (user_emb,
    item_emb)``; ``reg`` weighs the L2 norm of the batch's ``model.ego(...)`` vectors (the ego
    rows for LightGCN/NGCF, the scored vectors for plain MF).
    """

    def __init__(self, model: PairwiseModel, ctx: RunContext, loss: str = "bpr",
                 num_negatives: int = 1, negative_sampler: str = "uniform", reg: float = 0.0,
                 hard_pool: int = 16, hard_warmup_epochs: int = 0):
        self.model = model.to(ctx.device)
        self.ctx = ctx
        self.loss, self.k, self.sampler_name, self.reg = loss, num_negatives, negative_sampler, reg
        self.hard_pool, self.hard_warmup, self.epoch = hard_pool, hard_warmup_epochs, 0
        self.opt = make_optimizer(model.parameters(), ctx.train, native_step=self.native_update())
        self.gen = torch_generator(ctx.seed, "batches")
        self.neg_gen = torch_generator(ctx.seed, "negatives")
        g = ctx.data.g
        self.users, self.items, _ = split_edges(g, "train")
        self.seen = samplers.SeenIndex(self.users, self.items, ctx.data.num_items)
        self.popularity = torch.bincount(self.items, minlength=ctx.data.num_items)
        self.pair_draw = (samplers.UserUniformPairs(self.users, self.items)
                          if ctx.train.pair_sampling == "users" else None)

    def epoch_pairs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches of (users, positive items): every training pair once, shuffled,
        or (``train.pair_sampling: users``) as many draws of a uniform user and one of its pairs
        (:class:`~recbench.train.samplers.UserUniformPairs`), from the batch stream."""
        size = self.ctx.train.batch_size
        if self.pair_draw is None:
            for idx in shuffled_batches(len(self.users), size, self.gen):
                yield self.users.index_select(0, idx), self.items.index_select(0, idx)
        else:
            users, items = self.pair_draw.draw(len(self.users), self.gen)
            yield from zip(users.split(size), items.split(size), strict=True)

    def sample(self, users: torch.Tensor, emb: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> torch.Tensor:
        """Negatives for ``users``; the hard sampler scores its pool with ``emb`` when given
        (the batch's own embeddings, detached) instead of a fresh ``embed()``."""
        if self.sampler_name == "uniform" or (self.sampler_name == "hard"
                                               and self.epoch < self.hard_warmup):
            return samplers.uniform_negatives(users, self.seen, self.neg_gen, self.k)
        if self.sampler_name == "popularity":
            return samplers.popularity_negatives(users, self.seen, self.popularity, self.neg_gen,
                                                 self.k)
        if self.sampler_name == "hard":
            score = self.pair_scores if emb is None else (
                lambda u, c: self.pair_scores(u, c, emb))
            return samplers.hard_negatives(users, self.seen, score, self.neg_gen,
                                           self.hard_pool, self.k)
        raise ValueError(f"unknown negative sampler '{self.sampler_name}'")

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor,
                    emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        dev = self.ctx.device
        users_e, items_e = emb if emb is not None else self.model.embed()
        return (users_e[users.to(dev)][:, None, :] * items_e[items.to(dev)]).sum(-1).cpu()

    def native_update(self) -> bool:
        """Whether the optimiser's update runs through the native kernels: the trainers whose
        step is native say yes (``make_optimizer(native_step=True)``)."""
        return False

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.model.train()
        self.model.start_epoch(epoch)  # e.g. PinSage re-walks its neighbourhoods

    def pair_loss(self, ue: torch.Tensor, pe: torch.Tensor, ne: torch.Tensor,
                  ego: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ranking loss, L2 term) of a batch: ``ue, pe (B, d)``, ``ne (B, d)`` or ``(B, k, d)``."""
        pos_s = (ue * pe).sum(-1)
        neg_s = (ue[:, None, :] * ne).sum(-1) if ne.dim() == 3 else (ue * ne).sum(-1)
        loss = objectives.bpr(pos_s, neg_s) if self.loss == "bpr" else objectives.nce(pos_s, neg_s)
        reg = torch.zeros((), device=ue.device)
        if self.reg > 0:
            reg = self.reg * objectives.l2_sum(*ego) / len(ue)
        return loss, reg

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.start_epoch(epoch)
        dev = self.ctx.device
        total, total_reg, n = 0.0, 0.0, 0
        for u, p in self.epoch_pairs():
            users_e, items_e = self.model.embed()
            neg = self.sample(u, (users_e.detach(), items_e.detach()))
            u, p, neg = u.to(dev), p.to(dev), neg.to(dev)
            ue, pe, ne = users_e[u], items_e[p], items_e[neg]
            ego = self.model.ego(u, p, neg, (ue, pe, ne))
            loss, reg = self.pair_loss(ue, pe, ne, ego)
            self.opt.zero_grad()
            (loss + reg).backward()
            self.opt.step()
            total += float(loss) * len(u)
            total_reg += float(reg) * len(u)
            n += len(u)
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

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return list(self.opt.opts) if isinstance(self.opt, _Optimizers) else [self.opt]

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "neg_gen": self.neg_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.neg_gen.set_state(state["neg_gen"])


def bpr_row_gradients(ue: torch.Tensor, pe: torch.Tensor, ne: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """BPR with one negative, differentiated by hand: for s = u . (p - n) and the loss
    mean(softplus(-s)), d/ds = -sigmoid(-s) / B, so the rows' gradients are
    (loss, dL/du = c (p - n), dL/dp = c u, dL/dn = -c u). Batch rows (B, d), no autograd."""
    diff = pe - ne
    x = (ue * diff).sum(-1)
    loss = torch.nn.functional.softplus(-x).mean()
    c = (torch.sigmoid(-x) * (-1.0 / len(ue)))[:, None]
    rows_p = ue * c
    return loss, diff.mul_(c), rows_p, -rows_p


def l2_value(*rows: torch.Tensor) -> torch.Tensor:
    """``objectives.l2_sum`` for the epoch's history only (no gradient): sum of squares / 2."""
    return sum(torch.dot(t.reshape(-1), t.reshape(-1)) for t in rows) / 2


class HandWrittenBPR(PairwiseTrainer):
    """A :class:`PairwiseTrainer` whose BPR step fills ``.grad`` by hand where its model allows.

    Why: on ML-100K-sized models a step is ~15-40 small kernels; recording and replaying the
    autograd graph, zero-filling full-size gradients for every slice and gather and the
    scatter of the embedding backward cost more than the arithmetic (issue 15; figures:
    docs/benchmarks.md). Subclasses give ``batch_gradient`` (fill the parameters'
    ``.grad`` for a batch, return (loss, L2 term)) and say when it applies (``plain``); the
    draws, the loss and the optimiser step are the parent's, so results agree with the
    autograd path to float rounding (tests check the gradients against autograd's). Other
    losses and hard negatives use the autograd path; so do several negatives a positive unless
    the subclass takes them (:meth:`takes_k_negatives`)."""

    @property
    def plain(self) -> bool:
        return (self.loss == "bpr" and self.sampler_name != "hard"
                and (self.k == 1 or self.takes_k_negatives()))

    def takes_k_negatives(self) -> bool:
        """Whether ``batch_gradient`` takes (B, k) negatives for this run; none does by default."""
        return False

    def batch_gradient(self, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def train_epoch(self, epoch: int) -> dict[str, float]:
        if not self.plain:
            return super().train_epoch(epoch)
        self.start_epoch(epoch)
        dev = self.ctx.device
        total, total_reg, rows = 0.0, 0.0, 0
        for u, p in self.epoch_pairs():
            neg = self.sample(u)
            loss, reg = self.batch_gradient(u.to(dev), p.to(dev), neg.to(dev))
            self.opt.step()
            total += float(loss) * len(u)
            total_reg += float(reg) * len(u)
            rows += len(u)
        return {self.loss: total / max(rows, 1), "reg": total_reg / max(rows, 1)}


class DotProductPairwiseTrainer(HandWrittenBPR):
    """Two embedding tables scored by their dot product (BPR-MF), the BPR gradient by hand:
    one gather per table, :func:`bpr_row_gradients`, three ``index_add_``; then the optimiser
    steps as usual (any optimiser, weight decay included). tests/test_mf.py. On the CPU the
    batch is one native loop instead (``native.ops.mf_bpr_scatter``: the same gradient to
    float rounding, a fraction of the dispatch-bound ops' time; docs/benchmarks.md)."""

    def __init__(self, model: PairwiseModel, ctx: RunContext, user_table: torch.nn.Parameter,
                 item_table: torch.nn.Parameter, **kwargs):
        self.choice = choose_kernels(ctx.train.kernels, ctx.device)
        self.native = self.choice.path == "native"
        super().__init__(model, ctx, **kwargs)
        self.user_table, self.item_table = user_table, item_table

    def native_update(self) -> bool:
        return self.native

    def kernels(self) -> KernelChoice:
        if self.native and not self.plain:
            return KernelChoice("torch", "autograd step: the native loop covers BPR with one "
                                         "non-hard negative only")
        return self.choice

    def batch_gradient(self, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        users_w, items_w = self.user_table, self.item_table
        with torch.no_grad():
            grad_u = torch.zeros_like(users_w) if users_w.grad is None else users_w.grad.zero_()
            grad_i = torch.zeros_like(items_w) if items_w.grad is None else items_w.grad.zero_()
            if self.native:
                shrink = self.reg / len(u) if self.reg > 0 else 0.0
                loss, half_sq = native.mf_bpr_scatter(users_w.detach(), items_w.detach(), u, p,
                                                      n, shrink, grad_u, grad_i)
                users_w.grad, items_w.grad = grad_u, grad_i
                return torch.tensor(loss), torch.tensor(shrink * half_sq)
            ue = users_w.index_select(0, u)
            pe = items_w.index_select(0, p)
            ne = items_w.index_select(0, n)
            loss, rows_u, rows_p, rows_n = bpr_row_gradients(ue, pe, ne)
            reg = torch.zeros((), device=ue.device)
            if self.reg > 0:  # reg * |v|^2 / 2 / B on the scored rows (the model's ego)
                shrink = self.reg / len(u)
                reg = shrink * l2_value(ue, pe, ne)
                rows_u.add_(ue, alpha=shrink)
                rows_p.add_(pe, alpha=shrink)
                rows_n.add_(ne, alpha=shrink)
            grad_u.index_add_(0, u, rows_u)
            grad_i.index_add_(0, p, rows_p)
            grad_i.index_add_(0, n, rows_n)
            users_w.grad, items_w.grad = grad_u, grad_i
        return loss, reg


class _Optimizers:
    """Several optimisers stepped together (row-sparse Adam for a sparse ego table, Adam for the rest)."""

    def __init__(self, opts: list[torch.optim.Optimizer]):
        self.opts = opts

    def zero_grad(self) -> None:
        for opt in self.opts:
            opt.zero_grad()

    def step(self) -> None:
        for opt in self.opts:
            opt.step()

    def state_dict(self) -> dict:
        return {"opts": [opt.state_dict() for opt in self.opts]}

    def load_state_dict(self, state: dict) -> None:
        for opt, s in zip(self.opts, state["opts"], strict=True):
            opt.load_state_dict(s)


class BlockPairwiseTrainer(PairwiseTrainer):
    """Pairwise loss on sampled computation graphs instead of one full-graph propagation.

    ``mode='neighbor'``: each batch's users, positives and negatives are the seeds of
    ``NeighborBlocks``; ``mode='cluster'``: each step propagates over a Cluster-GCN subgraph and
    trains on its interaction edges with negatives among its items. The model is called as
    ``model(graphs, input_nodes)`` (through DDP under ``torchrun``); it must expose ``graph``
    (the full message graph, nodes = users then items) and ``num_layers``. Evaluation uses the
    full-graph ``embed()``.
    """

    def __init__(self, model: torch.nn.Module, ctx: RunContext, mode: str = "neighbor",
                 fanouts: list[int] | None = None, num_clusters: int = 32,
                 clusters_per_batch: int = 4, **kwargs):
        import tempfile

        from recbench.train import distributed

        super().__init__(model, ctx, **kwargs)
        self.mode = mode
        if mode == "cluster" and self.pair_draw is not None:
            raise ValueError("train.pair_sampling: users does not apply to Cluster-GCN training "
                             "(a step trains on its clusters' edges); use training: neighbor "
                             "or full, or remove the key")
        self.dist = distributed.setup(ctx.device)
        self.net = distributed.wrap(self.model, self.dist, ctx.device)
        if model.emb.sparse:
            rest = [p for n, p in model.named_parameters() if not n.startswith("emb.")]
            opts = [RowSparseAdam([model.emb.weight], lr=ctx.train.lr)]
            if rest:
                opts.append(make_optimizer(rest, ctx.train))
            self.opt = _Optimizers(opts)
        g = model.graph
        if mode == "neighbor":
            fanouts = fanouts or [10] * model.num_layers
            if len(fanouts) != model.num_layers:
                raise ValueError(f"fanouts has {len(fanouts)} entries for {model.num_layers} layers")
            self.loader = samplers.NeighborBlocks(g, fanouts)
        elif mode == "cluster":
            self._tmp = tempfile.TemporaryDirectory(prefix="recbench-cluster-")
            self.loader = samplers.ClusterBatches(g, num_clusters, clusters_per_batch,
                                                  self._tmp.name)
        else:
            raise ValueError(f"unknown training mode '{mode}' (full, neighbor, cluster)")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.start_epoch(epoch)
        steps = self._neighbor_steps() if self.mode == "neighbor" else self._cluster_steps()
        total, total_reg, n = 0.0, 0.0, 0
        for ue, pe, ne, ego, size in steps:
            loss, reg = self.pair_loss(ue, pe, ne, ego)
            self.opt.zero_grad()
            (loss + reg).backward()
            self.opt.step()
            total += float(loss) * size
            total_reg += float(reg) * size
            n += size
        if self.dist.enabled:  # report the epoch over every rank's shards
            from recbench.train.distributed import all_sum

            total, total_reg, n = all_sum([total, total_reg, float(n)])
        return {self.loss: total / max(n, 1), "reg": total_reg / max(n, 1), "edges": float(n)}

    def _neighbor_steps(self):
        from recbench.train.distributed import shard

        dev, off = self.ctx.device, self.ctx.data.num_users
        for u, p in self.epoch_pairs():
            neg = self.sample(u)
            u, p, neg = (shard(x, self.dist) for x in (u, p, neg))
            seeds, inv = torch.unique(torch.cat([u, p + off, neg.flatten() + off]),
                                      return_inverse=True)
            input_nodes, blocks = self.loader.sample(seeds)
            h, h0 = self.net(blocks, input_nodes.to(dev), return_ego=True)
            b, inv = len(u), inv.to(dev)
            ue, pe, ne = h[inv[:b]], h[inv[b:2 * b]], h[inv[2 * b:]].view(*neg.shape, -1)
            ego = h0[inv[:b]], h0[inv[b:2 * b]], h0[inv[2 * b:]].view(*neg.shape, -1)
            yield ue, pe, ne, ego, b

    def _cluster_steps(self):
        import dgl

        dev, off = self.ctx.device, self.ctx.data.num_users
        groups = self.loader.epoch(self.gen)
        for parts in groups[self.dist.rank::self.dist.world]:
            sg = self.loader.subgraph(parts)
            nodes = sg.ndata[dgl.NID]
            src, dst = sg.edges()
            mine = (sg.edata["kind"] == 0) & (nodes[src.to(nodes.device)] < off)
            u_loc, p_loc = src[mine].cpu(), dst[mine].cpu()
            if len(u_loc) == 0:
                continue
            item_loc = torch.nonzero(nodes.cpu() >= off, as_tuple=True)[0]
            users_g = nodes.cpu()[u_loc]
            neg_pos = samplers.negatives_among(users_g, nodes.cpu()[item_loc] - off, self.seen,
                                               self.neg_gen, self.k)
            n_loc = item_loc[neg_pos]
            h = self.net([sg] * self.model.num_layers, nodes.to(dev))
            e = self.model.emb(nodes.to(dev))
            u_loc, p_loc, n_loc = u_loc.to(dev), p_loc.to(dev), n_loc.to(dev)
            yield (h[u_loc], h[p_loc], h[n_loc], (e[u_loc], e[p_loc], e[n_loc]), len(u_loc))
