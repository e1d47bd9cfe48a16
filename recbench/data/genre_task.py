"""Next-genre prediction as graph-signal classification (GConv-Transform spec §6, a PROPOSAL).

The paper's data are private and its task is unstated; this module builds the public-data
stand-in the spec proposes, from the DGL container only:

- the **genre graph**: ``C`` genre nodes linked by co-occurrence on items, from the item node
  data ``genres`` (item metadata only, so no label leaks into it);
- one **sample** per (user, step ``t``) with ``t >= min_history``: the user's rating history
  ``0..t-1`` (edges of ``('user','rates','item')`` ordered by the edge data ``timestamp``, then
  item id) summarised as ``F = 6`` features on each genre node; the label is the genre set of
  the item rated at step ``t``;
- a **sample-level split** (random 9:1, then 20 % of training for validation, seeded by
  ``split_seed``), or optionally a per-user temporal one. All rating edges are used whatever the
  dataset's edge protocol: this task defines its own split over samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from recbench.config import NonNegInt, PosInt, Probability, Share, Strict
from recbench.data.graph import ITEM, RATES
from recbench.errors import DatasetError
from recbench.seeding import numpy_rng

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}


class GenreTaskConfig(Strict):
    """How samples, features, the split and the genre graph are built (spec §5 rows 2-7, 14)."""

    min_history: PosInt = 5  # first predicted step t: the history holds at least this many items
    short_window: PosInt = 5  # "share among the last 5"
    long_window: PosInt = 20  # "share among the last 20"
    split: Literal["random", "temporal"] = "random"  # temporal: per user, the latest samples test
    test_ratio: Probability = 0.1  # paper: 9:1 train:test
    valid_ratio: Share = 0.2  # paper: 20 % of the training part validates
    split_seed: NonNegInt | None = None  # None: the dataset's split_seed (meta.json), else 0
    normalize: Literal["channel", "node", "none"] = "channel"  # z-score with training statistics
    min_cooccurrence: PosInt = 1  # items two genres must share to be linked
    self_loops: bool = True
    timing_batches: PosInt = 20  # inference timing: median over this many batches of 96
    timing_warmup: NonNegInt = 3


@dataclass
class GenreSamples:
    """All samples of one dataset. ``x``: (S, C, F) float32; ``y``: (S, C) multi-hot."""

    x: torch.Tensor
    y: torch.Tensor
    user: np.ndarray  # (S,) int64
    step: np.ndarray  # (S,) int64, the target's position in the user's sequence
    split: np.ndarray  # (S,) int8, SPLIT_CODES

    def index(self, split: str) -> torch.Tensor:
        return torch.as_tensor(np.flatnonzero(self.split == SPLIT_CODES[split]))


def item_genres(g) -> np.ndarray:
    """(num_items, C) multi-hot genres from the item node data."""
    if "genres" not in g.nodes[ITEM].data:
        raise DatasetError("the genre task needs item genres (item node data 'genres'); this "
                           "dataset's parser provides none (use ml-100k or ml-1m)")
    return g.nodes[ITEM].data["genres"].numpy().astype(np.float32)


def cooccurrence(genres: np.ndarray) -> np.ndarray:
    """(C, C) number of items tagged with both genres, zero diagonal."""
    m = genres.astype(np.float64)
    counts = m.T @ m
    np.fill_diagonal(counts, 0.0)
    return counts


def genre_dgl_graph(counts: np.ndarray, min_cooccurrence: int = 1, self_loops: bool = True):
    """The (unweighted) DGL genre graph ChebConv runs on; both directions of each pair."""
    import dgl

    src, dst = np.nonzero(counts >= min_cooccurrence)
    g = dgl.graph((torch.as_tensor(src), torch.as_tensor(dst)), num_nodes=counts.shape[0])
    return dgl.add_self_loop(g) if self_loops else g


def lambda_max(g) -> float:
    """Largest eigenvalue of I - D^-1/2 A D^-1/2 with the in-degrees ChebConv uses."""
    n = g.num_nodes()
    a = np.zeros((n, n))
    src, dst = (t.numpy() for t in g.edges())
    np.add.at(a, (dst, src), 1.0)
    d = np.clip(a.sum(1), 1, None) ** -0.5
    lap = np.eye(n) - d[:, None] * a * d[None, :]
    return float(np.linalg.eigvalsh((lap + lap.T) / 2).max())


def normalized_adjacency(counts: np.ndarray, self_loops: bool = True) -> np.ndarray:
    """D^-1/2 (A + I) D^-1/2 of the weighted co-occurrence graph: the LAM-GConv initial Â."""
    a = counts + (np.eye(len(counts)) if self_loops else 0.0)
    d = np.clip(a.sum(1), 1e-12, None) ** -0.5
    return (d[:, None] * a * d[None, :]).astype(np.float32)


def _user_features(m: np.ndarray, r: np.ndarray, steps: np.ndarray, short: int,
                   long: int) -> np.ndarray:
    """Features (len(steps), C, F) of one user's history at each target step (spec §6); the F = 6
    are share_short, share_long, share_all, mean_rating, recency, log_count, in that order."""
    num = len(m)
    w = m / np.clip(m.sum(1, keepdims=True), 1, None)  # a multi-genre item splits its weight
    cw = np.vstack([np.zeros((1, m.shape[1])), np.cumsum(w, 0)])  # exclusive prefix sums
    cm = np.vstack([np.zeros((1, m.shape[1])), np.cumsum(m, 0)])
    crm = np.vstack([np.zeros((1, m.shape[1])), np.cumsum(m * r[:, None], 0)])
    seen = np.where(m > 0, np.arange(num)[:, None], -1)
    last = np.vstack([np.full((1, m.shape[1]), -1), np.maximum.accumulate(seen, 0)])
    t = steps
    ks, kl = np.minimum(short, t), np.minimum(long, t)
    share_s = (cw[t] - cw[t - ks]) / ks[:, None]
    share_l = (cw[t] - cw[t - kl]) / kl[:, None]
    share_a = cw[t] / t[:, None]
    count = cm[t]
    mean_r = np.divide(crm[t], count, out=np.zeros_like(count), where=count > 0)
    lt = last[t]
    recency = np.where(lt >= 0, 1.0 / (1.0 + (t[:, None] - 1 - lt)), 0.0)
    return np.stack([share_s, share_l, share_a, mean_r, recency, np.log1p(count)], axis=-1)


def build_samples(g, cfg: GenreTaskConfig, split_seed: int = 0) -> GenreSamples:
    """Every (user, t) sample of the graph's rating edges, its features, label and split."""
    genres = item_genres(g)
    u, i = (t.numpy() for t in g.edges(etype=RATES))
    ts = g.edges[RATES].data["timestamp"].numpy()
    ratings = g.edges[RATES].data["rating"].numpy().astype(np.float64)
    order = np.lexsort((i, ts, u))
    u, i, ratings = u[order], i[order], ratings[order]
    bounds = np.flatnonzero(np.diff(u)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(u)]])
    xs, ys, users, steps = [], [], [], []
    for s, e in zip(starts, ends, strict=True):
        m = genres[i[s:e]].astype(np.float64)
        t = np.arange(cfg.min_history, e - s)
        t = t[m[t].sum(1) > 0] if len(t) else t  # targets of unknown genre carry no label
        if not len(t):
            continue
        xs.append(_user_features(m, ratings[s:e], t, cfg.short_window, cfg.long_window))
        ys.append(m[t])
        users.append(np.full(len(t), u[s]))
        steps.append(t)
    if not xs:
        raise DatasetError(f"no user has more than min_history={cfg.min_history} ratings")
    user, step = np.concatenate(users), np.concatenate(steps)
    x = torch.as_tensor(np.concatenate(xs), dtype=torch.float32)
    y = torch.as_tensor(np.concatenate(ys), dtype=torch.float32)
    split = split_samples(user, step, cfg, split_seed)
    return GenreSamples(normalize(x, split, cfg.normalize), y, user, step, split)


