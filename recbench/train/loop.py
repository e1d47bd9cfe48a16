"""The one training loop: epochs, validation, early stopping, checkpoints, history, resume.

Every model family plugs in through a :class:`~recbench.train.api.Trainer`; this loop is the
only place that decides when to evaluate, what counts as the best epoch, and what is written.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recbench import runs
from recbench.config import ExperimentConfig, run_hash, to_plain
from recbench.data.graph import RATES
from recbench.data.prepare import DataPaths, load
from recbench.seeding import seed_everything
from recbench.train.api import EvalResult, RunContext, lower_is_better

Progress = Callable[[dict], None]


@dataclass
class Built:
    trainer: object
    ctx: RunContext
    task: str
    monitor: str


def default_monitor(task: str, cfg: ExperimentConfig, has_negatives: bool) -> str:
    if cfg.train.monitor:
        return cfg.train.monitor
    k = cfg.eval.k[0]
    return {"rating": "rmse", "classification": "accuracy@1"}.get(
        task, f"hr@{k}" if has_negatives else f"recall@{k}")


def build(cfg: ExperimentConfig, paths: DataPaths, device: str = "cpu") -> Built:
    """Seed, load the data and build the model's trainer for one resolved run config."""
    from recbench.models import MODELS

    seed = cfg.seed if cfg.seed is not None else cfg.seeds[0]
    seed_everything(seed)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    data = load(cfg.dataset, paths)
    ctx = RunContext(data, cfg.train, cfg.eval, resolve_device(device), seed)
    spec = MODELS[cfg.model.name]
    trainer = spec.make_trainer(cfg.model, ctx)
    monitor = getattr(trainer, "monitor", None) or default_monitor(
        spec.task, cfg, data.negatives is not None)
    return Built(trainer, ctx, spec.task, monitor)


def resolve_device(name: str) -> torch.device:
    from recbench.errors import ConfigError

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device; use --device cpu "
                          "or install the CUDA builds of torch and DGL (see README)")
    return torch.device(name)


def _env(cfg: ExperimentConfig, device: str) -> dict:
    import dgl

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"argv": sys.argv, "python": platform.python_version(), "torch": torch.__version__,
            "dgl": dgl.__version__, "numpy": np.__version__, "device": device,
            "threads": torch.get_num_threads(), "host": platform.node(),
            "machine": platform.machine(), "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain")), "seed": cfg.seed}


def _has_valid(built: Built) -> bool:
    own = getattr(built.trainer, "has_valid", None)  # a task with its own split (sample-level)
    if own is not None:
        return bool(own)
    return bool(built.ctx.data.g.edges[RATES].data["valid"].any())


def _better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if lower_is_better(metric) else value > best


def _save_per_unit(run_dir: Path, result: EvalResult) -> None:
    if result.per_unit:
        buf_path = run_dir / "per_unit.npz"
        tmp = run_dir / ".per_unit.npz.tmp.npz"
        np.savez_compressed(tmp, **result.per_unit)
        tmp.replace(buf_path)


