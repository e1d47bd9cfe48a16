"""Attention on Global-Local Representation Spaces (Rattaphun, Fang & Chiu, IEEE TCSS 2021).

Four representation networks (separate user and item towers: embedding, two hidden layers,
L2-normalised output) are trained with the product loss (−ln σ, Eq. 3) or the distance triplet
loss (Eq. 4) on global triplets T (GD, GP) or on local triplets T† ∪ T‡ mined from k-means
clusters of the global item representations (LD, LP; Eqs. 5–6). An attention network (Eqs. 7–9)
weighs the R frozen spaces per user-item pair. Retrieval (Algorithm 1): a faiss IVF index over
the cluster space picks the K nearest clusters; the model re-ranks their items.

The trainer is staged through the one loop's epochs: global nets, then k-means and mining, then
local nets, then attention. The paper is followed (real negatives, −ln σ, vector distances,
plain softmax, T ∪ T† ∪ T‡); the authors' code variants are switches (``loss_impl: code``,
``alpha_linear``, ``attention_mlp_depth``), its bugs are not reproduced (spec §4).
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from recbench.config import Strict
from recbench.data.graph import split_edges
from recbench.eval.ranking import sampled_ranking
from recbench.eval.retrieval import ClusterIndex, kmeans, retrieval_ranking
from recbench.seeding import derive_seed, numpy_rng, torch_generator
from recbench.train import objectives, samplers
from recbench.train.api import EvalResult, RunContext
from recbench.train.trainers import make_optimizer

Representation = Literal["GD", "GP", "LD", "LP", "GAD", "GAP", "LAD", "LAP", "AD", "AP"]
SPACES = {"GD": ["GD"], "GP": ["GP"], "LD": ["LD"], "LP": ["LP"], "GAD": ["GD", "GP"],
          "GAP": ["GD", "GP"], "LAD": ["LD", "LP"], "LAP": ["LD", "LP"],
          "AD": ["GD", "GP", "LD", "LP"], "AP": ["GD", "GP", "LD", "LP"]}


class GLAttentionConfig(Strict):
    name: Literal["gl_attention"]
    representation: Representation = "AD"  # what is scored: one space or an attention blend
    emb_dim: int = 64
    hidden_dims: list[int] = Field(default_factory=lambda: [64, 64])
    out_dim: int = 64  # representation size (Table 6: 32, 64, 128)
    normalize: bool = True  # L2-normalised outputs (paper); the authors' GP vectors are not
    margin: float = 0.5  # α of the distance loss
    squared_distance: bool = False  # Eq. 4 with squared norms (FaceNet) instead of norms
    reg: float = 0.0  # L2 on the batch's embedding rows (product loss; λ not given)
    negative_sampler: Literal["uniform", "popularity"] = "uniform"
    num_clusters: int = 20  # M: k-means clusters (local mining and the retrieval index)
    candidate_clusters: int = 2  # K: clusters whose items are re-ranked
    report_candidates: list[int] = Field(default_factory=list)  # also report metrics at these K
    extra_representations: list[Representation] = Field(default_factory=list)  # also trained
    # from the same nets and reported as metric|TYPE (one run gives Tables 2-3's ten rows)
    cluster_space: Literal["GD", "GP"] = "GD"  # the global space clustered (paper: not stated)
    mining_clusters: int = 2  # J: a user's candidate clusters for local triplets
    mining_negatives: int = 10  # negatives tried per positive; those passing Eq. 5/6 are kept
    local_sets: list[Literal["intra", "inter"]] = Field(
        default_factory=lambda: ["intra", "inter"])  # T† (Eq. 5) and T‡ (Eq. 6)
    local_init: Literal["scratch", "global"] = "global"  # LD/LP start from GD/GP's weights
    local_data: list[Literal["global", "local"]] = Field(
        default_factory=lambda: ["local"])  # LD/LP's triplets: T† ∪ T‡ (paper), plus T if asked
    attention_mlp_depth: int = 3  # layers of f^(r) (the code's 3 × Dense(64, ReLU))
    alpha_linear: bool = False  # the code's learned R×R layer before the softmax
    attention_data: list[Literal["global", "local"]] = Field(
        default_factory=lambda: ["global", "local"])  # T ∪ T† ∪ T‡ (the code: T only)
    loss_impl: Literal["paper", "code"] = "paper"  # attention loss as printed or as coded
    retrieval: Literal["clusters", "exhaustive"] = "clusters"
    global_epochs: int = 60
    local_epochs: int = 60
    attention_epochs: int = 30
    stage_patience: int | None = None  # per-stage early stopping on validation recall@N

    @model_validator(mode="after")
    def _check(self) -> GLAttentionConfig:
        if self.candidate_clusters > self.num_clusters:
            raise ValueError("candidate_clusters (K) must not exceed num_clusters (M)")
        if self.mining_clusters > self.num_clusters:
            raise ValueError("mining_clusters (J) must not exceed num_clusters (M)")
        return self


class Tower(nn.Module):
    """ID → embedding → hidden layers (ReLU) → linear output → L2 normalisation."""

    def __init__(self, num: int, emb_dim: int, hidden_dims: list[int], out_dim: int,
                 normalize: bool = True):
        super().__init__()
        self.normalize = normalize
        self.emb = nn.Embedding(num, emb_dim)
        nn.init.normal_(self.emb.weight, std=0.1)
        layers: list[nn.Module] = []
        width = emb_dim
        for h in hidden_dims:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.mlp(self.emb(ids))
        return F.normalize(out, dim=-1) if self.normalize else out


class RepresentationNet(nn.Module):
    """Siamese-style network with unshared user and item towers (Fig. 2)."""

    def __init__(self, num_users: int, num_items: int, emb_dim: int = 64,
                 hidden_dims: list[int] | None = None, out_dim: int = 64,
                 normalize: bool = True):
        super().__init__()
        hidden = [64, 64] if hidden_dims is None else hidden_dims
        self.user = Tower(num_users, emb_dim, hidden, out_dim, normalize)
        self.item = Tower(num_items, emb_dim, hidden, out_dim, normalize)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All user (U, d) and item (I, d) representations."""
        dev = self.user.emb.weight.device
        return (self.user(torch.arange(self.user.emb.num_embeddings, device=dev)),
                self.item(torch.arange(self.item.emb.num_embeddings, device=dev)))


