"""Retrieval speed of the GLA cluster index vs exhaustive scoring (writes results/bench/gla.*).

Two catalogues: Yelp Pittsburgh (the real user/item counts, M = 10, K = 2, AD over the four
spaces, d = 64) and a synthetic catalogue of 1,000,000 items (clustered Gaussian vectors,
M = 1,000 clusters, K = 10, attention over R = 2 spaces of d = 32, to stay within memory on a
shared machine). Speed does not depend on what the weights learned, so the networks are at
their seeded initialisation; a trained run's tables give the same timings. Per user: the
index searches the K nearest centroids, gathers their inverted lists and re-ranks the
candidates with the attention scorer; exhaustive scoring re-ranks every item (batched matmuls,
no gathering). Reported: mean latency per user (batch of one user, one thread), candidate
fraction, and recall of the index's top-N against exhaustive top-N (how much the pruning loses).

Run: ``python -m bench.bench_gla [--quick]`` (quick: 100k synthetic items).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from recbench.eval.retrieval import ClusterIndex
from recbench.models.gl_attention import AttentionNet, RepresentationNet, Scorer

TOP_N = 15


def _tables(num_users: int, num_items: int, spaces: int, dim: int, seed: int):
    torch.manual_seed(seed)
    nets = [RepresentationNet(num_users, num_items, dim, [dim, dim], dim) for _ in range(spaces)]
    with torch.no_grad():
        tabs = [n.tables() for n in nets]
    return torch.stack([t[0] for t in tabs], 1), torch.stack([t[1] for t in tabs], 1)


def _synthetic(num_users: int, num_items: int, spaces: int, dim: int, seed: int):
    """Clustered unit vectors (1,000 Gaussian blobs) per space; users drawn near random items."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(1000, dim, generator=g), dim=-1)
    which = torch.randint(1000, (num_items,), generator=g)
    gi = torch.empty(num_items, spaces, dim)
    for r in range(spaces):
        noise = 0.3 * torch.randn(num_items, dim, generator=g)
        gi[:, r] = torch.nn.functional.normalize(centers[which] + noise, dim=-1)
    pick = torch.randint(num_items, (num_users,), generator=g)
    gu = torch.nn.functional.normalize(gi[pick] + 0.2 * torch.randn(num_users, spaces, dim,
                                                                      generator=g), dim=-1)
    return gu, gi


def bench(name: str, gu: torch.Tensor, gi: torch.Tensor, clusters: int, k: int,
          num_queries: int, seed: int, max_points: int | None = None) -> dict:
    torch.manual_seed(seed)
    att = AttentionNet(gu.shape[1], gu.shape[2], depth=3)
    scorer = Scorer.from_tables(gu, gi, att, distance=True)
    t0 = time.perf_counter()
    index = ClusterIndex.train(gi[:, 0].numpy(), clusters, seed, niter=10, max_points=max_points)
    build_s = time.perf_counter() - t0
    users = torch.randperm(len(gu), generator=torch.Generator().manual_seed(seed))[:num_queries]
    uv = gu[:, 0].numpy()
    lat_index, lat_exh, fractions, overlap = [], [], [], []
    for u in users.tolist():
        q = torch.tensor([u])
        t0 = time.perf_counter()
        cands = index.candidates(index.nearest_clusters(uv[[u]], k))
        s = scorer(q, cands)
        top_idx = cands.gather(1, s.topk(min(TOP_N, s.shape[1]), dim=1).indices)
        lat_index.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        top_exh = scorer.all_items(q).topk(TOP_N, dim=1).indices
        lat_exh.append(time.perf_counter() - t0)
        fractions.append(cands.shape[1] / len(gi))
        overlap.append(len(set(top_idx[0].tolist()) & set(top_exh[0].tolist())) / TOP_N)
    sizes = np.array([len(x) for x in index.lists])
    return {
        "catalogue": name, "users": len(gu), "items": len(gi), "spaces": gu.shape[1],
        "dim": gu.shape[2], "clusters_M": clusters, "candidate_clusters_K": k,
        "queries": num_queries, "index_build_s": build_s,
        "latency_index_ms": 1000 * float(np.mean(lat_index)),
        "latency_exhaustive_ms": 1000 * float(np.mean(lat_exh)),
        "speedup": float(np.mean(lat_exh) / np.mean(lat_index)),
        "candidate_fraction": float(np.mean(fractions)), "k_over_m": k / clusters,
        "cluster_size_min_max": [int(sizes.min()), int(sizes.max())],
        "top_n_overlap_with_exhaustive": float(np.mean(overlap)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="results/bench")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    gu, gi = _tables(5616, 6443, 4, 64, seed=0)  # Yelp Pittsburgh's counts (spec §2)
    rows.append(bench("yelp-pittsburgh (5,616 x 6,443)", gu, gi, 10, 2, 200, 0))
    n = 100_000 if args.quick else 1_000_000
    gu, gi = _synthetic(2000, n, 2, 32, seed=0)
    rows.append(bench(f"synthetic ({n:,} items)", gu, gi, 1000, 10, 50, 0, max_points=100_000))
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "threads": 1,
            "load_average_1m_at_end": os.getloadavg()[0], "torch": torch.__version__,
            "note": "shared 2-core machine, other jobs running; latencies are upper bounds"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gla.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["# GLA retrieval: cluster index (faiss IVF) vs exhaustive attention scoring", "",
             f"Top-{TOP_N}, one user per query, 1 thread; load average at end "
             f"{meta['load_average_1m_at_end']:.1f} on {meta['cpus']} CPUs (shared machine).", "",
             "| catalogue | M | K | candidate fraction | K/M | index ms/user | exhaustive ms/user "
             "| speed-up | top-N overlap |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['catalogue']} | {r['clusters_M']} | {r['candidate_clusters_K']} | "
                     f"{r['candidate_fraction']:.4f} | {r['k_over_m']:.4f} | "
                     f"{r['latency_index_ms']:.2f} | {r['latency_exhaustive_ms']:.2f} | "
                     f"{r['speedup']:.1f}x | {r['top_n_overlap_with_exhaustive']:.2f} |")
    (out / "gla.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
