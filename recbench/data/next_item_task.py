"""Next-item prediction samples (GConv-Transform spec §8, the task that replaced next-genre).

Built from the DGL container only. Each user's ratings are ordered by (timestamp, a seeded
random key): about half of consecutive ML-100K ratings share a timestamp, and an item-id
tie-break would hand first-order models a free signal (spec §8). One **sample** per
(user, position ``t >= min_history``): history = the items before ``t``, target = item ``t``.

Two protocols, one key (``split``):

- ``random``: the paper's seeded 9:1 split over samples, then 20 % of training for validation
  (72 / 18 / 10). A user's later history can sit in training while an earlier target is tested:
  that is the paper's protocol, reported as such.
- ``leave_last_out``: per user the last sample is test and the one before validation (the field's
  protocol; no later history reaches training).

What a model may learn from (its **visible** interactions): each user's first ``min_history``
items and the training targets. The item–item graph and the count-based floors are built from
those only, so no validation or test target leaks into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from recbench.config import NonNegInt, PosInt, Probability, Share, Strict
from recbench.data.graph import RATES
from recbench.errors import DatasetError
from recbench.seeding import numpy_rng

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
PAD = 0  # item ids are shifted by one in every sequence tensor; 0 pads


class NextItemConfig(Strict):
    """How sequences, samples, the split and the item graph are built."""

    min_history: PosInt = 5  # first predicted position t: at least this many items of history
    min_item_ratings: PosInt = 1  # drop items with fewer ratings (all splits), renumber the rest:
    # 5 = SASRec's ML-1M preprocessing (3,416 of 3,706 movies); 1 keeps every item
    max_len: PosInt = 30  # L: a sample's history is its last L items
    split: Literal["random", "leave_last_out"] = "random"
    test_ratio: Probability = 0.1  # random split: paper's 9:1
    valid_ratio: Share = 0.2  # random split: 20 % of training validates
    split_seed: NonNegInt | None = None  # None: the dataset's split_seed (meta.json), else 0
    valid_monitor: NonNegInt = 6000  # validation samples scored each epoch (a fixed seeded subset
    # of the validation split, whose samples are all kept out of training); 0: all of them
    num_sampled_negatives: NonNegInt = 100  # the sampled HR@10 (field's usual scale); 0: none
    loss: Literal["softmax", "bce_sampled"] = "softmax"  # softmax: cross-entropy over all items;
    # bce_sampled: SASRec's own, binary cross-entropy on the target and on one uniformly drawn
    # item the user never rated in training, per position (causal window models only)
    windows: Literal["every_target", "last_per_user"] = "every_target"  # an epoch of a causal
    # model: every training target once (overlapping windows), or SASRec's, one window per user
    # holding its last max_len training targets (earlier targets of a long history never train)
    graph_neighbours: NonNegInt = 20  # item–item cosine graph: top neighbours kept per item
    timing_batches: PosInt = 20  # inference timing: median over this many batches of 96
    timing_warmup: NonNegInt = 3


@dataclass
class Sequences:
    """Every user's time-ordered items (ids shifted by +1; 0 is padding) and the samples."""

    items: np.ndarray  # (E,) int64, concatenated user sequences, shifted ids
    starts: np.ndarray  # (U + 1,) offsets of each sequence in ``items``
    users: np.ndarray  # (U,) user ids of the sequences
    sample_seq: np.ndarray  # (S,) sequence index of each sample
    sample_pos: np.ndarray  # (S,) target position within its sequence
    split: np.ndarray  # (S,) int8 SPLIT_CODES
    num_items: int  # catalogue size (without the pad)
    min_history: int = 5  # positions before this are history only, never targets

    def index(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == SPLIT_CODES[split])

    @property
    def targets(self) -> np.ndarray:
        return self.items[self.starts[self.sample_seq] + self.sample_pos]

    def histories(self, idx: np.ndarray, max_len: int) -> np.ndarray:
        """(len(idx), max_len) left-padded last ``max_len`` items before each sample's target."""
        out = np.zeros((len(idx), max_len), dtype=np.int64)
        seq, pos = self.sample_seq[idx], self.sample_pos[idx]
        begin = self.starts[seq]
        for col in range(max_len):
            offset = pos - max_len + col  # position in the sequence
            ok = offset >= 0
            out[ok, col] = self.items[begin[ok] + offset[ok]]
        return out

    def prefix_mask_rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) pairs of every item rated before each sample's target (to mask)."""
        rows, cols = [], []
        for r, (s, p) in enumerate(zip(self.sample_seq[idx], self.sample_pos[idx], strict=True)):
            prefix = self.items[self.starts[s]:self.starts[s] + p]
            rows.append(np.full(len(prefix), r))
            cols.append(prefix)
        return (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                np.concatenate(cols) if cols else np.zeros(0, np.int64))

    def visible_pairs(self) -> np.ndarray:
        """(P, 2) consecutive (previous, next) visible items: the Markov floor's transitions.
        A pair counts when its ``next`` is visible (a first-history item or a training target)."""
        vis = self.visible_mask()
        prev, nxt = [], []
        for s in range(len(self.users)):
            a, b = self.starts[s], self.starts[s + 1]
            keep = np.flatnonzero(vis[a + 1:b]) + 1
            prev.append(self.items[a + keep - 1])
            nxt.append(self.items[a + keep])
        return np.stack([np.concatenate(prev), np.concatenate(nxt)], 1)

    def visible_mask(self) -> np.ndarray:
        """(E,) bool: the interaction is a first-history item or a training target."""
        vis = np.zeros(len(self.items), dtype=bool)
        lengths = np.diff(self.starts)
        first = np.repeat(self.starts[:-1], lengths) + 0
        pos = np.arange(len(self.items)) - first
        vis[pos < self.min_history] = True
        train = self.index("train")
        vis[self.starts[self.sample_seq[train]] + self.sample_pos[train]] = True
        return vis


