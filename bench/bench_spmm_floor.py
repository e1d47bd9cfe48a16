"""The propagation floor at Gowalla's size: Â·X and Â^T·X alone, and a LightGCN epoch against it.

Why (issue 36): an epoch of LightGCN is, at its core, 3 products Â·X forward and 3 Â^T·X
backward per step; everything else (BPR rows, Adam, sampling) is overhead on top. This
benchmark times those products alone through the native CSR kernel (recbench/native, the one
the LightGCN/NGCF step uses) on the real Gowalla split (dataset gowalla-lightgcn, the
NGCF/LightGCN split as experiments/gowalla_lightgcn.yaml loads it: 70,839 nodes, ~1.48M
directed training edges, D = 64), at 1 and 2 threads, alternating, a few repetitions each
(each the mean of 5 calls on a warm thread pool; the median is reported), and gives

- seconds per product, GFLOP/s (2 · nnz · D flops) and GB/s of the compulsory traffic (the
  CSR arrays, X once, the output once; the gathered rows of X, nnz · D · 4 bytes, are shown
  beside it as "gathered GB/s");
- the floor of an epoch: steps × 6 products, and a measured LightGCN epoch-equivalent
  (the real native trainer's step, timed over a few steps, × steps per epoch) as a multiple
  of that floor (issue 36's target: ≤ 1.3×).

On a shared machine the figures move with the other processes: the load average is written
beside each. Writes results/bench/spmm_floor.{json,md}.

    python -m bench.bench_spmm_floor [--reps 5] [--steps 8] [--out DIR]
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

from bench.common import data_paths, write

DATASET = {"name": "gowalla-lightgcn", "protocol": "fixed", "split": "published",
           "valid_ratio": 0.1}
MODEL = {"name": "lightgcn", "emb_dim": 64, "num_layers": 3, "reg": 1.0e-4, "init_std": 0.1}
# NGCF at experiments/gowalla_ngcf.yaml's model (message dropout on, node dropout off), on the
# same batch as LightGCN so the two epochs compare
NGCF = {"name": "ngcf", "emb_dim": 64, "num_layers": 3, "reg": 1.0e-5, "message_dropout": 0.1,
        "edge_dropout": 0.0}
TRAIN = {"lr": 1.0e-3, "batch_size": 2048, "kernels": "native", "num_threads": 1}


def build_trainer(paths, model: dict = MODEL):
    from recbench import process
    from recbench.experiment import validate
    from recbench.runner import build

    cfg = validate({"name": "spmm-floor", "dataset": DATASET, "model": model, "train": TRAIN,
                    "seeds": [0]}, "bench")
    cfg = cfg.model_copy(update={"seed": 0})
    return build(cfg, paths, threads=process.start(cfg, paths).threads).trainer


def time_call(fn, threads: int, calls: int = 5, warm_seconds: float = 0.1) -> float:
    """Mean seconds of ``calls`` calls of ``fn`` on ``threads`` threads, after untimed calls
    for at least ``warm_seconds``: after a switch of thread count (or any idle time) the
    second vCPU takes ~50 ms of work to come back to full speed (docs/benchmarks.md, "the
    second core's wake-up"), which is not the product's cost (a step runs six products on a
    warm pool); one warm-up call measured that ramp."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    while True:
        fn()
        if time.perf_counter() - t0 >= warm_seconds:
            break
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def products(trainer, reps: int) -> dict:
    """Median seconds of Â·X and Â^T·X (accumulating, as the backward does) per thread count,
    the thread counts alternating inside each repetition."""
    csr, csr_t = trainer.step.kernels.csr, trainer.step.kernels.csr_t
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(csr.num_rows, trainer.model.emb.embedding_dim, generator=gen)
    out, acc = torch.empty_like(x), torch.zeros_like(x)
    chain = [torch.empty_like(x), torch.empty_like(x)]

    def chained() -> None:
        """Â·X where X is the previous product's output, as the step's layers run: each
        product's input was just written by both threads (measured ~15 % slower at 2 threads
        than a product from a fixed X, ~5 % faster at 1)."""
        csr.matmul(chain[0], out=chain[1])
        chain.reverse()

    chain[0].copy_(x)
    calls = {"forward": lambda: csr.matmul(x, out=out),
             "chained": chained,
             "backward": lambda: csr_t.matmul(x, out=acc, accumulate=True)}
    for fn in calls.values():  # warm-up: pages, caches
        fn()
    seconds: dict[tuple[str, int], list[float]] = {}
    loads = []
    for rep in range(reps):
        for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):
            for name, fn in calls.items():
                seconds.setdefault((name, threads), []).append(time_call(fn, threads))
        loads.append(os.getloadavg()[0])
    nnz, rows, dim = int(csr.col.numel()), csr.num_rows, x.shape[1]
    flops = 2 * nnz * dim
    compulsory = 8 * (rows + 1) + 12 * nnz + 4 * dim * (2 * rows)  # indptr, col+val, X, out
    gathered = 4 * dim * nnz
    out_rows = {}
    for (name, threads), values in seconds.items():
        s = statistics.median(values)
        extra = 4 * dim * rows if name == "backward" else 0  # the accumulated output is read
        out_rows[f"{name}@{threads}t"] = {
            "seconds": round(s, 5), "runs": [round(v, 5) for v in values],
            "gflops": round(flops / s / 1e9, 2), "gbps": round((compulsory + extra) / s / 1e9, 2),
            "gathered_gbps": round(gathered / s / 1e9, 2)}
    return {"nodes": rows, "nnz": nnz, "dim": dim, "products": out_rows,
            "load_avg_1min": [round(v, 2) for v in loads]}


