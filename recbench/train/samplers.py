"""Negative samplers. Each takes an explicit ``torch.Generator``; none touches global RNG."""

from __future__ import annotations

import torch


class SeenIndex:
    """Observed (user, item) pairs, for membership tests while sampling negatives.

    A dense bitmap of the user x item matrix when it is small (ML-100K: 1.6 M bits as bytes,
    one gather per test), else the sorted ``user * num_items + item`` keys and a binary search.
    Both answer the same, so the negatives drawn do not depend on which one a dataset gets;
    the bitmap makes the test ~10x cheaper, and it was a third of a BPR-MF step.
    """

    DENSE_LIMIT = 64_000_000  # cells: a 64 MB byte map at most

    def __init__(self, users: torch.Tensor, items: torch.Tensor, num_items: int):
        self.num_items = num_items
        self.keys = torch.sort(users.long() * num_items + items.long()).values
        num_users = int(users.max()) + 1 if len(users) else 0
        self.dense: torch.Tensor | None = None
        if num_users * num_items <= self.DENSE_LIMIT:
            self.dense = torch.zeros(num_users * num_items + 1, dtype=torch.bool)
            self.dense[self.keys] = True

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        q = users.long() * self.num_items + items.long()
        if self.dense is not None:
            return self.dense[q.clamp(max=len(self.dense) - 1)]
        pos = torch.searchsorted(self.keys, q).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == q


class UserUniformPairs:
    """Positive pairs drawn as the official NGCF and LightGCN code draws them: a user uniformly
    at random among those with a training pair, then one of that user's pairs uniformly
    (LightGCN-PyTorch's ``UniformSample_original``). Why: iterating the training pairs weighs a
    user by its number of pairs, while Recall@20 averages over users; this sampler weighs each
    user equally (``train.pair_sampling: users``)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor):
        order = torch.argsort(users, stable=True)
        self.items = items.index_select(0, order)
        counts = torch.bincount(users)
        self.active = torch.nonzero(counts).flatten()  # users with a training pair
        self.count = counts.index_select(0, self.active)
        self.start = (torch.cumsum(counts, 0) - counts).index_select(0, self.active)

    def draw(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` (user, positive item) pairs, with replacement, from ``gen``."""
        which = torch.randint(len(self.active), (n,), generator=gen)
        count = self.count.index_select(0, which)
        offset = (torch.rand(n, generator=gen, dtype=torch.float64) * count).long()
        offset = torch.minimum(offset, count - 1)  # a draw that rounds up to the count
        return (self.active.index_select(0, which),
                self.items.index_select(0, self.start.index_select(0, which) + offset))


def uniform_negatives(users: torch.Tensor, seen: SeenIndex, gen: torch.Generator,
                      num: int = 1, max_rounds: int = 20) -> torch.Tensor:
    """Items drawn uniformly among those each user has not interacted with: (B,) or (B, num)."""
    shape = (len(users), num)
    neg = torch.randint(seen.num_items, shape, generator=gen)
    flat, owner = neg.view(-1), users.repeat_interleave(num)
    # only the draws that hit a seen item are tested again (a few % of the batch after the
    # first round): the same draws, in the same order, as re-testing the whole batch, since a
    # draw that passed keeps its item (a third of a BPR-MF step went to re-testing them)
    todo = torch.arange(len(flat))
    for _ in range(max_rounds):
        todo = todo[seen.contains(owner.index_select(0, todo), flat.index_select(0, todo))]
        if len(todo) == 0:
            break
        flat[todo] = torch.randint(seen.num_items, (len(todo),), generator=gen)
    return neg[:, 0] if num == 1 else neg


def popularity_negatives(users: torch.Tensor, seen: SeenIndex, popularity: torch.Tensor,
                         gen: torch.Generator, num: int = 1, power: float = 1.0,
                         max_rounds: int = 20) -> torch.Tensor:
    """Items drawn ∝ popularity^power among those the user has not interacted with."""
    probs = popularity.float().clamp(min=1e-6).pow(power)
    shape = (len(users), num)
    u = users[:, None].expand(shape)
    neg = torch.multinomial(probs, len(users) * num, replacement=True, generator=gen).view(shape)
    for _ in range(max_rounds):
        bad = seen.contains(u, neg)
        if not bad.any():
            break
        neg[bad] = torch.multinomial(probs, int(bad.sum()), replacement=True, generator=gen)
    return neg[:, 0] if num == 1 else neg