def build_sequences(g, cfg: NextItemConfig, split_seed: int = 0) -> Sequences:
    """Order every user's rating edges, make the samples and split them."""
    u, i = (t.numpy() for t in g.edges(etype=RATES))
    ts = g.edges[RATES].data["timestamp"].numpy()
    tie = numpy_rng(split_seed, "next-item:tie-break").random(len(u))
    num_items = g.num_nodes("item")
    if cfg.min_item_ratings > 1:  # SASRec's item filter; the catalogue is what survives it
        keep = np.bincount(i, minlength=num_items)[i] >= cfg.min_item_ratings
        kept, i = np.unique(i[keep], return_inverse=True)
        u, ts, tie, num_items = u[keep], ts[keep], tie[keep], len(kept)
    order = np.lexsort((tie, ts, u))
    u, i = u[order], i[order] + 1
    bounds = np.flatnonzero(np.diff(u)) + 1
    starts = np.concatenate([[0], bounds, [len(u)]]).astype(np.int64)
    users = u[starts[:-1]] if len(u) else np.zeros(0, np.int64)
    lengths = np.diff(starts)
    per = np.clip(lengths - cfg.min_history, 0, None)
    if per.sum() == 0:
        raise DatasetError(f"no user has more than min_history={cfg.min_history} ratings; "
                           "lower model.next_item.min_history")
    sample_seq = np.repeat(np.arange(len(users)), per)
    sample_pos = np.concatenate([np.arange(cfg.min_history, n) for n in lengths if n > cfg.min_history])
    seqs = Sequences(i.astype(np.int64), starts, users, sample_seq, sample_pos,
                     np.zeros(len(sample_seq), np.int8), num_items, cfg.min_history)
    seqs.split = split_samples(seqs, cfg, split_seed)
    return seqs


