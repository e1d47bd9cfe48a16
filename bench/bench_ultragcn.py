"""UltraGCN's native step on Gowalla at the authors' settings: seconds an epoch at 1 and 2 threads.

Why (issue 32): UltraGCN's official Gowalla schedule (batch 512, 1,500 uniform negatives a pair,
lr 1e-4, best epoch 634 chosen on test) took 52 s an epoch on the authors' GPU; the autograd
step here gathered a (512 × 1,500 × 64) block a batch, hours an epoch on this CPU. The native
step (kernels.c ``ultragcn_scatter``) reads each row once; this benchmark times it on the real
split (experiments/gowalla_ultragcn.yaml: 742,879 training pairs after the 10 % validation
carve-out) over a few batches per thread count, alternating, and scales the median step to
the epoch's 1,451 batches: the figure that sizes a run to a working session.

Parts: the negatives drawn (``UltraGCNTrainer.draw_negatives``, as the epoch draws them), the batch's gradient
(the γ·θ pass, the C loop, the norm) and Adam's update; the load average is written beside
each. Writes results/bench/ultragcn.{json,md}.

    python -m bench.bench_ultragcn [--steps 8] [--reps 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import time
from pathlib import Path

import torch
import yaml

from bench.common import ROOT, data_paths, write

EXPERIMENT = ROOT / "experiments" / "gowalla_ultragcn.yaml"


def build_trainer():
    from recbench.experiment import validate
    from recbench.runner import build

    raw = yaml.safe_load(EXPERIMENT.read_text())
    raw["train"]["kernels"] = "native"
    cfg = validate(raw, str(EXPERIMENT)).model_copy(update={"seed": 0})
    return build(cfg, data_paths(cfg.dataset.name), threads=1).trainer


def time_steps(trainer, steps: int, threads: int) -> dict[str, float]:
    """Median seconds of each part over ``steps`` batches at ``threads`` (one untimed first)."""
    torch.set_num_threads(threads)
    parts: dict[str, list[float]] = {}
    for i, (u, p) in enumerate(itertools.islice(trainer.epoch_pairs(), steps + 1)):
        t0 = time.perf_counter()
        neg = trainer.draw_negatives(u)
        t1 = time.perf_counter()
        trainer.batch_gradient(u, p, neg)
        t2 = time.perf_counter()
        trainer.opt.step()
        t3 = time.perf_counter()
        if i:
            for name, v in (("negatives", t1 - t0), ("gradient", t2 - t1), ("adam", t3 - t2),
                            ("step", t3 - t0)):
                parts.setdefault(name, []).append(v)
    return {name: statistics.median(v) for name, v in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    t0 = time.perf_counter()
    trainer = build_trainer()
    build_seconds = time.perf_counter() - t0
    assert trainer.kernels().path == "native", trainer.kernels()
    per_epoch = math.ceil(len(trainer.users) / trainer.ctx.train.batch_size)
    blocks: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    loads = []
    for rep in range(args.reps):
        for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):
            blocks[threads].append(time_steps(trainer, args.steps, threads))
        loads.append(round(os.getloadavg()[0], 2))
    figures = {"pairs": len(trainer.users), "steps_per_epoch": per_epoch,
               "batch": trainer.ctx.train.batch_size, "negatives": trainer.cfg.num_negatives,
               "build_seconds": round(build_seconds, 1), "load_avg_1min": loads}
    lines = [f"Gowalla (experiments/gowalla_ultragcn.yaml, native step): {len(trainer.users):,} "
             f"training pairs, batch {trainer.ctx.train.batch_size}, "
             f"{trainer.cfg.num_negatives:,} negatives a pair, {per_epoch:,} steps an epoch; "
             f"{args.reps} alternating blocks of {args.steps} steps per thread count, median "
             f"step of the blocks' medians. Building the trainer (split, β, the item-item "
             f"neighbours) took {build_seconds:.0f} s. 1-min load average: {loads}.", "",
             "| threads | negatives ms | gradient ms | Adam ms | step ms | epoch s |",
             "|---|---|---|---|---|---|"]
    for threads, runs in blocks.items():
        med = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
        epoch = med["step"] * per_epoch
        figures[f"{threads}t"] = {**{f"{k}_ms": round(v * 1e3, 2) for k, v in med.items()},
                                  "epoch_seconds": round(epoch, 1)}
        lines.append(f"| {threads} | {med['negatives'] * 1e3:.1f} | {med['gradient'] * 1e3:.1f} | "
                     f"{med['adam'] * 1e3:.1f} | {med['step'] * 1e3:.1f} | {epoch:.1f} |")
    one, two = figures["1t"]["epoch_seconds"], figures["2t"]["epoch_seconds"]
    lines += ["", f"2 vs 1 thread: {one / two:.2f}×. The authors' GPU: 52 s an epoch "
              f"(their log, UltraGCN_gowalla_x0); their best epoch 634."]
    write("ultragcn", figures, lines, args.out)


if __name__ == "__main__":
    main()