def train_run(cfg: ExperimentConfig, paths: DataPaths, runs_root: Path, device: str = "cpu",
              resume: Path | None = None, progress: Progress | None = None) -> Path:
    """Train one resolved run config into a run directory; returns the finished folder."""
    built = build(cfg, paths, device)
    trainer, model = built.trainer, built.trainer.model
    plain = to_plain(cfg)
    chash = run_hash(cfg)
    if resume is not None:
        run_dir = resume
        if runs.read_config(run_dir) != plain:
            from recbench.errors import RunError

            raise RunError(f"{run_dir} was made with a different config; resume it with "
                           "`recbench train --resume RUN`, which reads the run's own config.yaml")
    else:
        run_dir = runs.create_run_dir(runs_root, cfg.name, chash, plain)
    runs.write_json(run_dir / "env.json", _env(cfg, device))
    num_epochs = getattr(trainer, "num_epochs", None) or cfg.train.epochs
    start, best, best_epoch, bad, elapsed = 0, None, -1, 0, 0.0
    if resume is not None and (run_dir / "last.pt").is_file():
        state = torch.load(run_dir / "last.pt", map_location=built.ctx.device)
        model.load_state_dict(state["model"])
        trainer.load_state_dict(state["trainer"])
        torch.set_rng_state(state["torch_rng"])
        start, best, best_epoch, bad = state["epoch"] + 1, state["best"], state["best_epoch"], state["bad"]
        elapsed = state.get("elapsed", 0.0)
    has_valid = _has_valid(built)
    log = open(run_dir / "log.txt", "a")
    for epoch in range(start, num_epochs):
        t0 = time.perf_counter()
        parts = trainer.train_epoch(epoch)
        train_s = time.perf_counter() - t0
        record = {"epoch": epoch, **parts, "train_seconds": train_s}
        stop = False
        if has_valid and ((epoch + 1) % cfg.train.eval_every == 0 or epoch == num_epochs - 1):
            val = trainer.evaluate("valid").metrics
            record.update({f"valid_{k}": v for k, v in val.items()})
            if _better(val[built.monitor], best, built.monitor):
                best, best_epoch, bad = val[built.monitor], epoch, 0
                runs.save_torch(run_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch})
            else:
                bad += 1
                stop = cfg.train.patience is not None and bad >= cfg.train.patience
        elapsed += time.perf_counter() - t0
        runs.append_jsonl(run_dir / "history.jsonl", record)
        log.write(json.dumps(record, default=float) + "\n")
        log.flush()
        runs.save_torch(run_dir / "last.pt", {
            "model": model.state_dict(), "trainer": trainer.state_dict(), "epoch": epoch,
            "best": best, "best_epoch": best_epoch, "bad": bad, "torch_rng": torch.get_rng_state(),
            "elapsed": elapsed, "config_hash": chash})
        if progress:
            progress({"epoch": epoch + 1, "epochs": num_epochs, **record,
                      "monitor": built.monitor, "best": best})
        if stop:
            break
    if not has_valid:  # the paper's fixed schedule: the final epoch is the reported one
        best_epoch = num_epochs - 1
        runs.save_torch(run_dir / "best.pt", {"model": model.state_dict(), "epoch": best_epoch})
    state = torch.load(run_dir / "best.pt", map_location=built.ctx.device)
    model.load_state_dict(state["model"])
    t0 = time.perf_counter()
    result = trainer.evaluate("test")
    eval_s = time.perf_counter() - t0
    _save_per_unit(run_dir, result)
    epochs_run = sum(1 for _ in open(run_dir / "history.jsonl")) if num_epochs else 0
    metrics = {
        "test": result.metrics, "best_epoch": best_epoch, "monitor": built.monitor,
        "best_valid": best, "epochs_run": epochs_run, "train_seconds": elapsed,
        "seconds_per_epoch": elapsed / max(epochs_run, 1), "eval_seconds": eval_s,
        "num_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "extra": getattr(trainer, "extra_metrics", lambda: {})(),
    }
    runs.write_json(run_dir / "metrics.json", metrics)
    log.write(f"test {json.dumps(result.metrics, default=float)}\n")
    log.close()
    return runs.finalize(run_dir)


def evaluate_run(run_dir: Path, paths: DataPaths, device: str = "cpu") -> tuple[dict, dict]:
    """Reload ``best.pt`` and recompute the test metrics; returns (recomputed, stored)."""
    from recbench.config import validate

    stored = runs.read_metrics(run_dir)
    cfg = validate(runs.read_config(run_dir), str(run_dir / "config.yaml"))
    built = build(cfg, paths, device)
    state = torch.load(run_dir / "best.pt", map_location=built.ctx.device)
    built.trainer.model.load_state_dict(state["model"])
    return built.trainer.evaluate("test").metrics, stored["test"]
