"""Benchmark: one full GLocal-K run on ML-100K u1 with the paper's schedule (30 pre-training +
60 fine-tuning L-BFGS-B epochs of at most 5 iterations), through the ordinary training loop.

Reports wall seconds, function evaluations, the share of the matmul floor reached (dense
FLOPs the official formulation needs per evaluation at a reference GFLOP/s; above 1 means the
exact sparse products beat the dense floor), peak memory, parameter count and the test RMSE.
Writes results/bench/glocal_k.json and .md. Usage: python -m bench.bench_glocal_k [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from bench.common import ROOT

REFERENCE_GFLOPS = 120.0  # float32 matmul on this 2-core machine (issue 4)


def dense_flops(num_items: int, num_users: int, hidden: int) -> tuple[float, float]:
    """FLOPs per function evaluation of the dense formulation (pre-training, fine-tuning).

    Pre-training: forward 2nh + h² MACs per item, backward 3nh + 2h² (three weight gradients,
    input gradients of layers 2-3). Fine-tuning adds the AE on R̂, whose input gradient is needed
    for the global kernel: 6nh + 3h² more.
    """
    n, h = num_users, hidden
    pre = 5 * n * h + 3 * h * h
    fine = pre + 6 * n * h + 3 * h * h
    return 2.0 * num_items * pre, 2.0 * num_items * fine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args()
    import torch

    from recbench import process
    from recbench.data.datasets import get_dataset
    from recbench.data.fetch import fetch, is_fetched
    from recbench.data.prepare import DataPaths
    from recbench.experiment import load_experiment
    from recbench.runner import train_run
    from recbench.runs import data_dir

    torch.set_num_threads(args.threads)
    paths = DataPaths(data_dir())
    if not is_fetched(get_dataset("ml-100k"), paths.raw):
        mirror = os.environ.get("RECBENCH_MIRROR")
        fetch(get_dataset("ml-100k"), paths.raw, Path(mirror) if mirror else None)
    cfg = load_experiment(ROOT / "experiments" / "glocal_k.yaml").model_copy(update={"seed": 0})
    load_before = os.getloadavg()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = train_run(cfg, paths, Path(tmp), threads=process.start(cfg, paths).threads)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        metrics = json.loads((run / "metrics.json").read_text())
        hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    pre_epochs = cfg.model.pretrain_epochs
    nfev_pre = sum(r["nfev"] for r in hist[:pre_epochs])
    nfev_fine = sum(r["nfev"] for r in hist[pre_epochs:])
    f_pre, f_fine = dense_flops(1682, 943, cfg.model.hidden_dims[0])
    floor_s = (nfev_pre * f_pre + nfev_fine * f_fine) / (REFERENCE_GFLOPS * 1e9)
    train_s = metrics["train_seconds"]
    out = {
        "what": "GLocal-K ML-100K u1, 30 pre + 60 fine L-BFGS-B epochs (maxiter 5), seed 0",
        "threads": args.threads, "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(), "wall_seconds": wall, "process_cpu_seconds": cpu,
        "train_seconds": train_s,
        "function_evaluations": nfev_pre + nfev_fine, "nfev_pretrain": nfev_pre,
        "nfev_finetune": nfev_fine, "dense_gflop_per_eval": [f_pre / 1e9, f_fine / 1e9],
        "floor_seconds_at_ref": floor_s, "reference_gflops": REFERENCE_GFLOPS,
        "floor_fraction": floor_s / train_s, "peak_rss_mb": resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024, "num_params": metrics["num_params"],
        "test_rmse": metrics["test"]["rmse"],
        "test_selected_rmse": metrics["extra"].get("test_selected_rmse"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "glocal_k.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [
        "# GLocal-K speed (ML-100K u1, paper schedule)", "",
        "| quantity | value |", "|---|---|",
        f"| train seconds (loop) | {train_s:.1f} |",
        f"| wall seconds (incl. data load, eval) | {wall:.1f} |",
        f"| process CPU seconds (all threads) | {cpu:.1f} |",
        f"| function evaluations (pre + fine) | {nfev_pre:.0f} + {nfev_fine:.0f} |",
        f"| dense GFLOP per evaluation (pre / fine) | {f_pre / 1e9:.1f} / {f_fine / 1e9:.1f} |",
        f"| dense-matmul floor at {REFERENCE_GFLOPS:.0f} GFLOP/s | {floor_s:.1f} s |",
        f"| floor / ours (>1: faster than the dense floor) | {floor_s / train_s:.2f} |",
        f"| peak RSS | {out['peak_rss_mb']:.0f} MB |",
        f"| parameters | {metrics['num_params']:,} |",
        f"| test RMSE (final epoch) | {out['test_rmse']:.4f} |",
        f"| threads / load average before, after | {args.threads} / "
        f"{load_before[0]:.1f}, {out['load_avg_after'][0]:.1f} |", "",
    ]
    (args.out / "glocal_k.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