def split_samples(user: np.ndarray, step: np.ndarray, cfg: GenreTaskConfig,
                  split_seed: int) -> np.ndarray:
    """Split codes per sample: a seeded random split over samples (the paper's 9:1 and 20 %),
    or per user the latest ``test_ratio`` of samples → test, the next latest → valid."""
    n = len(user)
    codes = np.zeros(n, dtype=np.int8)
    if cfg.split == "random":
        perm = numpy_rng(split_seed, "genre-task:split").permutation(n)
        n_test = int(round(cfg.test_ratio * n))
        n_valid = int(round(cfg.valid_ratio * (n - n_test)))
        codes[perm[:n_test]] = SPLIT_CODES["test"]
        codes[perm[n_test:n_test + n_valid]] = SPLIT_CODES["valid"]
        return codes
    order = np.lexsort((step, user))
    bounds = np.flatnonzero(np.diff(user[order])) + 1
    for rows in np.split(order, bounds):
        n_test = int(np.ceil(cfg.test_ratio * len(rows)))
        n_valid = int(np.ceil(cfg.valid_ratio * (len(rows) - n_test)))
        codes[rows[len(rows) - n_test:]] = SPLIT_CODES["test"]
        codes[rows[len(rows) - n_test - n_valid:len(rows) - n_test]] = SPLIT_CODES["valid"]
    return codes


def normalize(x: torch.Tensor, split: np.ndarray, how: str) -> torch.Tensor:
    """Z-score with training-split statistics, per feature channel (pooled over genre nodes)
    or per (node, feature)."""
    if how == "none":
        return x
    train = x[torch.as_tensor(split == SPLIT_CODES["train"])]
    dims = (0, 1) if how == "channel" else (0,)
    mean, std = train.mean(dims, keepdim=True), train.std(dims, keepdim=True)
    return (x - mean) / std.clamp_min(1e-6)


def majority_floor(y: torch.Tensor, train_idx: torch.Tensor, test_idx: torch.Tensor,
                   k: int) -> float:
    """Accuracy@k of always predicting the k genres most frequent among training targets."""
    top = y[train_idx].sum(0).topk(k).indices
    return float(y[test_idx][:, top].gt(0).any(1).float().mean())
