"""Coarse-to-fine retrieval: a cluster index over item vectors and its top-N evaluator.

The index is faiss IVF (``IndexIVFFlat``): k-means centroids in a coarse quantizer plus one
inverted list of item ids per cluster (GLA paper, Algorithm 1). A user's K nearest centroids
pick the candidate items; a model re-ranks them. :func:`retrieval_ranking` scores a split with
the authors' evaluation semantics (spec §5): training items leave the pool, test and unseen items
stay; precision divides by N even when the pool is smaller; HR is ≥ 1 hit; ARHR sums the
reciprocal ranks of the hits; users whose pool is empty count as zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from recbench.data.graph import Dataset
from recbench.eval.metrics import ranking_metrics
from recbench.eval.ranking import _gather_rows, _to_csr, _user_items, masked_splits
from recbench.eval.result import EvalResult

CandidateFn = Callable[[torch.Tensor], torch.Tensor]  # users (B,) -> items (B, P), -1 = padding
PairScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B,), (B, P) -> (B, P)


class ClusterIndex:
    """faiss IVF over item vectors: centroids (M, d) and the inverted list of each cluster.

    ``lists[c]`` holds the item ids of cluster c. Built either by k-means (:meth:`train`), from
    given centroids (items go to their nearest centroid), or from given lists (no centroids:
    :meth:`nearest_clusters` is then unavailable and the caller supplies cluster rankings).
    """

    def __init__(self, lists: list[np.ndarray], num_items: int, index=None):
        self.lists = [np.asarray(ids, dtype=np.int64) for ids in lists]
        self.num_items = num_items
        self.index = index  # faiss.IndexIVFFlat, or None when built from lists
        self._lens = np.array([len(ids) for ids in self.lists], dtype=np.int64)

    @property
    def num_clusters(self) -> int:
        return len(self.lists)

    @classmethod
    def from_centroids(cls, centroids: np.ndarray, item_vecs: np.ndarray) -> ClusterIndex:
        import faiss

        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        item_vecs = np.ascontiguousarray(item_vecs, dtype=np.float32)
        m, d = centroids.shape
        quantizer = faiss.IndexFlatL2(d)
        quantizer.add(centroids)
        index = faiss.IndexIVFFlat(quantizer, d, m, faiss.METRIC_L2)
        index.is_trained = True
        index.add(item_vecs)
        inv = index.invlists
        lists = [faiss.rev_swig_ptr(inv.get_ids(c), inv.list_size(c)).copy()
                 if inv.list_size(c) else np.zeros(0, dtype=np.int64) for c in range(m)]
        out = cls(lists, len(item_vecs), index)
        out._quantizer = quantizer  # the IVF index does not own its quantizer: keep it alive
        return out

    @classmethod
    def train(cls, item_vecs: np.ndarray, num_clusters: int, seed: int, niter: int = 25,
              max_points: int | None = None) -> ClusterIndex:
        """k-means (faiss, seeded) on ``item_vecs`` (I, d), then the IVF index on its centroids.

        ``max_points`` caps the k-means training sample (faiss subsamples, seeded) for large
        catalogues; every item is still indexed.
        """
        cent = kmeans(item_vecs, num_clusters, seed, niter, max_points)
        return cls.from_centroids(cent, item_vecs)

    def nearest_clusters(self, queries: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` clusters whose centroids are nearest (L2) to each query: (B, k)."""
        if self.index is None:
            raise ValueError("this index was built from lists: it has no centroids to search")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        _, ids = self.index.quantizer.search(q, min(k, self.num_clusters))
        return ids.astype(np.int64)

    def assignments(self) -> np.ndarray:
        """Cluster id of every item (I,)."""
        out = np.full(self.num_items, -1, dtype=np.int64)
        for c, ids in enumerate(self.lists):
            out[ids] = c
        return out

    def candidates(self, cluster_ids: np.ndarray) -> torch.Tensor:
        """Union of the inverted lists of each row's clusters, padded with -1: (B, P)."""
        cluster_ids = np.asarray(cluster_ids, dtype=np.int64)
        sizes = self._lens[cluster_ids].sum(1)
        out = np.full((len(cluster_ids), int(sizes.max(initial=0))), -1, dtype=np.int64)
        for row, clusters in enumerate(cluster_ids):
            pool = np.concatenate([self.lists[c] for c in clusters]) if len(clusters) else []
            out[row, :len(pool)] = pool
        return torch.from_numpy(out)


