"""Attention on Global-Local Representation Spaces (Rattaphun, Fang & Chiu, IEEE TCSS 2021).

Four representation networks (separate user and item towers: embedding, two hidden layers,
optionally L2-normalised output) are trained with the product loss (−ln σ, Eq. 3) or the
distance triplet loss (Eq. 4) on global triplets T (GD, GP) or on local triplets mined from
k-means clusters of the global item representations (LD, LP). An attention network (Eqs. 7–9)
weighs the R frozen spaces per user-item pair. Retrieval (Algorithm 1): a faiss IVF index over
the cluster space picks the K nearest clusters; the model re-ranks their items.

This module holds the config, the networks, the scorer and the local mining; the staged epoch
strategy is ``gl_attention_trainer.py``. Two named variants share the code path:

- ``variant: paper`` — the paper as written: Eq. 5/6's hardness filter on local triplets, the
  attention fitted on T ∪ T† ∪ T‡, per-pair α, fixed epoch budgets.
- ``variant: sound`` (default) — local nets on every in-cluster triplet with an unobserved
  negative, the attention fitted on a hold-out of training positives the representation nets
  never saw (or a fixed uniform α), per-stage validation early stopping, and each attentive
  type's scorer chosen on validation among the trained head, uniform α, a standardised
  ensemble of its spaces and each of its single spaces.

Each difference is a key of its own (``local_mining``, ``attention_fit``, ``local_data``,
``normalize``, ``stage_patience``, ``blend``, ``alpha_from``, ``attention_select``);
``variant`` only sets their defaults, so a study can ablate one at a time. The authors' code
variants are switches (``loss_impl: code``, ``alpha_linear``, ``attention_mlp_depth``); its
bugs are not reproduced (spec §4).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from recbench.config import NonNegFloat, NonNegInt, PosInt, Probability, Strict
from recbench.train import samplers

Representation = Literal["GD", "GP", "LD", "LP", "GAD", "GAP", "LAD", "LAP", "AD", "AP"]
SPACES = {"GD": ["GD"], "GP": ["GP"], "LD": ["LD"], "LP": ["LP"], "GAD": ["GD", "GP"],
          "GAP": ["GD", "GP"], "LAD": ["LD", "LP"], "LAP": ["LD", "LP"],
          "AD": ["GD", "GP", "LD", "LP"], "AP": ["GD", "GP", "LD", "LP"]}


Variant = Literal["paper", "sound"]
# What ``variant`` sets when a key is not given explicitly (the study ablates each key alone).
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"local_mining": "filtered", "attention_fit": "train", "local_data": ["local"],
              "normalize": True, "stage_patience": None, "blend": "vectors", "alpha_from": "pair",
              "attention_select": "head"},
    "sound": {"local_mining": "unfiltered", "attention_fit": "holdout", "local_data": ["local"],
              "normalize": True, "stage_patience": 10, "blend": "scores", "alpha_from": "pair",
              "attention_select": "validation"},
}


class GLAttentionConfig(Strict):
    name: Literal["gl_attention"]
    variant: Variant = "sound"  # sets the defaults of the switches in VARIANT_DEFAULTS
    representation: Representation = "AD"  # what is scored: one space or an attention blend
    emb_dim: PosInt = 64
    hidden_dims: list[PosInt] = Field(default_factory=lambda: [64, 64])
    out_dim: PosInt = 64  # representation size (Table 6: 32, 64, 128)
    normalize: bool = True  # L2-normalised outputs (paper); the authors' GP vectors are not
    margin: NonNegFloat = 0.5  # α of the distance loss
    squared_distance: bool = False  # Eq. 4 with squared norms (FaceNet) instead of norms
    reg: NonNegFloat = 0.0  # L2 on the batch's embedding rows (product loss; λ not given)
    negative_sampler: Literal["uniform", "popularity"] = "uniform"
    num_clusters: PosInt = 20  # M: k-means clusters (local mining and the retrieval index)
    candidate_clusters: PosInt = 2  # K: clusters whose items are re-ranked
    report_candidates: list[PosInt] = Field(default_factory=list)  # also report metrics at these K
    extra_representations: list[Representation] = Field(default_factory=list)  # also trained
    # from the same nets and reported as metric|TYPE (one run gives Tables 2-3's ten rows)
    cluster_space: Literal["GD", "GP"] = "GD"  # the global space clustered (paper: not stated)
    mining_clusters: PosInt = 2  # J: a user's candidate clusters for local triplets
    mining_negatives: PosInt = 10  # negatives drawn per positive from the candidate clusters
    local_mining: Literal["filtered", "unfiltered"] = "unfiltered"  # filtered: keep only the
    # hard triplets of Eq. 5/6 (paper); unfiltered: every pair with an unobserved negative
    local_sets: list[Literal["intra", "inter"]] = Field(
        default_factory=lambda: ["intra", "inter"])  # T† (Eq. 5) and T‡ (Eq. 6)
    local_init: Literal["scratch", "global"] = "global"  # LD/LP start from GD/GP's weights
    local_data: list[Literal["global", "local"]] = Field(
        default_factory=lambda: ["local"])  # LD/LP's triplets: T† ∪ T‡ (paper), plus T if asked
    attention_mlp_depth: NonNegInt = 3  # layers of f^(r) (the code's 3 × Dense(64, ReLU))
    alpha_linear: bool = False  # the code's learned R×R layer before the softmax
    attention_fit: Literal["train", "holdout", "uniform"] = "holdout"  # train: the nets'
    # own triplets (attention_data); holdout: positives withheld from the representation nets;
    # uniform: no head is trained, α = 1/R for every pair
    attention_holdout: Probability = 0.1  # share of training positives withheld (attention_fit holdout)
    alpha_from: Literal["pair", "user"] = "pair"  # pair: α from (u, i) (Eqs. 7-8; training
    # takes α from (u, i⁺) for the negative too, scoring from each candidate); user: α from u
    # alone (a learned query per space), the same mixture for every item of a user
    blend: Literal["vectors", "scores"] = "scores"  # vectors: Eq. 9's ū = Σ α_r g_r(u) (the
    # paper; cross-space terms ⟨g_r(u), g_s(i)⟩ enter the score); scores: Σ α_r s_r(u, i), each
    # space scored in itself (product or distance), no cross-space terms
    attention_select: Literal["head", "validation", "subsets"] = "validation"  # head: score
    # with the trained α (paper); validation: after the last stage each attentive type keeps,
    # of its trained α, a uniform α, the standardised ensemble of its spaces (EnsembleScorer)
    # and each single space it attends over, the one with the best validation metric, so on
    # validation it is never below any of its spaces; subsets: also the ensemble of each
    # subset of ≥ 2 of its spaces (AD/AP: 10 more), i.e. an α fixed to zero on the spaces that
    # hurt, so AD is never below LAD or GAD on validation either
    attention_data: list[Literal["global", "local"]] = Field(
        default_factory=lambda: ["global", "local"])  # attention_fit train: T ∪ T† ∪ T‡
    loss_impl: Literal["paper", "code"] = "paper"  # attention loss as printed or as coded
    retrieval: Literal["clusters", "exhaustive"] = "clusters"
    global_epochs: NonNegInt = 60  # per-stage epoch budgets (the maximum under stage_patience)
    local_epochs: NonNegInt = 60
    attention_epochs: NonNegInt = 30
    stage_patience: PosInt | None = 10  # per-stage early stopping on validation (None: fixed)

    @model_validator(mode="before")
    @classmethod
    def _variant_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        variant = data.get("variant", "sound")
        if not isinstance(variant, str) or variant not in VARIANT_DEFAULTS:  # fuzz: lists
            raise ValueError(f"model.variant must be one of {', '.join(VARIANT_DEFAULTS)}, "
                             f"got {variant!r}")
        return {**VARIANT_DEFAULTS[variant], **data}

    @model_validator(mode="after")
    def _check(self) -> GLAttentionConfig:
        if self.candidate_clusters > self.num_clusters:
            raise ValueError("candidate_clusters (K) must not exceed num_clusters (M)")
        if self.mining_clusters > self.num_clusters:
            raise ValueError("mining_clusters (J) must not exceed num_clusters (M)")
        if not 0.0 < self.attention_holdout < 1.0:
            raise ValueError("attention_holdout must be in (0, 1), the share of training "
                             f"positives withheld for the attention, got {self.attention_holdout}")
        for key in ("local_data", "local_sets", "attention_data"):
            if not getattr(self, key):  # name the empty one: the error is read as key: message
                raise ValueError(f"{key} must not be empty")
        if self.global_epochs + self.local_epochs + self.attention_epochs < 1:
            raise ValueError("global_epochs, local_epochs and attention_epochs are all 0: "
                             "nothing would be trained; give a stage at least 1 epoch")
        if self.stage_patience is not None and self.stage_patience < 1:
            raise ValueError(f"stage_patience must be ≥ 1 or null, got {self.stage_patience}")
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
    depth is 0). ``alpha_linear`` adds the code's learned R×R layer before the softmax;
    ``uniform`` replaces α by 1/R (an untrained, pair-independent blend); ``user_only`` takes
    α from the user alone (one mixture per user, the same at training and at scoring).
    ``choice`` (a buffer, so checkpoints carry it) is what ``attention_select`` picked:
    ``HEAD`` (the trained α), ``UNIFORM`` (1/R), ``ENSEMBLE`` (``EnsembleScorer`` over the
    spaces), or r ≥ 0 — score with space r alone.
    """

    HEAD, UNIFORM, ENSEMBLE = -1, -2, -3
    SUBSET = -4  # codes ≤ SUBSET: the ensemble of a subset of the spaces, SUBSET − bitmask

    def __init__(self, num_spaces: int, dim: int, depth: int = 3, alpha_linear: bool = False,
                 uniform: bool = False, user_only: bool = False):
        super().__init__()
        self.uniform = uniform  # a fixed α = 1/R (attention_fit: uniform): f and mix are unused
        self.register_buffer("choice", torch.tensor(self.HEAD))
        # α from the user alone: s_r = ⟨f^(r)(g^(r)(u)), q_r⟩, q zero at init (α starts uniform)
        self.query = nn.Parameter(torch.zeros(num_spaces, dim)) if user_only else None
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

    @property
    def is_uniform(self) -> bool:
        """α = 1/R for every pair: no head was trained, or ``attention_select`` chose it."""
        return self.uniform or int(self.choice) == self.UNIFORM

    @classmethod
    def subset_code(cls, members: list[int]) -> int:
        """The ``choice`` code of the standardised ensemble of spaces ``members``."""
        return cls.SUBSET - sum(1 << r for r in members)

    def ensemble_members(self) -> list[int] | None:
        """The spaces ``attention_select`` chose to ensemble (all of them for ``ENSEMBLE``, a
        subset for a subset code), or None when it scores with an α or a single space."""
        code, spaces = int(self.choice), range(len(self.f))
        if code == self.ENSEMBLE:
            return list(spaces)
        if code <= self.SUBSET:
            return [r for r in spaces if (self.SUBSET - code) >> r & 1]
        return None

    @property
    def is_ensemble(self) -> bool:
        return self.ensemble_members() is not None

    @property
    def single_space(self) -> int | None:
        """The space ``attention_select`` fell back to (scored alone), or None."""
        return int(self.choice) if int(self.choice) >= 0 else None

    def transform(self, reps: torch.Tensor) -> torch.Tensor:
        """f^(r) applied per space: (..., R, d) → (..., R, d)."""
        return torch.stack([f(reps[..., r, :]) for r, f in enumerate(self.f)], dim=-2)

    def alpha(self, fu: torch.Tensor, fi: torch.Tensor) -> torch.Tensor:
        """Attention weights from transformed user/item reps: (..., R, d) → (..., R)."""
        if self.query is not None:
            s = (fu * self.query).sum(-1).expand(fi.shape[:-1])
        else:
            s = (fu * fi).sum(-1)
        if self.is_uniform:
            return torch.full_like(s, 1.0 / s.shape[-1])
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
                 normalize: bool = True, local_from_global: bool = False,
                 uniform_alpha: bool = False, blend_scores: bool = False,
                 alpha_from_user: bool = False):
        super().__init__()
        self.representation = representation
        self.blend_scores = blend_scores
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
            t: AttentionNet(len(SPACES[t]), out_dim, attention_depth, alpha_linear, uniform_alpha,
                            alpha_from_user)
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

    def alpha(self, head: str, gu: torch.Tensor, gp: torch.Tensor) -> torch.Tensor:
        """α of a batch of (user, positive) pairs of (B, R, d) reps: (B, R)."""
        att = self.heads[head]
        return att.alpha(att.transform(gu), att.transform(gp))

    def blend(self, head: str, gu: torch.Tensor, gp: torch.Tensor, gn: torch.Tensor):
        """Eq. 9 for a batch of triplets of (B, R, d) reps; α from (u, i⁺) only."""
        a = self.alpha(head, gu, gp)[..., None]
        return (a * gu).sum(-2), (a * gp).sum(-2), (a * gn).sum(-2)

    def scorer(self, rep: str | None = None) -> Scorer:
        """Pair scorer of one type (default: ``representation``) with the current weights."""
        rep = rep or self.representation
        if rep in self.heads and self.heads[rep].single_space is not None:
            return self.scorer(SPACES[rep][self.heads[rep].single_space])  # in its own metric
        if rep in self.heads and self.heads[rep].is_ensemble:
            return EnsembleScorer([self.scorer(SPACES[rep][r])
                                   for r in self.heads[rep].ensemble_members()])
        gu, gi = self.space_tables(SPACES[rep])
        return Scorer.from_tables(gu, gi, self.heads[rep] if rep in self.heads else None,
                                  rep.endswith("D"), self.blend_scores)


