"""BPR-MF and biased MF seconds per epoch on ML-100K (the foundation's speed target: BPR-MF
≤ 0.3 s per epoch at 64-d, batch 2048, on the 2-core machine)."""

from __future__ import annotations

import statistics
import time

from bench.common import data_paths, peak_rss_mb, write


def epoch_times(raw: dict, paths, epochs: int, autograd: bool = False) -> list[float]:
    """Seconds of each training epoch; ``autograd``: BPR-MF through the generic autograd
    step (PairwiseTrainer) instead of its hand-written gradient, the "before" in one run."""
    import torch

    from recbench import process
    from recbench.config import expand_seeds
    from recbench.experiment import validate
    from recbench.runner import build
    from recbench.train.trainers import PairwiseTrainer

    cfg = expand_seeds(validate(raw, "bench"))[0]
    process.start(cfg, paths)
    built = build(cfg, paths)
    torch.set_num_threads(2)
    times = []
    step = PairwiseTrainer.train_epoch if autograd else type(built.trainer).train_epoch
    for epoch in range(epochs):
        t0 = time.perf_counter()
        step(built.trainer, epoch)
        times.append(time.perf_counter() - t0)
    return times[1:]  # the first epoch warms caches and allocators


def main() -> None:
    paths = data_paths("ml-100k")
    split = {"name": "ml-100k", "protocol": "random", "test_ratio": 0.1, "valid_ratio": 0.111111}
    bpr_cfg = {"name": "b", "dataset": split, "model": {"name": "bpr_mf", "emb_dim": 64, "reg": 0.01},
               "train": {"lr": 0.005, "batch_size": 2048}}
    bpr_autograd = epoch_times(bpr_cfg, paths, 21, autograd=True)
    bpr = epoch_times(bpr_cfg, paths, 21)
    mf = epoch_times({"name": "m", "dataset": {"name": "ml-100k", "split": "u1"},
                      "model": {"name": "biased_mf", "emb_dim": 64},
                      "train": {"lr": 0.005, "batch_size": 1024}}, paths, 11)
    figures = {"bpr_mf_seconds_per_epoch_median": statistics.median(bpr),
               "bpr_mf_seconds_per_epoch_min": min(bpr),
               "bpr_mf_autograd_seconds_per_epoch_median": statistics.median(bpr_autograd),
               "biased_mf_seconds_per_epoch_median": statistics.median(mf),
               "peak_rss_mb": peak_rss_mb()}
    write("foundation", figures, [
        "| model | data | epoch | median s/epoch | min s/epoch | target |",
        "|---|---|---|---|---|---|",
        f"| BPR-MF 64-d | ML-100K 80/10/10 (80,908 train edges) | batch 2048, 1 negative | "
        f"{statistics.median(bpr):.3f} | {min(bpr):.3f} | ≤ 0.3 |",
        f"| BPR-MF 64-d, autograd step (before the hand-written gradient) | the same | the same | "
        f"{statistics.median(bpr_autograd):.3f} | {min(bpr_autograd):.3f} | — |",
        f"| biased MF 64-d | ML-100K u1 (80,000 ratings) | batch 1024 | "
        f"{statistics.median(mf):.3f} | {min(mf):.3f} | — |",
        "", f"peak RSS {peak_rss_mb():.0f} MB"])


if __name__ == "__main__":
    main()