def kmeans(vecs: np.ndarray, num_clusters: int, seed: int, niter: int = 25,
           max_points: int | None = None) -> np.ndarray:
    """faiss k-means centroids (M, d), seeded; all vectors train it unless ``max_points``."""
    import faiss

    x = np.ascontiguousarray(vecs, dtype=np.float32)
    per_centroid = -(-(max_points or len(x)) // num_clusters)  # ceil: all points by default
    km = faiss.Kmeans(x.shape[1], num_clusters, niter=niter, seed=int(seed) % (2**31),
                      max_points_per_centroid=max(per_centroid, 1), verbose=False)
    km.train(x)
    return km.centroids.copy()


def retrieval_ranking(pair_score_fn: PairScoreFn, candidate_fn: CandidateFn | None,
                      data: Dataset, split: str, ks: list[int],
                      batch_size: int = 256, *, metrics: Sequence[str] = ()) -> EvalResult:
    """Top-max(ks) among each user's candidates; ``candidate_fn=None`` scores every item.
    ``metrics`` selects among the registry's top-N metrics (empty: all).

    Users with ≥ 1 item in ``split`` are evaluated. Items of the masked splits (training, and
    validation when testing) are removed from the pool; an empty pool gives zeros. Besides the
    ranking metrics, ``pool_size`` (candidates left after masking) and ``candidate_fraction``
    (pool / num_items) are reported per user.
    """
    g = data.g
    seen_ptr, seen_items = _to_csr(*_user_items(g, masked_splits(split)), data.num_users)
    rel_ptr, rel_items = _to_csr(*_user_items(g, [split]), data.num_users)
    num_rel = rel_ptr[1:] - rel_ptr[:-1]
    users = torch.nonzero(num_rel > 0, as_tuple=True)[0]
    return rank_candidates(pair_score_fn, candidate_fn, users, (seen_ptr, seen_items),
                           (rel_ptr, rel_items), data.num_items, ks, batch_size,
                           metrics=metrics)


def rank_candidates(pair_score_fn: PairScoreFn, candidate_fn: CandidateFn | None,
                    users: torch.Tensor, seen: tuple[torch.Tensor, torch.Tensor],
                    relevant: tuple[torch.Tensor, torch.Tensor], num_items: int, ks: list[int],
                    batch_size: int = 256, *, metrics: Sequence[str] = ()) -> EvalResult:
    """The evaluator's core on CSR ``(indptr, items)`` arrays of masked and relevant items."""
    top_n = max(ks)
    num_rel = relevant[0][1:] - relevant[0][:-1]
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        if candidate_fn is None:
            cands = torch.arange(num_items).expand(len(batch), -1)
        else:
            cands = candidate_fn(batch)
        valid = cands >= 0
        safe = cands.clamp(min=0)
        valid &= ~_member(batch, safe, *seen, num_items)
        with torch.no_grad():
            scores = pair_score_fn(batch, safe).float().cpu()
        scores = scores.masked_fill(~valid, -torch.inf)
        width = min(top_n, scores.shape[1])
        top_s, top_pos = scores.topk(width, dim=1)
        top = safe.gather(1, top_pos)
        hits = _member(batch, top, *relevant, num_items) & torch.isfinite(top_s)
        if width < top_n:  # fewer candidates than N: precision still divides by N
            hits = torch.cat([hits, torch.zeros(len(batch), top_n - width, dtype=torch.bool)], 1)
        for name, vec in ranking_metrics(hits, num_rel[batch], ks, metrics).items():
            parts.setdefault(name, []).append(vec)
        pool = valid.sum(1).float()
        parts.setdefault("pool_size", []).append(pool)
        parts.setdefault("candidate_fraction", []).append(pool / num_items)
    per_user = {name: torch.cat(v).numpy() for name, v in parts.items()}
    per_user["user"] = users.numpy()
    return EvalResult({k: float(np.mean(v)) for k, v in per_user.items() if k != "user"}, per_user)


def _member(batch: torch.Tensor, items: torch.Tensor, indptr: torch.Tensor,
            flat: torch.Tensor, num_items: int) -> torch.Tensor:
    """Whether ``items[b, j]`` is among user ``batch[b]``'s CSR items: (B, P) bool."""
    rows, cols = _gather_rows(indptr, flat, batch)
    keys = torch.sort(rows * num_items + cols).values
    q = torch.arange(len(batch))[:, None] * num_items + items
    if len(keys) == 0:
        return torch.zeros_like(items, dtype=torch.bool)
    pos = torch.searchsorted(keys, q.reshape(-1)).clamp(max=len(keys) - 1).view_as(q)
    return keys[pos] == q
