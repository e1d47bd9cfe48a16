"""How often are the 'negatives' of each triplet set held-out test positives?

Why: with half of every user's ML-100K interactions held out, the unobserved items nearest to
a user in the global space are often its test items. Eq. 5's hard-negative rule
(‖û−î⁺‖ > ‖û−î⁻‖) selects exactly those, so the local nets learn to push test positives away.
This script measures that on a finished run (its best.pt) without training anything.

    python scripts/gla_false_negatives.py runs/gl_attention-ml100k/<run>
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from recbench.data.graph import split_edges
from recbench.data.prepare import DataPaths
from recbench.eval.retrieval import ClusterIndex
from recbench.experiment import validate
from recbench.models.gl_attention import mine_local_triplets
from recbench.runner import build
from recbench.runs import data_dir, load_checkpoint, read_config
from recbench.seeding import numpy_rng


def main(run_dir: Path) -> None:
    cfg = validate(read_config(run_dir), str(run_dir / "config.yaml"))
    built = build(cfg, DataPaths(data_dir()), "cpu")  # RECBENCH_DATA or ./data, like the CLI
    trainer = built.trainer
    trainer.model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])  # weights only
    trainer.model.eval()
    mcfg = trainer.cfg
    g = trainer.ctx.data.g
    tu, ti, _ = split_edges(g, "test")
    test = set(zip(tu.tolist(), ti.tolist()))
    n_items = trainer.ctx.data.num_items

    def share(trip: np.ndarray) -> float:
        return float(np.mean([(int(u), int(n)) in test for u, _, n in trip])) if len(trip) else 0.0

    with torch.no_grad():
        uv, iv = (t.numpy() for t in trainer.model.nets[mcfg.cluster_space].tables())
    cent = trainer.model.centroids.numpy()
    assign = ClusterIndex.from_centroids(cent, iv).assignments()
    users, items = trainer.users.numpy(), trainer.items.numpy()
    rows = {}
    uniform = trainer.global_triplets().numpy()
    rows["T: uniform unobserved negatives (global triplets)"] = (share(uniform), len(uniform))
    for sets, label in [(("intra",), "T†: intra-cluster hard negatives (Eq. 5)"),
                        (("inter",), "T‡: inter-cluster negatives (Eq. 6)")]:
        trip = mine_local_triplets(uv, iv, cent, assign, users, items, trainer.seen,
                                   mcfg.mining_clusters, mcfg.mining_negatives,
                                   numpy_rng(0, "mining"), sets)
        rows[label] = (share(trip), len(trip))
    # the base rate inside the candidate clusters, for comparison
    d_uc = ((uv[:, None, :] - cent[None]) ** 2).sum(-1)
    near = np.argsort(d_uc, 1)[:, :mcfg.mining_clusters]
    seen = {(int(u), int(i)) for u, i in zip(users, items)}
    tot = hit = 0
    for u in range(len(uv)):
        pool = np.flatnonzero(np.isin(assign, near[u]))
        for i in pool:
            if (u, int(i)) in seen:
                continue
            tot += 1
            hit += (u, int(i)) in test
    rows["any unobserved item of the user's J nearest clusters"] = (hit / max(tot, 1), tot)
    rows["any unobserved item (catalogue)"] = (
        len(test) / (len(uv) * n_items - len(seen)), len(uv) * n_items - len(seen))
    print(f"run: {run_dir}  (M = {mcfg.num_clusters}, J = {mcfg.mining_clusters})\n")
    print("| negatives | share that are test positives | count |\n|---|---|---|")
    for label, (s, n) in rows.items():
        print(f"| {label} | {s:.3f} | {n:,} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