def split_samples(seqs: Sequences, cfg: NextItemConfig, split_seed: int) -> np.ndarray:
    """Split codes per sample: seeded random 72/18/10, or per user last → test, next → valid."""
    n = len(seqs.sample_seq)
    codes = np.zeros(n, dtype=np.int8)
    if cfg.split == "random":
        perm = numpy_rng(split_seed, "next-item:split").permutation(n)
        n_test = int(round(cfg.test_ratio * n))
        n_valid = int(round(cfg.valid_ratio * (n - n_test)))
        codes[perm[:n_test]] = SPLIT_CODES["test"]
        codes[perm[n_test:n_test + n_valid]] = SPLIT_CODES["valid"]
        return codes
    last = np.flatnonzero(np.r_[np.diff(seqs.sample_seq) != 0, True])  # last sample of a user
    codes[last] = SPLIT_CODES["test"]
    before = last - 1
    ok = (before >= 0) & (seqs.sample_seq[np.clip(before, 0, None)] == seqs.sample_seq[last])
    codes[before[ok]] = SPLIT_CODES["valid"]
    return codes


def item_cosine_graph(seqs: Sequences, neighbours: int) -> torch.Tensor:
    """(I + 1, I + 1) item–item cosine similarity over visible interactions, each row keeping
    its top ``neighbours`` (then symmetrised); row/column 0 is the pad. Dense: ML-1M's 3,706
    items take 55 MB; a catalogue far larger would need a sparse lookup."""
    n = seqs.num_items + 1
    vis = seqs.visible_mask()
    users = np.repeat(np.arange(len(seqs.users)), np.diff(seqs.starts))[vis]
    items = seqs.items[vis]
    x = torch.zeros(len(seqs.users), n)
    x[torch.as_tensor(users), torch.as_tensor(items)] = 1.0
    norm = x.sum(0).clamp_min(1).sqrt()
    sim = (x.T @ x) / norm[:, None] / norm[None, :]
    sim.fill_diagonal_(0.0)
    sim[0], sim[:, 0] = 0.0, 0.0
    k = min(neighbours, n - 1)
    keep = torch.zeros_like(sim, dtype=torch.bool)
    keep.scatter_(1, sim.topk(k, dim=1).indices, True)
    keep &= sim > 0
    keep |= keep.clone().T
    return torch.where(keep, sim, torch.zeros(()))


def visible_popularity(seqs: Sequences) -> torch.Tensor:
    """(I + 1,) number of visible interactions per item (0: pad)."""
    items = seqs.items[seqs.visible_mask()]
    return torch.bincount(torch.as_tensor(items), minlength=seqs.num_items + 1).float()


def sampled_negatives(seqs: Sequences, idx: np.ndarray, count: int, seed: int) -> np.ndarray:
    """(len(idx), count) items the sample's user never rated, drawn uniformly (seeded, fixed per
    sample so every model is scored on the same candidates)."""
    rng = numpy_rng(seed, "next-item:negatives")
    out = np.zeros((len(idx), count), dtype=np.int64)
    rated = [set(seqs.items[seqs.starts[s]:seqs.starts[s + 1]].tolist())
             for s in range(len(seqs.users))]
    for r, s in enumerate(seqs.sample_seq[idx]):
        pool = rated[s]
        if seqs.num_items - len(pool) < count:
            raise DatasetError(f"user {seqs.users[s]} rated all but {seqs.num_items - len(pool)} "
                               f"items: fewer than num_sampled_negatives={count}")
        got: list[int] = []
        while len(got) < count:
            cand = rng.integers(1, seqs.num_items + 1, size=2 * count)
            got.extend(c for c in cand.tolist() if c not in pool and c not in got)
        out[r] = got[:count]
    return out


@dataclass
class Windows:
    """Training windows for causal sequence models: each window is ``L`` left-padded inputs and,
    per output position, the target it predicts (0 where no training loss applies)."""

    inputs: torch.Tensor  # (W, L)
    targets: torch.Tensor  # (W, L)
    owner: torch.Tensor  # (W,) the sequence (user) each window comes from