def dense_transforms(dim: int, rows: int, reps: int) -> dict[int, float]:
    """Seconds of NGCF's dense work per step besides the products, timed alone per thread
    count: each layer multiplies two (rows, D) tables by (D, D) weights forward, and the
    backward needs both the input and the weight gradient of each (6 GEMMs a layer)."""
    gen = torch.Generator().manual_seed(0)
    a, w = torch.randn(rows, dim, generator=gen), torch.randn(dim, dim, generator=gen)
    out, wg = torch.empty(rows, dim), torch.empty(dim, dim)

    def six() -> None:
        for _ in range(2):
            torch.mm(a, w, out=out)
            torch.mm(a, w.t(), out=out)
            torch.mm(a.t(), a, out=wg)

    seconds: dict[int, list[float]] = {}
    for rep in range(reps):
        for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):
            seconds.setdefault(threads, []).append(time_call(six, threads))
    return {t: statistics.median(v) for t, v in seconds.items()}


def one_step(trainer, idx) -> None:
    """One training step on the pairs ``idx``, as the trainer's epoch runs it: negatives,
    the written-out gradient, the optimiser's update."""
    u, p = trainer.users.index_select(0, idx), trainer.items.index_select(0, idx)
    trainer.batch_gradient(u, p, trainer.sample(u))
    trainer.opt.step()


def epoch_equivalent(trainer, steps: int, threads: int) -> dict:
    """The real native LightGCN or NGCF step (sample, forward, BPR rows, backward, Adam) timed over
    ``steps`` batches, scaled to the epoch's number of batches."""
    from recbench.train.trainers import shuffled_batches

    torch.set_num_threads(threads)
    batch = trainer.ctx.train.batch_size
    per_epoch = math.ceil(len(trainer.users) / batch)
    batches = itertools.islice(shuffled_batches(len(trainer.users), batch, trainer.gen),
                               steps + 1)
    times = []
    for idx in batches:
        t0 = time.perf_counter()
        one_step(trainer, idx)
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[1:])  # the first: warm-up
    return {"step_seconds": round(step, 4), "steps_per_epoch": per_epoch,
            "epoch_seconds": round(step * per_epoch, 2), "load_avg_1min": os.getloadavg()[0]}


