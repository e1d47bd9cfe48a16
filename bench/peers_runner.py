"""Runs one peer measurement INSIDE the peer virtual environment (.peers-venv, built by
bench/bench_peers.py); imports only recbole / implicit / numpy / scipy / torch, never recbench.

    .peers-venv/bin/python bench/peers_runner.py JOB.json

JOB.json is written by bench_peers.py; the result is printed as one JSON object on the last
line of stdout. Two kinds of job:

recbole:  train a RecBole 1.2.1 model on the exported benchmark files (NAME.{train,valid,test}
          .inter), time every call of ``Trainer._train_epoch`` (training only: negative sampling
          and the optimiser steps, no evaluation), then (unless the job says "evaluate": false)
          evaluate the final weights on the test file with full-sort ranking (train and valid
          items masked), and report the dataset
          statistics RecBole itself read, so the caller can check it is the exported split.
implicit: fit ``implicit.cpu.bpr.BayesianPersonalizedRanking`` on the exported train CSR matrix
          (one ``fit`` of E iterations; per-iteration seconds from its callback), then
          Recall@20 / NDCG@20 in NumPy with recbench's definitions (recbench/eval/ranking.py,
          recbench/eval/metrics.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any


def set_threads(threads: int | None) -> int:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def run_recbole(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    work = Path(job["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # RecBole writes log/, saved/ and log_tensorboard/ under the working directory
    config = Config(model=job["model"], dataset=job["dataset"], config_dict=job["config"])
    init_seed(config["seed"], config["reproducibility"])
    threads = set_threads(job.get("threads"))  # after RecBole's own setup, so it sticks
    logging.getLogger().setLevel(logging.WARNING)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    stats = {"users": dataset.user_num - 1, "items": dataset.item_num - 1,  # minus [PAD]
             "train": len(train_data.dataset), "valid": len(valid_data.dataset),
             "test": len(test_data.dataset), "test_users": len(test_data.uid_list)}
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    epoch_seconds: list[float] = []
    inner = trainer._train_epoch

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        epoch_seconds.append(time.perf_counter() - t0)
        return out

    trainer._train_epoch = timed
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    result, eval_s = {}, None
    if job.get("evaluate", True):  # off: a timing-only run at a size where the test is slow
        t0 = time.perf_counter()
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        eval_s = time.perf_counter() - t0
    return {"epoch_seconds": epoch_seconds, "threads": threads, "eval_seconds": eval_s,
            "test": {k.lower(): float(v) for k, v in result.items()}, "dataset": stats,
            "num_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "recbole_config": {k: config[k] for k in job["config"] if k in config},
            "torch": torch.__version__}


def ranking_metrics(scores: Any, seen: Any, relevant: Any, k: int) -> dict[str, float]:
    """recbench's full-ranking definitions: users with >= 1 relevant item; seen items masked;
    recall = hits@k / #relevant; NDCG with the ideal list of min(#relevant, k) hits."""
    import numpy as np

    num_rel = np.diff(relevant.indptr)
    users = np.nonzero(num_rel > 0)[0]
    recalls, ndcgs = [], []
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])
    for start in range(0, len(users), 1024):
        batch = users[start:start + 1024]
        s = scores[batch].astype(np.float64)
        s[seen[batch].toarray() > 0] = -np.inf
        top = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        hits = np.take_along_axis(relevant[batch].toarray() > 0, top, 1)
        n = num_rel[batch]
        recalls.append(hits.sum(1) / np.maximum(n, 1))
        ndcgs.append((hits * discounts).sum(1) / ideal[np.minimum(n, k)])
    return {f"recall@{k}": float(np.concatenate(recalls).mean()),
            f"ndcg@{k}": float(np.concatenate(ndcgs).mean()), "test_users": int(len(users))}


def run_implicit(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import scipy.sparse as sp
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    set_threads(job.get("threads"))
    arrays = np.load(job["npz"])
    shape = (int(arrays["num_users"]), int(arrays["num_items"]))

    def csr(split: str) -> Any:
        u, i = arrays[f"{split}_user"], arrays[f"{split}_item"]
        return sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=shape)

    train, valid, test = csr("train"), csr("valid"), csr("test")
    model = BayesianPersonalizedRanking(
        factors=job["factors"], learning_rate=job["learning_rate"],
        regularization=job["regularization"], iterations=job["epochs"],
        num_threads=job["threads"] or 0, random_state=job["seed"])
    epoch_seconds: list[float] = []

    def on_iteration(*args: Any) -> None:  # (iteration, elapsed seconds of that iteration, ...)
        epoch_seconds.append(float(args[1]))

    # one fit of E iterations (separate fits would reseed the sampler identically every time)
    t0 = time.perf_counter()
    model.fit(train, show_progress=False, callback=on_iteration)
    fit_seconds = time.perf_counter() - t0
    scores = model.user_factors @ model.item_factors.T  # last column: user 1 x item bias
    metrics = ranking_metrics(np.asarray(scores), (train + valid).tocsr(), test, job["k"])
    import implicit

    return {"epoch_seconds": epoch_seconds, "threads": job["threads"] or os.cpu_count(),
            "test": {k: v for k, v in metrics.items() if k != "test_users"},
            "dataset": {"users": shape[0], "items": shape[1], "train": int(train.nnz),
                        "valid": int(valid.nnz), "test": int(test.nnz),
                        "test_users": metrics["test_users"]},
            "implicit": implicit.__version__, "fit_seconds": fit_seconds}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    out = run_recbole(job) if job["kind"] == "recbole" else run_implicit(job)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