class AttentionNet(nn.Module):
    """α^(r) = softmax_r(f^(r)(g^(r)(u)) · f^(r)(g^(r)(i⁺))) (Eqs. 7–8); blend of Eq. 9.

    ``f^(r)``: ``depth`` Linear+ReLU layers per space, shared by user and item (identity when
    depth is 0). ``alpha_linear`` adds the code's learned R×R layer before the softmax.
    """

    def __init__(self, num_spaces: int, dim: int, depth: int = 3, alpha_linear: bool = False):
        super().__init__()
        self.f = nn.ModuleList()
        for _ in range(num_spaces):
            layers: list[nn.Module] = []
            for _ in range(depth):
                lin = nn.Linear(dim, dim)
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
                layers += [lin, nn.ReLU()]
            self.f.append(nn.Sequential(*layers))
        self.mix = nn.Linear(num_spaces, num_spaces) if alpha_linear else None

    def transform(self, reps: torch.Tensor) -> torch.Tensor:
        """f^(r) applied per space: (..., R, d) → (..., R, d)."""
        return torch.stack([f(reps[..., r, :]) for r, f in enumerate(self.f)], dim=-2)

    def alpha(self, fu: torch.Tensor, fi: torch.Tensor) -> torch.Tensor:
        """Attention weights from transformed user/item reps: (..., R, d) → (..., R)."""
        s = (fu * fi).sum(-1)
        if self.mix is not None:
            s = self.mix(s)
        return torch.softmax(s, dim=-1)