class PartTimes:
    """Seconds of named calls inside the trainer's step, by wrapping those calls on their
    instances: the step runs its own code unchanged, so the parts are what ``batch_gradient``
    does, not a copy of it."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def wrap(self, owner, attr: str, name: str) -> None:
        call = getattr(owner, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds.setdefault(name, []).append(time.perf_counter() - t0)

        setattr(owner, attr, timed)


STEP_PARTS = (("sample", "negatives drawn"), ("forward", "3 products + layer sums"),
              ("score", "BPR rows → dL/dF"), ("backward", "3 transposed products, fused"),
              ("l2", "L2 rows"), ("adam", "Adam over the ego table"))


def step_parts(trainer, steps: int, reps: int) -> dict:
    """Median milliseconds of each part of the native LightGCN step at 1 and 2 threads
    (the thread counts alternating over ``reps`` blocks of ``steps`` batches, the first step of
    each block untimed), and the step's rest (batch slicing, Python) as "other". Why (issue 36):
    the floor ratio says how much of the step is not the products, not which part it is."""
    from recbench.train.trainers import shuffled_batches

    step, timer = trainer.step, PartTimes()
    timer.wrap(trainer, "sample", "sample")
    timer.wrap(step, "forward_saved", "forward")
    timer.wrap(step.kernels, "score_gradient", "score")
    timer.wrap(step, "propagate_back", "backward")
    timer.wrap(step.kernels, "add_l2", "l2")
    timer.wrap(trainer.opt, "step", "adam")
    batch = trainer.ctx.train.batch_size
    per_part: dict[int, dict[str, list[float]]] = {1: {}, 2: {}}
    for rep in range(reps):
        for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):
            torch.set_num_threads(threads)
            batches = itertools.islice(shuffled_batches(len(trainer.users), batch, trainer.gen),
                                       steps + 1)
            for i, idx in enumerate(batches):
                timer.seconds.clear()
                t0 = time.perf_counter()
                one_step(trainer, idx)
                total = time.perf_counter() - t0
                if i == 0:  # warm-up after the switch of thread count
                    continue
                parts = {name: sum(v) for name, v in timer.seconds.items()}
                parts["other"] = total - sum(parts.values())
                parts["step"] = total
                for name, v in parts.items():
                    per_part[threads].setdefault(name, []).append(v)
    return {f"{t}t": {name: round(statistics.median(v) * 1e3, 2) for name, v in parts.items()}
            for t, parts in per_part.items()} | {"load_avg_1min": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    trainer = build_trainer(data_paths(DATASET["name"]))
    assert trainer.kernels().path == "native", trainer.kernels()
    figures = products(trainer, args.reps)
    layers = trainer.model.num_layers
    epochs = {}
    for threads in (1, 2):
        epoch = epoch_equivalent(trainer, args.steps, threads)
        p = figures["products"]
        floor = epoch["steps_per_epoch"] * layers * (p[f"forward@{threads}t"]["seconds"]
                                                      + p[f"backward@{threads}t"]["seconds"])
        epoch["floor_seconds"] = round(floor, 2)
        epoch["multiple_of_floor"] = round(epoch["epoch_seconds"] / floor, 2)
        epochs[f"{threads}t"] = epoch
    figures["lightgcn_epoch"] = epochs
    figures["lightgcn_step_parts"] = parts = step_parts(trainer, args.steps, max(2, args.reps // 2))
    del trainer
    ngcf = build_trainer(data_paths(DATASET["name"]), NGCF)
    assert ngcf.kernels().path == "native", ngcf.kernels()
    gemms = dense_transforms(figures["dim"], figures["nodes"], args.reps)
    ngcf_epochs = {}
    for threads in (1, 2):
        epoch = epoch_equivalent(ngcf, max(2, args.steps // 2), threads)
        p = figures["products"]
        spmm = layers * (p[f"forward@{threads}t"]["seconds"] + p[f"backward@{threads}t"]["seconds"])
        floor = epoch["steps_per_epoch"] * (spmm + layers * gemms[threads])
        epoch["floor_seconds"] = round(floor, 2)
        epoch["multiple_of_floor"] = round(epoch["epoch_seconds"] / floor, 2)
        epoch["gemm_seconds_per_layer"] = round(gemms[threads], 4)
        ngcf_epochs[f"{threads}t"] = epoch
    figures["ngcf_epoch"] = ngcf_epochs
    lines = [f"Gowalla (gowalla-lightgcn, published split less 10 % validation): "
             f"{figures['nodes']:,} nodes, {figures['nnz']:,} directed training edges, "
             f"D = {figures['dim']}; native CSR product (recbench/native/kernels.c), "
             f"{args.reps} alternating repetitions of 5 calls on a warm pool, median; "
             f"each block warmed ≥ 100 ms at its thread count. The floors below use the "
             f"fixed-X products (the strict floor); the step's layers chain (each reads the "
             f"last product's output), the chained row. 1-min load average during the "
             f"products: {figures['load_avg_1min']}.", "",
             "| product | threads | seconds | GFLOP/s | GB/s (compulsory) | GB/s (gathered X) |",
             "|---|---|---|---|---|---|"]
    label = {"forward": "Â·X", "chained": "Â·X, X the last product's output",
             "backward": "Â^T·X (+=)"}
    for key in ("forward@1t", "forward@2t", "chained@1t", "chained@2t", "backward@1t",
                "backward@2t"):
        row, (name, threads) = figures["products"][key], key.split("@")
        lines.append(f"| {label[name]} | {threads[:-1]} | "
                     f"{row['seconds']:.4f} | {row['gflops']} | {row['gbps']} | "
                     f"{row['gathered_gbps']} |")
    lines += ["", f"LightGCN epoch-equivalent ({layers} layers: {2 * layers} products a step; "
              f"step timed over {args.steps} batches of {TRAIN['batch_size']}, median):", "",
              "| threads | s/step | steps/epoch | epoch s | floor s (steps × 6 products) | "
              "epoch / floor | load |", "|---|---|---|---|---|---|---|"]
    for key, e in epochs.items():
        lines.append(f"| {key[:-1]} | {e['step_seconds']} | {e['steps_per_epoch']} | "
                     f"{e['epoch_seconds']} | {e['floor_seconds']} | "
                     f"{e['multiple_of_floor']}× | {e['load_avg_1min']:.2f} |")
    lines += ["", f"LightGCN step by part (native step, the same batch; median ms over "
              f"{max(2, args.reps // 2)} alternating blocks of {args.steps} steps at each thread "
              f"count; \"other\": batch slicing and the step's Python; medians, so the shares need "
              f"not sum to 100 %; load "
              f"{parts['load_avg_1min']:.2f}):", "",
              "| part | what | 1 thread ms | 2 threads ms | 1 / 2 | share at 2 threads |",
              "|---|---|---|---|---|---|"]
    for name, what in (*STEP_PARTS, ("other", "the rest"), ("step", "the whole step")):
        one, two = parts["1t"][name], parts["2t"][name]
        lines.append(f"| {name} | {what} | {one:.2f} | {two:.2f} | "
                     f"{one / two if two > 0 else float('nan'):.2f}× | "
                     f"{100 * two / parts['2t']['step']:.0f} % |")
    lines += ["", f"NGCF epoch-equivalent (same batch; message dropout 0.1, as "
              f"experiments/gowalla_ngcf.yaml; step timed over {max(2, args.steps // 2)} batches, "
              f"median). Its floor is the six products plus its dense transforms timed alone "
              f"(6 GEMMs of ({figures['nodes']:,} × {figures['dim']}) by "
              f"({figures['dim']} × {figures['dim']}) a layer):", "",
              "| threads | s/step | steps/epoch | epoch s | GEMMs s/layer | floor s | "
              "epoch / floor | load |", "|---|---|---|---|---|---|---|---|"]
    for key, e in ngcf_epochs.items():
        lines.append(f"| {key[:-1]} | {e['step_seconds']} | {e['steps_per_epoch']} | "
                     f"{e['epoch_seconds']} | {e['gemm_seconds_per_layer']} | "
                     f"{e['floor_seconds']} | {e['multiple_of_floor']}× | "
                     f"{e['load_avg_1min']:.2f} |")
    p = figures["products"]
    lines += ["", "2 vs 1 thread (time at 1 / time at 2): "
              + ", ".join(f"{name} {p[f'{name}@1t']['seconds'] / p[f'{name}@2t']['seconds']:.2f}×"
                          for name in ("forward", "chained", "backward"))
              + "".join(f", {name} epoch {e['1t']['epoch_seconds'] / e['2t']['epoch_seconds']:.2f}×"
                        for name, e in (("LightGCN", epochs), ("NGCF", ngcf_epochs))) + "."
              + " Measured under the 1-min load shown in each table (idle ≈ below 1 with "
              "nothing else running; the issue's targets are read idle)."]
    write("spmm_floor", figures, lines, args.out)


if __name__ == "__main__":
    main()
