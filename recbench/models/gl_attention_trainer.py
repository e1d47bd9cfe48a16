"""The staged epoch strategy of the global-local attention model (the loop's Trainer contract).

Stages share the loop's epochs: global nets (GD, GP) → k-means + local mining → local nets
(LD, LP) → attention heads, declared as :class:`~recbench.train.api.Stage` spans. With a
validation split and ``stage_patience`` each member of a stage (a net or a head) is selected by
the loop on its own validation score (``<metric>|<member>|stage``, which ``evaluate('valid')``
reports for the current stage): the loop keeps its best weights, ends the stage when every
member has stopped improving and restores the bests; ``end_stage`` then clusters the global
space or chooses each head's α on validation. The run reports the finished model of the last
stage (no stage joins the run-wide best-epoch selection).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from recbench.data.graph import split_edges
from recbench.eval.ranking import sampled_ranking
from recbench.eval.result import EvalResult
from recbench.eval.retrieval import ClusterIndex, kmeans, retrieval_ranking
from recbench.models.gl_attention import (
    SPACES,
    AttentionNet,
    GLAttention,
    GLAttentionConfig,
    code_distance_loss,
    code_product_loss,
    mine_local_triplets,
)
from recbench.seeding import (
    continue_globally,
    derive_seed,
    drawing_from,
    init_generator,
    numpy_rng,
    torch_generator,
)
from recbench.train import objectives, samplers
from recbench.train.api import RunContext, Stage, TrainerBase
from recbench.train.trainers import make_optimizer


class GLAttentionTrainer(TrainerBase):
    """Staged trainer: global nets → k-means + mining → local nets → attention (or uniform α).

    ``attention_fit: holdout`` withholds ``attention_holdout`` of the training positives from
    the representation nets (their triplets and the local mining) and fits the heads on them;
    ``train`` fits the heads on the nets' own triplets (``attention_data``, the paper);
    ``uniform`` trains no head (α = 1/R). ``attention_select: validation`` then lets each
    attentive type fall back to uniform α or to one of its single spaces when that scores
    higher on validation (``_select_alpha``).
    """

    def __init__(self, cfg: GLAttentionConfig, ctx: RunContext):
        self.cfg, self.ctx = cfg, ctx
        self.uniform = cfg.attention_fit == "uniform"
        gen = init_generator(derive_seed(ctx.seed, "init") % (2**31))  # its historic stream
        with drawing_from(gen):  # the nets' default inits
            self.model = GLAttention(ctx.data.num_users, ctx.data.num_items, cfg.representation,
                                     cfg.extra_representations, cfg.cluster_space, cfg.emb_dim,
                                     cfg.hidden_dims, cfg.out_dim, cfg.num_clusters,
                                     cfg.attention_mlp_depth, cfg.alpha_linear, cfg.normalize,
                                     cfg.local_init == "global", self.uniform,
                                     cfg.blend == "scores", cfg.alpha_from == "user").to(ctx.device)
        continue_globally(gen)  # later global draws continue the init stream, as they always have
        nets = list(self.model.nets)
        self.plan: list[tuple[str, list[str], int]] = []  # (stage, members, epochs)
        glob = [n for n in nets if n.startswith("G")]
        local = [n for n in nets if n.startswith("L")]
        self.plan.append(("global", glob, cfg.global_epochs))
        if local:
            self.plan.append(("local", local, cfg.local_epochs))
        if len(self.model.heads) and not self.uniform:
            self.plan.append(("attention", list(self.model.heads), cfg.attention_epochs))
        g = ctx.data.g
        self.users, self.items, _ = split_edges(g, "train")
        self.seen = samplers.SeenIndex(self.users, self.items, ctx.data.num_items)
        self.popularity = torch.bincount(self.items, minlength=ctx.data.num_items)
        # the positives the representation nets learn from (all but the attention hold-out)
        self.rep_users, self.rep_items = self.users, self.items
        self.held = torch.zeros((0, 2), dtype=torch.int64)
        if cfg.attention_fit == "holdout" and len(self.model.heads):
            perm = torch.from_numpy(numpy_rng(ctx.seed, "attention-holdout")
                                    .permutation(len(self.users)))
            cut = int(round(cfg.attention_holdout * len(perm)))
            keep, held = perm[cut:].sort().values, perm[:cut].sort().values
            self.rep_users, self.rep_items = self.users[keep], self.items[keep]
            self.held = torch.stack([self.users[held], self.items[held]], 1)
        self.gen = torch_generator(ctx.seed, "batches")
        self.neg_gen = torch_generator(ctx.seed, "negatives")
        self.local = torch.zeros((0, 3), dtype=torch.int64)
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.stage_best_epochs: dict[str, dict[str, int]] = {}
        self.clustered = False
        self.loo = ctx.data.negatives is not None
        self.current = self.plan[0][0]  # the stage of the last trained epoch
        self.in_stage = False  # whether that stage is still open (its members being selected)
        self.select_scores: dict[str, dict[str, float]] = {}

    # ---- schedule -------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """One stage per member group; members selected on validation with ``stage_patience``."""
        select = self.has_valid() and self.cfg.stage_patience is not None
        return [Stage(name, n, {m: self.member_metric(m) for m in members} if select else {},
                      self.cfg.stage_patience)
                for name, members, n in self.plan]

    def member_metric(self, member: str) -> str:
        """The validation key a stage member is selected on (higher is better)."""
        return f"{self._valid_key()}|{member}|stage"

    def _stage(self, epoch: int) -> tuple[str, list[str], int]:
        start = 0
        for name, members, n in self.plan:
            if epoch < start + n:
                return name, members, epoch - start
            start += n
        return self.plan[-1][0], self.plan[-1][1], epoch - start

    def _stage_index(self, stage: str) -> int:
        return [s for s, _, _ in self.plan].index(stage)

    def member(self, stage: str, name: str) -> torch.nn.Module:
        return self._module(stage, name)

    def _module(self, stage: str, member: str) -> torch.nn.Module:
        return self.model.heads[member] if stage == "attention" else self.model.nets[member]

    def _opt(self, stage: str, members: list[str]) -> torch.optim.Optimizer:
        if stage not in self.opts:
            params = [p for m in members for p in self._module(stage, m).parameters()]
            self.opts[stage] = make_optimizer(params, self.ctx.train)
        return self.opts[stage]

    # ---- data -----------------------------------------------------------------------------
    def _negatives(self, users: torch.Tensor) -> torch.Tensor:
        if self.cfg.negative_sampler == "popularity":
            return samplers.popularity_negatives(users, self.seen, self.popularity, self.neg_gen)
        return samplers.uniform_negatives(users, self.seen, self.neg_gen)

    def _global_triplets(self) -> torch.Tensor:
        """T: every positive the nets learn from with a fresh unobserved negative."""
        return torch.stack([self.rep_users, self.rep_items, self._negatives(self.rep_users)], 1)

    def global_triplets(self) -> torch.Tensor:
        """T for tools outside the loop (scripts/gla_false_negatives.py); it draws from the
        trainer's negative generator exactly as training does."""
        return self._global_triplets()

    def _held_triplets(self) -> torch.Tensor:
        """The attention hold-out's positives with fresh unobserved negatives."""
        u = self.held[:, 0]
        return torch.stack([u, self.held[:, 1], self._negatives(u)], 1)

    def _cluster_and_mine(self) -> None:
        """k-means on the clustered space's items; local triplets from its user/item vectors."""
        net = self.model.nets[self.cfg.cluster_space]
        net.eval()
        with torch.no_grad():
            uv, iv = (t.cpu().numpy() for t in net.tables())
        cent = kmeans(iv, self.cfg.num_clusters, derive_seed(self.ctx.seed, "kmeans"))
        self.model.centroids.copy_(torch.from_numpy(cent))
        assign = ClusterIndex.from_centroids(cent, iv).assignments()
        trip = mine_local_triplets(uv, iv, cent, assign, self.rep_users.numpy(),
                                   self.rep_items.numpy(), self.seen, self.cfg.mining_clusters,
                                   self.cfg.mining_negatives, numpy_rng(self.ctx.seed, "mining"),
                                   tuple(self.cfg.local_sets),
                                   self.cfg.local_mining == "filtered")
        self.local = torch.from_numpy(trip).long()
        self.clustered = True
        if self.cfg.local_init == "global":
            for name in ("LD", "LP"):
                if name in self.model.nets:
                    self.model.nets[name].load_state_dict(
                        self.model.nets["G" + name[1]].state_dict())

    # ---- losses ---------------------------------------------------------------------------
    def _rep_loss(self, name: str, trip: torch.Tensor) -> torch.Tensor:
        net = self.model.nets[name]
        u, p, n = net.user(trip[:, 0]), net.item(trip[:, 1]), net.item(trip[:, 2])
        if name.endswith("D"):
            return objectives.triplet_distance(u, p, n, self.cfg.margin,
                                               self.cfg.squared_distance)
        loss = objectives.bpr((u * p).sum(-1), (u * n).sum(-1))
        if self.cfg.reg > 0:
            ego = (net.user.emb(trip[:, 0]), net.item.emb(trip[:, 1]), net.item.emb(trip[:, 2]))
            loss = loss + self.cfg.reg * objectives.l2_sum(*ego) / len(trip)
        return loss

    def _attention_loss(self, head: str, trip: torch.Tensor, gu: torch.Tensor,
                        gi: torch.Tensor) -> torch.Tensor:
        if self.cfg.blend == "scores":
            return self._score_blend_loss(head, gu[trip[:, 0]], gi[trip[:, 1]], gi[trip[:, 2]])
        ub, pb, nb = self.model.blend(head, gu[trip[:, 0]], gi[trip[:, 1]], gi[trip[:, 2]])
        code = self.cfg.loss_impl == "code"
        if head.endswith("D"):
            if code:
                return code_distance_loss(ub, pb, nb, self.cfg.margin)
            return objectives.triplet_distance(ub, pb, nb, self.cfg.margin,
                                               self.cfg.squared_distance)
        if code:
            return code_product_loss(ub, pb, nb)
        return objectives.bpr((ub * pb).sum(-1), (ub * nb).sum(-1))

    def _score_blend_loss(self, head: str, u: torch.Tensor, p: torch.Tensor,
                          n: torch.Tensor) -> torch.Tensor:
        """blend: scores — the loss of Σ_r α_r s_r (α from (u, i⁺), as in Eq. 9)."""
        a = self.model.alpha(head, u, p)
        if head.endswith("D"):
            dp = (u - p).pow(2).sum(-1).clamp(min=1e-12).sqrt()
            dn = (u - n).pow(2).sum(-1).clamp(min=1e-12).sqrt()
            return torch.relu((a * dp).sum(-1) - (a * dn).sum(-1) + self.cfg.margin).mean()
        return objectives.bpr((a * (u * p).sum(-1)).sum(-1), (a * (u * n).sum(-1)).sum(-1))

    # ---- the Trainer contract -------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        stage, members, _ = self._stage(epoch)
        self.current, self.in_stage = stage, True
        if stage != "global" and not self.clustered:  # a global stage of no epochs
            self._cluster_and_mine()
        if stage == "attention":
            parts = self._attention_epoch()
        else:
            parts = self._rep_epoch(stage, members)
        parts["stage"] = float(self._stage_index(stage))
        parts["local_triplets"] = float(len(self.local))
        return parts

    def _rep_epoch(self, stage: str, nets: list[str]) -> dict[str, float]:
        opt = self._opt(stage, nets)
        if stage == "global":
            trip = self._global_triplets()
        else:
            parts = [self.local] if "local" in self.cfg.local_data else []
            if "global" in self.cfg.local_data:
                parts.append(self._global_triplets())
            trip = torch.cat(parts)
        for n in nets:
            self.model.nets[n].train()
        totals = dict.fromkeys(nets, 0.0)
        dev = self.ctx.device
        for idx in torch.randperm(len(trip), generator=self.gen).split(self.ctx.train.batch_size):
            batch = trip[idx].to(dev)
            losses = {n: self._rep_loss(n, batch) for n in nets}
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            for n, v in losses.items():
                totals[n] += float(v) * len(idx)
        return {f"loss_{n}": v / max(len(trip), 1) for n, v in totals.items()}

    def _attention_triplets(self) -> torch.Tensor:
        if self.cfg.attention_fit == "holdout":
            return self._held_triplets()
        parts = []
        if "global" in self.cfg.attention_data:
            parts.append(self._global_triplets())
        if "local" in self.cfg.attention_data:
            parts.append(self.local)
        return torch.cat(parts)

    def _attention_epoch(self) -> dict[str, float]:
        opt = self._opt("attention", list(self.model.heads))
        trip = self._attention_triplets()
        self.model.nets.eval()
        tables = {h: self.model.space_tables(SPACES[h]) for h in self.model.heads}
        self.model.heads.train()
        totals = dict.fromkeys(self.model.heads, 0.0)
        dev = self.ctx.device
        for idx in torch.randperm(len(trip), generator=self.gen).split(self.ctx.train.batch_size):
            batch = trip[idx].to(dev)
            losses = {h: self._attention_loss(h, batch, *tables[h]) for h in self.model.heads}
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            for h, v in losses.items():
                totals[h] += float(v) * len(idx)
        return {f"loss_{h}": v / max(len(trip), 1) for h, v in totals.items()}

    # ---- per-stage early stopping ---------------------------------------------------------
    def _valid_key(self) -> str:
        return f"{'hr' if self.loo else 'recall'}@{self.ctx.eval.k[0]}"

    def _member_score(self, stage: str, member: str) -> float:
        """Validation score of one net (as its single space) or one head, in the run's
        protocol: sampled ranking (leave-one-out), exhaustive (global stage) or within the
        K nearest clusters (local and attention stages)."""
        self.model.eval()
        index = None
        if not self.loo and stage != "global" and self.cfg.retrieval == "clusters":
            index = self._index()
        res = self._evaluate_type(member, "valid", index, self.cfg.candidate_clusters)
        return res.metrics[self._valid_key()]

    def end_stage(self, stage: str, best_epochs: dict[str, int]) -> None:
        """After the loop restored the stage members' best weights: the last stage chooses
        each head's α on validation; the global stage's space is clustered and mined."""
        self.in_stage = False
        if best_epochs:
            self.stage_best_epochs[stage] = dict(best_epochs)
        if stage == self.plan[-1][0] and self.cfg.attention_select != "head" and self.has_valid():
            self._select_alpha()
        if stage == "global" and not self.clustered:
            self._cluster_and_mine()

    def _select_alpha(self) -> None:
        """attention_select: validation — each head keeps the trained α, a uniform α, the
        standardised ensemble of its spaces, or one of its single spaces (scored alone, in its
        own metric), whichever has the best validation metric (the first of equals, so the
        trained α wins ties). A head fitted on too weak a signal then cannot rank below the
        best space it attends over, on validation."""
        self.model.eval()
        for name, head in self.model.heads.items():
            spaces = SPACES[name]
            subsets = {}
            if self.cfg.attention_select == "subsets":  # every proper subset of ≥ 2 spaces
                for size in range(2, len(spaces)):
                    for members in itertools.combinations(range(len(spaces)), size):
                        label = f"ensemble({'+'.join(spaces[r] for r in members)})"
                        subsets[label] = head.subset_code(list(members))
            options = {"head": head.HEAD, "uniform": head.UNIFORM, "ensemble": head.ENSEMBLE,
                       **subsets, **{s: r for r, s in enumerate(spaces)}}
            scores = {}
            for label, code in options.items():
                head.choice.fill_(code)
                scores[label] = self._member_score("attention", name)
            best = max(scores, key=scores.get)
            head.choice.fill_(options[best])
            self.select_scores[name] = scores

    def alpha_choices(self) -> dict[str, str]:
        """What each head scores with: 'head', 'uniform', 'ensemble', 'ensemble(A+B)' or a
        space's name."""
        names = {AttentionNet.HEAD: "head", AttentionNet.UNIFORM: "uniform",
                 AttentionNet.ENSEMBLE: "ensemble"}
        out = {}
        for h, a in self.model.heads.items():
            code = int(a.choice)
            if code in names:
                out[h] = names[code]
            elif code <= AttentionNet.SUBSET:
                out[h] = f"ensemble({'+'.join(SPACES[h][r] for r in a.ensemble_members())})"
            else:
                out[h] = SPACES[h][code]
        return out

    # ---- evaluation -----------------------------------------------------------------------
    def _index(self) -> ClusterIndex:
        net = self.model.nets[self.cfg.cluster_space]
        with torch.no_grad():
            _, iv = net.tables()
        cent = self.model.centroids.cpu().numpy()
        if not self.clustered and not cent.any():
            cent = kmeans(iv.cpu().numpy(), self.cfg.num_clusters,
                          derive_seed(self.ctx.seed, "kmeans"))
        return ClusterIndex.from_centroids(cent, iv.cpu().numpy())

    def _candidate_fn(self, index: ClusterIndex, k: int):
        net = self.model.nets[self.cfg.cluster_space]
        with torch.no_grad():
            uv = net.tables()[0].cpu().numpy()
        return lambda users: index.candidates(index.nearest_clusters(uv[users.numpy()], k))

    def _evaluate_type(self, rep: str, split: str, index: ClusterIndex | None,
                       k: int) -> EvalResult:
        scorer = self.model.scorer(rep)
        if self.loo:
            return sampled_ranking(scorer, self.ctx.data, split, self.ctx.eval.k,
                                   metrics=self.ctx.eval.metrics)
        cands = None if index is None else self._candidate_fn(index, k)
        return retrieval_ranking(scorer, cands, self.ctx.data, split, self.ctx.eval.k,
                                 metrics=self.ctx.eval.metrics)

    def evaluate(self, split: str) -> EvalResult:
        """The main type at K (cluster index) or exhaustively; leave-one-out splits rank the
        stored candidates. Every type also reports as ``metric|TYPE`` (the main one too), extra
        K as ``metric|K<k>`` (``metric|TYPE|K<k>`` for the extra types). During training
        (``split == 'valid'``) only the main type is scored, plus each member of the current
        stage as ``<metric>|<member>|stage`` when the stage selects its members; the final
        validation scores of every type are in ``extra_metrics()['valid']``."""
        if split != "valid":
            return self._evaluate(split, full=True)
        result = self._evaluate(split, full=False)
        if self.cfg.stage_patience is not None and self.in_stage:
            members = next(m for s, m, _ in self.plan if s == self.current)
            result.metrics.update({self.member_metric(m): self._member_score(self.current, m)
                                   for m in members})
        return result

    def _evaluate(self, split: str, full: bool) -> EvalResult:
        self.model.eval()
        index = None if self.loo or self.cfg.retrieval == "exhaustive" else self._index()
        k = self.cfg.candidate_clusters
        main = self.cfg.representation
        result = self._evaluate_type(main, split, index, k)
        if full:
            result.metrics.update({f"{m}|{main}": v for m, v in list(result.metrics.items())})
        for kk in self.cfg.report_candidates if index is not None and full else []:
            extra = self._evaluate_type(main, split, index, kk)
            result.metrics.update({f"{m}|K{kk}": v for m, v in extra.metrics.items()})
        for rep in self.model.types[1:] if full else []:
            extra = self._evaluate_type(rep, split, index, k)
            result.metrics.update({f"{m}|{rep}": v for m, v in extra.metrics.items()
                                   if m not in ("pool_size", "candidate_fraction")})
            for name, vec in extra.per_unit.items():
                if name != "user":
                    result.per_unit[f"{name}|{rep}"] = vec
            for kk in self.cfg.report_candidates if index is not None else []:
                extra = self._evaluate_type(rep, split, index, kk)
                result.metrics.update({f"{m}|{rep}|K{kk}": v for m, v in extra.metrics.items()
                                       if m not in ("pool_size", "candidate_fraction")})
        if full:
            for name, vec in list(result.per_unit.items()):
                if name != "user" and "|" not in name:
                    result.per_unit[f"{name}|{main}"] = vec
        return result

    def state_dict(self) -> dict:
        return {"opts": {k: o.state_dict() for k, o in self.opts.items()},
                "gen": self.gen.get_state(), "neg_gen": self.neg_gen.get_state(),
                "local": self.local, "clustered": self.clustered, "current": self.current,
                "in_stage": self.in_stage,
                "stage_best_epochs": self.stage_best_epochs, "select_scores": self.select_scores}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.neg_gen.set_state(state["neg_gen"])
        self.local = state["local"]
        self.clustered = state["clustered"]
        self.current, self.in_stage = state["current"], state["in_stage"]
        self.stage_best_epochs = state["stage_best_epochs"]
        self.select_scores = state["select_scores"]
        for stage, opt_state in state["opts"].items():
            members = next(m for s, m, _ in self.plan if s == stage)
            self._opt(stage, members).load_state_dict(opt_state)

    def extra_metrics(self) -> dict:
        """Schedule facts, and (with a validation split) every type's final validation
        metrics, on which the sound variant's switches are chosen."""
        out = {"local_triplets": int(len(self.local)), "attention_holdout": int(len(self.held)),
               "stages": [{"stage": s, "members": m, "epochs": e} for s, m, e in self.plan],
               "stage_best_epochs": self.stage_best_epochs,
               "alpha_choice": self.alpha_choices(), "alpha_select_valid": self.select_scores}
        if self.has_valid():
            out["valid"] = {k: v for k, v in self._evaluate("valid", full=True).metrics.items()
                            if np.isfinite(v)}
        return out


def make_gl_attention_trainer(cfg: GLAttentionConfig, ctx: RunContext) -> GLAttentionTrainer:
    return GLAttentionTrainer(cfg, ctx)