def training_windows(seqs: Sequences, max_len: int, last_per_user: bool = False) -> Windows:
    """Cover every training target exactly once with the most history a window allows.

    Window ends ``e`` step back from each sequence's last position by ``h = L // 2``; target
    ``t`` belongs to the window with the smallest ``e >= t``, so it sees at least ``L - h``
    items of history inside the window (all of them near the start of a sequence). Training on
    all positions of a window at once (causal masking) costs about what one sample costs.

    ``last_per_user``: SASRec's epoch instead: one window per user ending at its last training
    target, holding the last ``L`` of them (its input is the ``L`` items before each)."""
    h = max(max_len // 2, 1)
    train = seqs.index("train")
    seq, pos = seqs.sample_seq[train], seqs.sample_pos[train]
    if last_per_user:
        last_train = np.full(len(seqs.users), -1, dtype=np.int64)
        np.maximum.at(last_train, seq, pos)
        end = last_train[seq]
        keep = pos > end - max_len
        seq, pos, end = seq[keep], pos[keep], end[keep]
    else:
        last = np.diff(seqs.starts)[seq] - 1
        end = last - ((last - pos) // h) * h
    key = np.unique(np.stack([seq, end], 1), axis=0)
    lookup = {(int(s), int(e)): w for w, (s, e) in enumerate(key)}
    inputs = np.zeros((len(key), max_len), dtype=np.int64)
    targets = np.zeros((len(key), max_len), dtype=np.int64)
    for w, (s, e) in enumerate(key):
        begin = seqs.starts[s]
        lo = max(0, e - max_len)
        chunk = seqs.items[begin + lo:begin + e]
        inputs[w, max_len - len(chunk):] = chunk
    for s, p, e in zip(seq, pos, end, strict=True):
        w = lookup[(int(s), int(e))]
        targets[w, p - e + max_len - 1] = seqs.items[seqs.starts[s] + p]
    return Windows(torch.as_tensor(inputs), torch.as_tensor(targets),
                   torch.as_tensor(key[:, 0].astype(np.int64)))


class UnratedSampler:
    """Draws, per training position, one item its user never rated in training, uniformly
    (SASRec's negative: the reference draws outside the user's training items, so validation
    and test items may be drawn, as there). Membership is a sorted array of ``user·(I+1)+item``
    keys (searchsorted), not a dense users × items table, so it scales with the interactions."""

    def __init__(self, seqs: Sequences):
        vis = seqs.visible_mask()
        owner = np.repeat(np.arange(len(seqs.users)), np.diff(seqs.starts))[vis]
        self.width = seqs.num_items + 1
        keys = np.unique(owner * self.width + seqs.items[vis])
        per_user = np.bincount(keys // self.width, minlength=len(seqs.users))
        if len(per_user) and per_user.max() >= seqs.num_items:
            user = seqs.users[int(per_user.argmax())]
            raise DatasetError(f"user {user} rated every item in training: no negative to draw "
                               "for next_item.loss bce_sampled")
        self.keys = torch.as_tensor(keys)
        self.num_items = seqs.num_items

    def rated(self, owner: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        key = owner * self.width + items
        at = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)
        return self.keys[at] == key

    def draw(self, owner: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """(P,) items, one per entry of ``owner`` (sequence indices), from ``gen``: rejected
        draws are redrawn until none is left (every user has an unrated item: checked above)."""
        out = torch.randint(1, self.num_items + 1, owner.shape, generator=gen)
        bad = self.rated(owner, out)
        while bool(bad.any()):
            idx = bad.nonzero().squeeze(1)
            out[idx] = torch.randint(1, self.num_items + 1, idx.shape, generator=gen)
            bad[idx] = self.rated(owner[idx], out[idx])
        return out