def hard_negatives(users: torch.Tensor, seen: SeenIndex, score_pairs, gen: torch.Generator,
                   pool: int = 16, num: int = 1) -> torch.Tensor:
    """The highest-scoring non-interacted items among ``pool`` uniform candidates per user.

    ``score_pairs(users (B,), items (B, pool)) -> (B, pool)`` is evaluated without gradients.
    """
    cands = uniform_negatives(users, seen, gen, num=pool)
    with torch.no_grad():
        scores = score_pairs(users, cands)
    top = scores.topk(num, dim=1).indices
    picked = cands.gather(1, top)
    return picked[:, 0] if num == 1 else picked


class NeighborBlocks:
    """DGL neighbour sampling (``dgl.dataloading.NeighborSampler``) for pairwise mini-batches.

    ``sample(seeds)`` returns ``(input_nodes, blocks)`` whose last block's destination nodes are
    ``seeds`` in order. Each block's edge weight ``w`` is the parent's times
    ``deg_full(dst) / deg_sampled(dst)``, so a sum over a sampled neighbourhood estimates the
    full-graph sum without bias (fanout -1 keeps every neighbour and the exact weights).
    """

    def __init__(self, g, fanouts: list[int]):
        from dgl.dataloading import NeighborSampler

        self.g = g
        self.sampler = NeighborSampler(fanouts)
        deg = g.in_degrees().float()
        # sampling without replacement keeps min(deg, fanout) in-edges of every node
        self.ratios = [deg / deg.clamp(max=f).clamp(min=1) if f > 0 else None for f in fanouts]

    def sample(self, seeds: torch.Tensor):
        import dgl

        input_nodes, _, blocks = self.sampler.sample(self.g, seeds.to(self.g.device))
        for block, ratio in zip(blocks, self.ratios, strict=True):
            if ratio is None:
                continue
            ratio = ratio[block.dstdata[dgl.NID]]
            block.edata["w"] = block.edata["w"] * ratio[block.edges()[1]]
            if "nd" in block.dstdata:
                block.dstdata["nd"] = block.dstdata["nd"] * ratio
        return input_nodes, blocks


class ClusterBatches:
    """Cluster-GCN (``dgl.dataloading.ClusterGCNSampler``): METIS parts, a few merged per step.

    Each step's subgraph re-normalises its interaction edges on its own degrees (the paper's
    per-cluster normalised adjacency); social edges keep the parent's weights.
    """

    def __init__(self, g, num_parts: int, parts_per_batch: int, cache_dir: str):
        from dgl.dataloading import ClusterGCNSampler

        self.g = g
        self.num_parts, self.per_batch = num_parts, parts_per_batch
        self.sampler = ClusterGCNSampler(g, num_parts, cache_path=f"{cache_dir}/cluster_gcn.pkl")

    def epoch(self, gen: torch.Generator) -> list[torch.Tensor]:
        return list(torch.randperm(self.num_parts, generator=gen).split(self.per_batch))

    def subgraph(self, parts: torch.Tensor):
        sg = self.sampler.sample(self.g, parts)
        src, dst = sg.edges()
        inter = sg.edata["kind"] == 0
        w = sg.edata["w"].clone()
        deg = torch.bincount(dst[inter], minlength=sg.num_nodes()).float().clamp(min=1)
        w[inter] = deg[src[inter]].rsqrt() * deg[dst[inter]].rsqrt()
        sg.edata["w"] = w
        if "ns" in sg.ndata:
            sg.ndata["ns"], sg.ndata["nd"] = deg.rsqrt(), deg.rsqrt()
        return sg


def negatives_among(users: torch.Tensor, candidates: torch.Tensor, seen: SeenIndex,
                    gen: torch.Generator, num: int = 1, max_rounds: int = 20) -> torch.Tensor:
    """Positions into ``candidates`` (global item ids) of uniform non-interacted items."""
    shape = (len(users), num)
    u = users[:, None].expand(shape)
    pos = torch.randint(len(candidates), shape, generator=gen)
    for _ in range(max_rounds):
        bad = seen.contains(u, candidates[pos])
        if not bad.any():
            break
        pos[bad] = torch.randint(len(candidates), (int(bad.sum()),), generator=gen)
    return pos[:, 0] if num == 1 else pos