class Scorer:
    """Pair scores (higher is better) from precomputed tables, without per-pair d-dim blends.

    For the attention model ⟨ū, ī⟩ = αᵀ G α with G_rs = ⟨g_r(u), g_s(i)⟩, and
    ‖ū − ī‖² = αᵀG_uu α + αᵀG_ii α − 2 αᵀG α, so a pair costs O(R²) after the tables.
    With ``scores`` (blend: scores) only the diagonals enter: Σ_r α_r G_rr, or
    −Σ_r α_r (G_uu,rr + G_ii,rr − 2 G_rr)^½.
    """

    @classmethod
    def from_tables(cls, gu: torch.Tensor, gi: torch.Tensor, attention: AttentionNet | None,
                    distance: bool, scores: bool = False) -> Scorer:
        """A scorer on given (U, R, d) / (I, R, d) representations (benchmarks, references)."""
        out = cls.__new__(cls)
        out._setup(gu, gi, attention, distance, scores)
        return out

    def _setup(self, gu: torch.Tensor, gi: torch.Tensor, attention: AttentionNet | None,
               distance: bool, scores: bool = False) -> None:
        with torch.no_grad():
            self.gu, self.gi, self.att, self.distance = gu, gi, attention, distance
            self.scores = scores
            if self.att is not None:
                if self.att.is_uniform:  # α does not depend on f: skip the transforms
                    self.fu, self.fi = self.gu, self.gi
                else:
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
        if self.att.is_uniform:
            r = self.gu.shape[1]
            a = torch.full((len(users), self.gi.shape[0], r), 1.0 / r, device=self.gu.device)
        elif self.att.query is not None:
            s = (self.fu[users] * self.att.query).sum(-1)  # (B, R)
            a = torch.softmax(self._logits(s), -1)[:, None].expand(-1, self.gi.shape[0], -1)
        else:
            a = torch.softmax(self._logits(torch.einsum("brd,ird->bir", self.fu[users], self.fi)),
                              -1)
        if self.scores:
            cross = torch.einsum("brd,ird->bir", self.gu[users], self.gi)
            return self._score_blend(a, cross, self.guu[users].diagonal(dim1=-2, dim2=-1)[:, None],
                                     self.gii.diagonal(dim1=-2, dim2=-1)[None])
        cross = torch.einsum("brd,isd->birs", self.gu[users], self.gi)
        dot = torch.einsum("bir,birs,bis->bi", a, cross, a)
        if not self.distance:
            return dot
        uu = torch.einsum("bir,brs,bis->bi", a, self.guu[users], a)
        ii = torch.einsum("bir,irs,bis->bi", a, self.gii, a)
        return -(uu + ii - 2 * dot).clamp(min=0).sqrt()

    def _logits(self, s: torch.Tensor) -> torch.Tensor:
        return self.att.mix(s) if self.att.mix is not None else s

    def _score_blend(self, a: torch.Tensor, cross: torch.Tensor, uu: torch.Tensor,
                     ii: torch.Tensor) -> torch.Tensor:
        """Σ_r α_r s_r from per-space ⟨u_r, i_r⟩ (cross) and squared norms (uu, ii)."""
        if not self.distance:
            return (a * cross).sum(-1)
        return -(a * (uu + ii - 2 * cross).clamp(min=0).sqrt()).sum(-1)

    def alpha(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The attention weights of (user, item) pairs: users (B,), items (B, P) → (B, P, R)."""
        return self.att.alpha(self.fu[users][:, None], self.fi[items])

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
        a = self.alpha(users, items)  # (B, P, R)
        if self.scores:
            cross = torch.einsum("bxrd,bprd->bpr", u, i)
            return self._score_blend(a, cross,
                                     self.guu[users].diagonal(dim1=-2, dim2=-1)[:, None],
                                     self.gii[items].diagonal(dim1=-2, dim2=-1))
        cross = torch.einsum("bxrd,bpsd->bprs", u, i)
        dot = torch.einsum("bpr,bprs,bps->bp", a, cross, a)
        if not self.distance:
            return dot
        uu = torch.einsum("bpr,brs,bps->bp", a, self.guu[users], a)
        ii = torch.einsum("bpr,bprs,bps->bp", a, self.gii[items], a)
        return -(uu + ii - 2 * dot).clamp(min=0).sqrt()


class EnsembleScorer:
    """Σ_r (s_r(u, i) − μ_r(u)) / σ_r(u): each space scored as its single type is (distance or
    product, whatever the attentive type's own metric), standardised per user over the whole
    catalogue so that spaces of different scales (unnormalised distances and products) weigh
    equally. The statistics do not depend on the candidates a protocol ranks."""

    def __init__(self, scorers: list[Scorer], batch: int = 512):
        self.scorers = scorers
        self.stats = []
        num_users = scorers[0].gu.shape[0]
        dev = scorers[0].gu.device
        for sc in scorers:
            mean, std = [], []
            for start in range(0, num_users, batch):
                full = sc.all_items(torch.arange(start, min(num_users, start + batch),
                                                 device=dev))
                mean.append(full.mean(1))
                std.append(full.std(1))
            self.stats.append((torch.cat(mean), torch.cat(std).clamp(min=1e-9)))

    def _sum(self, users: torch.Tensor, per_space) -> torch.Tensor:
        return sum((per_space(sc) - m[users, None]) / s[users, None]
                   for sc, (m, s) in zip(self.scorers, self.stats))

    @torch.no_grad()
    def all_items(self, users: torch.Tensor) -> torch.Tensor:
        return self._sum(users, lambda sc: sc.all_items(users))

    @torch.no_grad()
    def __call__(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._sum(users, lambda sc: sc(users, items))


def mine_local_triplets(user_vecs: np.ndarray, item_vecs: np.ndarray, centroids: np.ndarray,
                        assign: np.ndarray, users: np.ndarray, items: np.ndarray,
                        seen: samplers.SeenIndex, num_clusters_per_user: int,
                        negatives_per_positive: int, rng: np.random.Generator,
                        sets: tuple[str, ...] = ("intra", "inter"),
                        filtered: bool = True) -> np.ndarray:
    """Local triplets T† ∪ T‡ (Eqs. 5–6) in the clustered global space: (n, 3) [u, i⁺, i⁻].

    For user u, its J nearest centroids are the candidate clusters. A training positive i⁺ in
    one of them is paired with up to ``negatives_per_positive`` unobserved items drawn from the
    candidate clusters. ``filtered`` (the paper) keeps a pair only when the triplet is hard:
    same cluster and ‖û − î⁺‖ > ‖û − î⁻‖ (T†), or different clusters and
    ‖û − μ_j‖ > ‖û − μ_k‖ (T‡); unfiltered keeps every pair of the requested ``sets``.
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
        if filtered:
            hard = np.where(same, (d_pos > d_neg) & ("intra" in sets),
                            (d_uc[u, assign[pos]] > d_uc[u, assign[neg]]) & ("inter" in sets))
        else:
            hard = np.where(same, "intra" in sets, "inter" in sets)
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


