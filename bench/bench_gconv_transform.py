"""GConv-Transform family: parameters, inference and training-step time per batch of 96.

Every Table 1 model and every N of Table 3 (2 … 22) on the same random (96, 18, 6) batch and the
same 18-node genre graph (ML-100K's when it is preprocessed, else a complete graph: the cost
hardly depends on it). Also records peak memory after a training step, the check that N = 22
trains within memory. Writes results/bench/gconv_transform.{json,md}.

    python bench/bench_gconv_transform.py [--threads 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from recbench.data import genre_task as gt
from recbench.models import baselines as bl
from recbench.models import gconv_transform as gm
from recbench.train.classification import soft_cross_entropy

C, F, B = 18, 6, 96


def genre_counts() -> np.ndarray:
    import os

    from recbench.config import DatasetConfig
    from recbench.data.prepare import DataPaths, load

    try:
        ds = load(DatasetConfig(name="ml-100k"), DataPaths(Path(os.environ.get("RECBENCH_DATA",
                                                                             "data"))))
        return gt.cooccurrence(gt.item_genres(ds.g))
    except Exception:  # noqa: BLE001 - no data: a complete graph costs the same
        return np.ones((C, C)) - np.eye(C)


def gconv(counts: np.ndarray, **kw) -> torch.nn.Module:
    g = gt.genre_dgl_graph(counts)
    adj = torch.as_tensor(gt.normalized_adjacency(counts))
    return gm.GConvTransform(g, adj, gt.lambda_max(g), F, **kw)


def models(counts: np.ndarray) -> dict[str, torch.nn.Module]:
    out = {}
    for kind in ("svm", "dnn", "cnn", "densenet", "densecnn"):
        out[kind] = bl.build_baseline(bl.GConvBaselineConfig(name="gconv_baseline", kind=kind), C, F)
    out["graph (N=2)"] = gconv(counts, num_blocks=2, attention=False)
    out["attention (N=2)"] = gconv(counts, num_blocks=2, graph=False, chebyshev=False)
    for n in (2, 4, 8, 12, 16, 22):
        out[f"gconv-transform N={n}"] = gconv(counts, num_blocks=n)
    return out


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(model: torch.nn.Module, repeats: int) -> dict:
    x = torch.randn(B, C, F, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(B, C)
    y[torch.arange(B), torch.arange(B) % C] = 1
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        opt.zero_grad()
        soft_cross_entropy(model(x), y).backward()
        opt.step()

    model.train()
    train_ms = median_ms(step, max(repeats // 4, 3))
    model.eval()
    with torch.no_grad():
        infer_ms = median_ms(lambda: model(x), repeats)
    return {"params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "infer_ms_per_96": infer_ms, "train_step_ms_per_96": train_ms,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default="results/bench")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else []
    rows = {name: measure(m, args.repeats) for name, m in models(genre_counts()).items()}
    meta = {"threads": args.threads, "repeats": args.repeats, "batch": B, "loadavg_start": load,
            "machine": platform.machine(), "cpus": __import__("os").cpu_count(),
            "torch": torch.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gconv_transform.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["# GConv-Transform family: cost per batch of 96 (CPU)", "",
             f"{args.threads} torch thread(s), median of {args.repeats} forward passes after "
             f"3 warm-up passes; load average at start {' '.join(load)} on {meta['cpus']} cores "
             "(shared machine: compare rows of this table only). Peak RSS is the process's "
             "running maximum after each model's training steps.", "",
             "| model | params (M) | inference ms / 96 | train step ms / 96 | peak RSS (MB) |",
             "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['params_m']:.4f} | {v['infer_ms_per_96']:.2f} | "
              f"{v['train_step_ms_per_96']:.1f} | {v['peak_rss_mb']:.0f} |" for k, v in rows.items()]
    (out / "gconv_transform.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