class GLAttention(nn.Module):
    """The representation nets a run needs, one attention head per attentive type, centroids.

    ``representation`` is the type scored by default; ``extra`` types are trained alongside
    from the same representation nets (one head each) so one run can report all ten types.
    Every space the types use is trained, plus ``cluster_space`` (the retrieval index).
    """

    def __init__(self, num_users: int, num_items: int, representation: str = "AD",
                 extra: list[str] | None = None, cluster_space: str = "GD", emb_dim: int = 64,
                 hidden_dims: list[int] | None = None, out_dim: int = 64,
                 num_clusters: int = 20, attention_depth: int = 3, alpha_linear: bool = False,
                 normalize: bool = True, local_from_global: bool = False):
        super().__init__()
        self.representation = representation
        self.types = [representation] + [t for t in dict.fromkeys(extra or [])
                                         if t != representation]
        used = {s for t in self.types for s in SPACES[t]} | {cluster_space}
        if local_from_global:  # a local net starts from its global counterpart's weights
            used |= {"G" + s[1] for s in used if s.startswith("L")}
        nets = [n for n in ("GD", "GP", "LD", "LP") if n in used]
        self.nets = nn.ModuleDict({n: RepresentationNet(num_users, num_items, emb_dim,
                                                        hidden_dims, out_dim, normalize)
                                   for n in nets})
        self.heads = nn.ModuleDict({
            t: AttentionNet(len(SPACES[t]), out_dim, attention_depth, alpha_linear)
            for t in self.types if len(SPACES[t]) > 1})
        self.register_buffer("centroids", torch.zeros(num_clusters, out_dim))

    @property
    def attention(self) -> AttentionNet | None:
        return self.heads[self.representation] if self.representation in self.heads else None

    @torch.no_grad()
    def space_tables(self, spaces: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen representations of ``spaces``: users (U, R, d), items (I, R, d)."""
        tabs = [self.nets[s].tables() for s in spaces]
        return torch.stack([t[0] for t in tabs], 1), torch.stack([t[1] for t in tabs], 1)

    def blend(self, head: str, gu: torch.Tensor, gp: torch.Tensor, gn: torch.Tensor):
        """Eq. 9 for a batch of triplets of (B, R, d) reps; α from (u, i⁺) only."""
        att = self.heads[head]
        a = att.alpha(att.transform(gu), att.transform(gp))[..., None]
        return (a * gu).sum(-2), (a * gp).sum(-2), (a * gn).sum(-2)

    def scorer(self, rep: str | None = None) -> Scorer:
        """Pair scorer of one type (default: ``representation``) with the current weights."""
        rep = rep or self.representation
        gu, gi = self.space_tables(SPACES[rep])
        return Scorer.from_tables(gu, gi, self.heads[rep] if rep in self.heads else None,
                                  rep.endswith("D"))


class Scorer:
    """Pair scores (higher is better) from precomputed tables, without per-pair d-dim blends.

    For the attention model ⟨ū, ī⟩ = αᵀ G α with G_rs = ⟨g_r(u), g_s(i)⟩, and
    ‖ū − ī‖² = αᵀG_uu α + αᵀG_ii α − 2 αᵀG α, so a pair costs O(R²) after the tables.
    """

    @classmethod
    def from_tables(cls, gu: torch.Tensor, gi: torch.Tensor, attention: AttentionNet | None,
                    distance: bool) -> Scorer:
        """A scorer on given (U, R, d) / (I, R, d) representations (benchmarks, references)."""
        out = cls.__new__(cls)
        out._setup(gu, gi, attention, distance)
        return out

    def _setup(self, gu: torch.Tensor, gi: torch.Tensor, attention: AttentionNet | None,
               distance: bool) -> None:
        with torch.no_grad():
            self.gu, self.gi, self.att, self.distance = gu, gi, attention, distance
            if self.att is not None:
                self.fu, self.fi = self.att.transform(self.gu), self.att.transform(self.gi)
                self.guu = torch.einsum("urd,usd->urs", self.gu, self.gu)
                self.gii = torch.einsum("ird,isd->irs", self.gi, self.gi)

    @torch.no_grad()
    def all_items(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of users (B,) against every item (B, I) by matmuls, without gathering."""
        if self.att is None:
            u, i = self.gu[users, 0], self.gi[:, 0]
            if self.distance:
                return -torch.cdist(u, i)
            return u @ i.T
        a = torch.softmax(self._logits(torch.einsum("brd,ird->bir", self.fu[users], self.fi)), -1)
        cross = torch.einsum("brd,isd->birs", self.gu[users], self.gi)
        dot = torch.einsum("bir,birs,bis->bi", a, cross, a)
        if not self.distance:
            return dot
        uu = torch.einsum("bir,brs,bis->bi", a, self.guu[users], a)
        ii = torch.einsum("bir,irs,bis->bi", a, self.gii, a)
        return -(uu + ii - 2 * dot).clamp(min=0).sqrt()

    def _logits(self, s: torch.Tensor) -> torch.Tensor:
        return self.att.mix(s) if self.att.mix is not None else s

    @torch.no_grad()
    def __call__(self, users: torch.Tensor, items: torch.Tensor,
                 budget: int = 1 << 23) -> torch.Tensor:
        rows = max(1, budget // max(1, items.shape[1] * self.gu.shape[1] * self.gu.shape[2]))
        if len(users) > rows:  # bound the (rows, P, R, d) gather
            return torch.cat([self(users[s:s + rows], items[s:s + rows])
                              for s in range(0, len(users), rows)])
        u = self.gu[users][:, None]  # (B, 1, R, d)
        i = self.gi[items]  # (B, P, R, d)
        if self.att is None:
            if self.distance:
                return -(u[..., 0, :] - i[..., 0, :]).norm(dim=-1)
            return (u[..., 0, :] * i[..., 0, :]).sum(-1)
        a = self.att.alpha(self.fu[users][:, None], self.fi[items])  # (B, P, R)
        cross = torch.einsum("bxrd,bpsd->bprs", u, i)
        dot = torch.einsum("bpr,bprs,bps->bp", a, cross, a)
        if not self.distance:
            return dot
        uu = torch.einsum("bpr,brs,bps->bp", a, self.guu[users], a)
        ii = torch.einsum("bpr,bprs,bps->bp", a, self.gii[items], a)
        return -(uu + ii - 2 * dot).clamp(min=0).sqrt()


def mine_local_triplets(user_vecs: np.ndarray, item_vecs: np.ndarray, centroids: np.ndarray,
                        assign: np.ndarray, users: np.ndarray, items: np.ndarray,
                        seen: samplers.SeenIndex, num_clusters_per_user: int,
                        negatives_per_positive: int, rng: np.random.Generator,
                        sets: tuple[str, ...] = ("intra", "inter")) -> np.ndarray:
    """Local triplets T† ∪ T‡ (Eqs. 5–6) in the clustered global space: (n, 3) [u, i⁺, i⁻].

    For user u, its J nearest centroids are the candidate clusters. A training positive i⁺ in
    one of them is paired with up to ``negatives_per_positive`` unobserved items drawn from the
    candidate clusters; a pair is kept when the triplet is hard: same cluster and
    ‖û − î⁺‖ > ‖û − î⁻‖ (T†), or different clusters and ‖û − μ_j‖ > ‖û − μ_k‖ (T‡).
    """
    d_uc = ((user_vecs[:, None, :] - centroids[None]) ** 2).sum(-1)  # (U, M)
    near = np.argsort(d_uc, axis=1, kind="stable")[:, :num_clusters_per_user]
    members = [np.flatnonzero(assign == c) for c in range(len(centroids))]
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    out = []
    for u_rows in np.split(np.arange(len(users)), bounds):
        if len(u_rows) == 0:
            continue
        u = int(users[u_rows[0]])
        cands = near[u]
        pos = items[u_rows]
        pos = pos[np.isin(assign[pos], cands)]
        pool = np.concatenate([members[c] for c in cands])
        if len(pos) == 0 or len(pool) == 0:
            continue
        neg = pool[rng.integers(len(pool), size=(len(pos), negatives_per_positive))]
        pos = np.repeat(pos, negatives_per_positive)
        neg = neg.reshape(-1)
        uu = np.full(len(pos), u)
        ok = ~seen.contains(torch.from_numpy(uu), torch.from_numpy(neg)).numpy()
        d_pos = ((user_vecs[u] - item_vecs[pos]) ** 2).sum(-1)
        d_neg = ((user_vecs[u] - item_vecs[neg]) ** 2).sum(-1)
        same = assign[pos] == assign[neg]
        hard = np.where(same, (d_pos > d_neg) & ("intra" in sets),
                        (d_uc[u, assign[pos]] > d_uc[u, assign[neg]]) & ("inter" in sets))
        keep = ok & hard
        out.append(np.stack([uu[keep], pos[keep], neg[keep]], 1))
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)


def code_distance_loss(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor,
                       margin: float) -> torch.Tensor:
    """The authors' AD loss: a hinge per coordinate on squared differences, averaged."""
    return F.relu((u - p) ** 2 - (u - n) ** 2 + margin).mean()


def code_product_loss(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """The authors' AP loss: 1 − σ(Σ_batch ⟨ū, ī⁺⟩ − Σ_batch ⟨ū, ī⁻⟩), one sigmoid per batch."""
    return 1 - torch.sigmoid((u * p).sum() - (u * n).sum())


class GLAttentionTrainer:
    """Staged epoch strategy: global nets → k-means + mining → local nets → attention.

    Each stage owns a slice of the loop's epochs (``num_epochs`` is their sum). Nets of one
    stage train side by side on the same triplet batches (independent parameters and losses).
    With a validation split and ``stage_patience``, a stage stops early on validation recall@N
    of its nets and keeps its best weights; the loop then keeps the last epoch (``monitor`` is
    the epoch counter), since best.pt must hold the finished model of every stage.
    """

    monitor = "progress"

    def __init__(self, cfg: GLAttentionConfig, ctx: RunContext):
        self.cfg, self.ctx = cfg, ctx
        torch.manual_seed(derive_seed(ctx.seed, "init") % (2**31))
        self.model = GLAttention(ctx.data.num_users, ctx.data.num_items, cfg.representation,
                                 cfg.extra_representations, cfg.cluster_space, cfg.emb_dim,
                                 cfg.hidden_dims, cfg.out_dim, cfg.num_clusters,
                                 cfg.attention_mlp_depth, cfg.alpha_linear, cfg.normalize,
                                 cfg.local_init == "global").to(ctx.device)
        nets = list(self.model.nets)
        self.stages: list[tuple[str, list[str], int]] = []
        glob = [n for n in nets if n.startswith("G")]
        local = [n for n in nets if n.startswith("L")]
        self.stages.append(("global", glob, cfg.global_epochs))
        if local:
            self.stages.append(("local", local, cfg.local_epochs))
        if len(self.model.heads):
            self.stages.append(("attention", [], cfg.attention_epochs))
        self.num_epochs = sum(e for _, _, e in self.stages)
        g = ctx.data.g
        self.users, self.items, _ = split_edges(g, "train")
        self.seen = samplers.SeenIndex(self.users, self.items, ctx.data.num_items)
        self.popularity = torch.bincount(self.items, minlength=ctx.data.num_items)
        self.gen = torch_generator(ctx.seed, "batches")
        self.neg_gen = torch_generator(ctx.seed, "negatives")
        self.local = torch.zeros((0, 3), dtype=torch.int64)
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.stage_best: dict = {}
        self.done: set[str] = set()
        self.clustered = False
        self.has_valid = bool(g.edges["rates"].data["valid"].any())
        self.epochs_seen = 0

    # ---- schedule -------------------------------------------------------------------------
    def _stage(self, epoch: int) -> tuple[str, list[str], int]:
        start = 0
        for name, nets, n in self.stages:
            if epoch < start + n:
                return name, nets, epoch - start
            start += n
        return self.stages[-1][0], self.stages[-1][1], epoch - start

    def _params(self, stage: str, nets: list[str]):
        if stage == "attention":
            return self.model.heads.parameters()
        return [p for n in nets for p in self.model.nets[n].parameters()]

    def _opt(self, stage: str, nets: list[str]) -> torch.optim.Optimizer:
        if stage not in self.opts:
            self.opts[stage] = make_optimizer(self._params(stage, nets), self.ctx.train)
        return self.opts[stage]

    # ---- data -----------------------------------------------------------------------------
    def _global_triplets(self) -> torch.Tensor:
        if self.cfg.negative_sampler == "popularity":
            neg = samplers.popularity_negatives(self.users, self.seen, self.popularity,
                                                self.neg_gen)
        else:
            neg = samplers.uniform_negatives(self.users, self.seen, self.neg_gen)
        return torch.stack([self.users, self.items, neg], 1)

    def _cluster_and_mine(self) -> None:
        """k-means on the clustered space's items; local triplets from its user/item vectors."""
        net = self.model.nets[self.cfg.cluster_space]
        net.eval()
        with torch.no_grad():
            uv, iv = (t.cpu().numpy() for t in net.tables())
        cent = kmeans(iv, self.cfg.num_clusters, derive_seed(self.ctx.seed, "kmeans"))
        self.model.centroids.copy_(torch.from_numpy(cent))
        assign = ClusterIndex.from_centroids(cent, iv).assignments()
        trip = mine_local_triplets(uv, iv, cent, assign, self.users.numpy(), self.items.numpy(),
                                   self.seen, self.cfg.mining_clusters,
                                   self.cfg.mining_negatives, numpy_rng(self.ctx.seed, "mining"),
                                   tuple(self.cfg.local_sets))
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

    # ---- the Trainer contract -------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        stage, nets, _ = self._stage(epoch)
        self.epochs_seen = epoch + 1
        if stage != "global" and not self.clustered:
            self._cluster_and_mine()
        if stage in self.done:
            return {"stage": float(self._stage_index(stage)), "skipped": 1.0}
        if stage == "attention":
            parts = self._attention_epoch()
        else:
            parts = self._rep_epoch(stage, nets)
        parts["stage"] = float(self._stage_index(stage))
        parts["local_triplets"] = float(len(self.local))
        if self.has_valid and self.cfg.stage_patience is not None:
            self._stage_early_stop(epoch, stage, nets)
        if self._stage(epoch + 1)[0] != stage or epoch + 1 >= self.num_epochs:
            self._finish_stage(stage, nets)
        return parts

    def _stage_index(self, stage: str) -> int:
        return [s for s, _, _ in self.stages].index(stage)

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

    def _attention_epoch(self) -> dict[str, float]:
        opt = self._opt("attention", [])
        parts = []
        if "global" in self.cfg.attention_data:
            parts.append(self._global_triplets())
        if "local" in self.cfg.attention_data:
            parts.append(self.local)
        trip = torch.cat(parts)
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

    def _stage_score(self, stage: str, nets: list[str]) -> float:
        k = f"recall@{self.ctx.eval.k[0]}"
        if stage == "attention":
            return self.evaluate("valid").metrics[k]
        scores = [self._evaluate_spaces([n], "valid", exhaustive=True).metrics[k] for n in nets]
        return float(np.mean(scores))

    def _stage_early_stop(self, epoch: int, stage: str, nets: list[str]) -> None:
        score = self._stage_score(stage, nets)
        best = self.stage_best.get(stage)
        if best is None or score > best["score"]:
            mods = ({"heads": self.model.heads} if stage == "attention"
                    else {n: self.model.nets[n] for n in nets})
            self.stage_best[stage] = {"score": score, "bad": 0, "epoch": epoch, "state": {
                n: copy.deepcopy(m.state_dict()) for n, m in mods.items()}}
        else:
            best["bad"] += 1
            if best["bad"] >= self.cfg.stage_patience:
                self._finish_stage(stage, nets)

    def _finish_stage(self, stage: str, nets: list[str]) -> None:
        """Restore the stage's best validation weights (if tracked) and mark it done."""
        best = self.stage_best.get(stage)
        if best is not None and stage not in self.done:
            for n, state in best["state"].items():
                (self.model.heads if n == "heads" else self.model.nets[n]).load_state_dict(state)
        self.done.add(stage)
        if stage == "global" and not self.clustered:
            self._cluster_and_mine()

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

    def _evaluate_spaces(self, spaces: list[str], split: str, exhaustive: bool) -> EvalResult:
        """Exhaustive evaluation of one trained net alone (stage early stopping)."""
        self.model.eval()
        return retrieval_ranking(self.model.scorer(spaces[0]), None, self.ctx.data, split,
                                 self.ctx.eval.k)

    def _evaluate_type(self, rep: str, split: str, index: ClusterIndex | None,
                       k: int) -> EvalResult:
        scorer = self.model.scorer(rep)
        if self.ctx.data.negatives is not None:
            return sampled_ranking(scorer, self.ctx.data, split, self.ctx.eval.k)
        cands = None if index is None else self._candidate_fn(index, k)
        return retrieval_ranking(scorer, cands, self.ctx.data, split, self.ctx.eval.k)

    def evaluate(self, split: str) -> EvalResult:
        """The main type at K (cluster index) or exhaustively; leave-one-out splits rank the
        stored candidates. Extra types report as ``metric|TYPE``, extra K as ``metric|K<k>``
        (``metric|TYPE|K<k>`` for the extra types)."""
        self.model.eval()
        loo = self.ctx.data.negatives is not None
        index = None if loo or self.cfg.retrieval == "exhaustive" else self._index()
        k = self.cfg.candidate_clusters
        result = self._evaluate_type(self.cfg.representation, split, index, k)
        if index is not None:
            for kk in self.cfg.report_candidates:
                extra = self._evaluate_type(self.cfg.representation, split, index, kk)
                result.metrics.update({f"{m}|K{kk}": v for m, v in extra.metrics.items()})
        for rep in self.model.types[1:]:
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
        if split == "valid":
            result.metrics["progress"] = float(self.epochs_seen)
        return result

    def state_dict(self) -> dict:
        return {"opts": {k: o.state_dict() for k, o in self.opts.items()},
                "gen": self.gen.get_state(), "neg_gen": self.neg_gen.get_state(),
                "local": self.local, "done": sorted(self.done), "clustered": self.clustered,
                "epochs_seen": self.epochs_seen,
                "stage_best": self.stage_best}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.neg_gen.set_state(state["neg_gen"])
        self.local = state["local"]
        self.done = set(state["done"])
        self.clustered = state["clustered"]
        self.stage_best = state["stage_best"]
        self.epochs_seen = state["epochs_seen"]
        for stage, opt_state in state["opts"].items():
            nets = next(n for s, n, _ in self.stages if s == stage)
            self._opt(stage, nets).load_state_dict(opt_state)

    def extra_metrics(self) -> dict:
        return {"local_triplets": int(len(self.local)), "stages": [
            {"stage": s, "nets": n, "epochs": e} for s, n, e in self.stages],
            "stage_best_epochs": {s: b["epoch"] for s, b in self.stage_best.items()}}


def make_gl_attention_trainer(cfg: GLAttentionConfig, ctx: RunContext) -> GLAttentionTrainer:
    return GLAttentionTrainer(cfg, ctx)
