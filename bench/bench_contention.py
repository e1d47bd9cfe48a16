"""Seconds per epoch of BPR-MF and LightGCN on ML-100K with 0, 1 and 2 competing busy processes,
for the default thread choice (recbench/threads.py) and every fixed thread count. Target
(issue 15): the default within 1.3x of the best fixed choice in every condition.

Each measurement is a fresh process (so the default is chosen as a real run chooses it: from
the CPUs it may use and how busy they are when it starts); competitors are plain Python spin
loops started before and killed after each measurement. Run on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.common import ROOT, data_paths, write

EPOCHS = int(os.environ.get("BENCH_EPOCHS", "6"))
MODELS = {
    "bpr_mf": {"name": "b", "dataset": {"name": "ml-100k", "protocol": "random",
                                        "test_ratio": 0.1, "valid_ratio": 0.111111},
               "model": {"name": "bpr_mf", "emb_dim": 64, "reg": 0.02},
               "train": {"lr": 0.002, "batch_size": 2048}},
    "lightgcn": {"name": "l", "dataset": {"name": "ml-100k", "protocol": "random",
                                          "test_ratio": 0.1, "valid_ratio": 0.111111,
                                          "per_user": True},
                 "model": {"name": "lightgcn", "emb_dim": 64, "num_layers": 3, "reg": 1e-3},
                 "train": {"lr": 2e-3, "batch_size": 2048}},
}

# runs in a fresh interpreter: build the run (which picks the default threads), time epochs
CHILD = r"""
import json, statistics, sys, time
import torch
from recbench.config import expand_seeds
from recbench.experiment import validate
from recbench.data.prepare import DataPaths
from recbench import process
from recbench.runner import build
from pathlib import Path
raw = json.loads({raw!r})
if {threads} > 0:
    raw["train"]["num_threads"] = {threads}
cfg = expand_seeds(validate(raw, "bench"))[0]
threads = process.start(cfg, DataPaths(Path({data!r}))).threads
built = build(cfg, DataPaths(Path({data!r})), threads=threads)
times = []
for epoch in range({epochs}):
    t0 = time.perf_counter()
    built.trainer.train_epoch(epoch)
    times.append(time.perf_counter() - t0)
print(json.dumps({{"s": statistics.median(times[1:]), "threads": torch.get_num_threads(),
                  "reason": built.threads.reason if built.threads else ""}}))
"""


def measure(model: str, threads: int, data_root: str) -> dict:
    code = CHILD.format(raw=json.dumps(MODELS[model]), threads=threads,
                        data=data_root, epochs=EPOCHS)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT,  # `python -c` imports recbench from the current folder
                         env={**os.environ, "OMP_NUM_THREADS": ""} if threads else os.environ)
    return json.loads(out.stdout.strip().splitlines()[-1])


def spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    paths = data_paths("ml-100k")
    cpus = len(os.sched_getaffinity(0))
    fixed = list(range(1, cpus + 1))
    rows, figures = [], {}
    for competitors in (0, 1, 2):
        for model in MODELS:
            busy = spinners(competitors)
            try:
                time.sleep(1.0)  # let the competitors show up in /proc/stat
                default = measure(model, 0, str(paths.root))
                each = {t: measure(model, t, str(paths.root))["s"] for t in fixed}
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
            best = min(each.values())
            ratio = default["s"] / best
            figures[f"{model}/{competitors}"] = {"default": default, "fixed": each,
                                                 "default_over_best": ratio}
            rows.append(f"| {model} | {competitors} | {default['s']:.3f} ({default['threads']}) | "
                        + " | ".join(f"{each[t]:.3f}" for t in fixed)
                        + f" | {ratio:.2f}{' ✗' if ratio > 1.3 else ''} |")
    lines = [f"Median seconds per training epoch ({EPOCHS - 1} epochs after a warm-up, fresh "
             "process each), with N competing busy Python processes. default = the thread count "
             "a run picks by itself (recbench/threads.py; chosen count in brackets).", "",
             "| model | competitors | default s (threads) | "
             + " | ".join(f"{t} thread(s) s" for t in fixed) + " | default / best fixed |",
             "|---|---|---|" + "---|" * len(fixed) + "---|", *rows, "",
             "Target: default / best fixed ≤ 1.3 in every row (✗ marks a miss)."]
    write("contention", figures, lines)


if __name__ == "__main__":
    main()
