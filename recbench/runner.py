"""The one training loop: epochs, validation, early stopping, checkpoints, history, resume.

It builds a run from a validated experiment (the model registry, the data, the trainer), so it
sits above the models and the experiment schema in the layers (tests/test_layers.py); it was
``train/loop.py`` until the training package had to stop importing the models it trains.

Every model family plugs in through a :class:`~recbench.train.api.Trainer`; this loop is the
only place that decides when to evaluate, what counts as the best epoch (run-wide, or per
member of a stage that selects its own), when a stage or the run stops early, which weights are
restored, and what is written.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from recbench import runs, tracking
from recbench.config import ExperimentConfig, TrainConfig, run_hash, to_plain
from recbench.cpu import cpu_model
from recbench.data.prepare import DataPaths, load
from recbench.eval.metrics import monitor_unselected
from recbench.eval.result import EvalResult
from recbench.memory import allocator_setting
from recbench.native import status as native_status
from recbench.native.choice import KernelChoice
from recbench.seeding import seed_everything
from recbench.threads import ThreadChoice
from recbench.train.api import RunContext, Stage, Trainer, lower_is_better, ranking_monitor

Progress = Callable[[dict], None]


@dataclass
class Built:
    trainer: Trainer
    ctx: RunContext
    task: str
    monitor: str
    threads: ThreadChoice | None = None
    kernels: KernelChoice | None = None


def default_monitor(task: str, cfg: ExperimentConfig, has_negatives: bool) -> str:
    if cfg.train.monitor:
        return cfg.train.monitor
    return {"rating": "rmse", "classification": "accuracy@1"}.get(
        task, ranking_monitor(cfg.train, cfg.eval, has_negatives))


def build(cfg: ExperimentConfig, paths: DataPaths, device: str = "cpu",
          threads: ThreadChoice | None = None) -> Built:
    """Seed, load the data and build the model's trainer for one resolved run config.
    ``threads``: the choice the process's start applied (``recbench.process.start``), recorded
    in env.json; process-wide settings are not this function's to change."""
    from recbench.models import registry

    seed = cfg.seed if cfg.seed is not None else cfg.seeds[0]
    seed_everything(seed)
    data = load(cfg.dataset, paths)
    ctx = RunContext(data, cfg.train, cfg.eval, resolve_device(device), seed)
    spec = registry()[cfg.model.name]
    from recbench.errors import ConfigError

    try:
        trainer = spec.make_trainer(cfg.model, ctx)
    except ValueError as exc:  # a setting the model's builder rejects: the user's to fix
        raise ConfigError(f"{cfg.name}: {exc} (model {cfg.model.name}); "
                          "fix the experiment file or --set") from None
    except (RuntimeError, MemoryError) as exc:
        if not _out_of_memory(exc):
            raise
        raise ConfigError(f"{cfg.name}: model {cfg.model.name} does not fit in memory on "
                          f"{device} ({_first_line(exc)}); lower its sizes (emb_dim, hidden, "
                          "...) with --set") from None
    if cfg.train.pair_sampling != "interactions" and not hasattr(trainer, "epoch_pairs"):
        raise ConfigError(f"{cfg.name}: train.pair_sampling: {cfg.train.pair_sampling} applies "
                          f"to the pairwise (BPR) trainers only, and model {cfg.model.name} "
                          "draws its own samples; remove the key")
    kernels = trainer.kernels()
    if cfg.train.kernels == "native" and kernels.path != "native":
        raise ConfigError(f"{cfg.name}: train.kernels: native asked for, but the step cannot "
                          f"take the native kernels here ({kernels.reason}); set "
                          "train.kernels: auto or torch")
    monitor = trainer.monitor or default_monitor(spec.task, cfg, data.negatives is not None)
    if problem := monitor_unselected(cfg.eval.metrics, monitor):
        raise ConfigError(f"{cfg.name}: {problem}")
    return Built(trainer, ctx, spec.task, monitor, threads, kernels)


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed (CPU allocator, CUDA, or Python's own)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text \
        or "out of memory" in text.lower()


def _first_line(exc: BaseException) -> str:
    import re

    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    found = re.search(r"tried to allocate [0-9.]+ ?[A-Za-z]*", line)
    return found.group(0) if found else line[:120]


def resolve_device(name: str) -> torch.device:
    from recbench.errors import ConfigError

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device; use --device cpu "
                          "or install the CUDA builds of torch and DGL (see README)")
    return torch.device(name)


def _env(cfg: ExperimentConfig, device: str, threads: ThreadChoice | None = None,
         kernels: KernelChoice | None = None) -> dict:
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
            "git_dirty": bool(git("status", "--porcelain")), "seed": cfg.seed,
            "threads_reason": threads.reason if threads else
            "as the caller set them (no recbench.process.start before this run)",
            "cpu": cpu_model(), "allocator": allocator_setting(),
            "native_kernels": native_status(),
            "kernels": kernels.path if kernels else "unknown",
            "kernels_reason": kernels.reason if kernels else "not recorded"}


def _secondary_rank() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


def _better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if lower_is_better(metric) else value > best


def _save_per_unit(run_dir: Path, result: EvalResult) -> None:
    if result.per_unit:
        tmp = run_dir / ".per_unit.tmp.npz"
        np.savez_compressed(tmp, **result.per_unit)
        tmp.replace(run_dir / "per_unit.npz")


@dataclass
class LoopState:
    """What the loop must carry across an interruption (saved in last.pt).

    ``best``/``best_epoch``/``bad``: the run-wide selection (best.pt). ``members``: the current
    own-selection stage's member records (score, bad, epoch, weights); ``stopped``: stages
    ended early (their remaining epochs are passed over); ``stage_best``: per finished stage,
    the epoch each member's restored weights come from.
    """

    epoch: int = -1
    best: float | None = None
    best_epoch: int = -1
    bad: int = 0
    elapsed: float = 0.0
    members: dict = field(default_factory=dict)
    stopped: list = field(default_factory=list)
    stage_best: dict = field(default_factory=dict)
    test_best: dict = field(default_factory=dict)  # train.track_test: the best test evaluation
    lr_scale: float = 1.0  # train.plateau_decay: the product of the decays applied so far


@dataclass(frozen=True)
class Span:
    """A stage placed on the run's epochs: ``first``..``last`` inclusive."""

    stage: Stage
    first: int
    last: int


def schedule(trainer: Trainer) -> list[Span]:
    """The trainer's stages on the epoch axis; stages with no epochs take no span."""
    spans, start = [], 0
    for stage in trainer.stages():
        if stage.epochs > 0:
            spans.append(Span(stage, start, start + stage.epochs - 1))
            start += stage.epochs
    return spans


def span_of(spans: list[Span], epoch: int) -> Span:
    return next(s for s in spans if s.first <= epoch <= s.last)


def select_members(trainer: Trainer, span: Span, loop: LoopState, epoch: int,
                   val: dict[str, float]) -> bool:
    """Keep each member's best weights on its own monitor; say whether the stage stops early
    (every member ``patience`` validations without improving)."""
    stage = span.stage
    for name, metric in stage.monitors.items():
        rec = loop.members.get(name)
        if rec is None or _better(val[metric], rec["score"], metric):
            state = trainer.member(stage.name, name).state_dict()
            loop.members[name] = {"score": val[metric], "bad": 0, "epoch": epoch,
                                  "state": {k: v.detach().clone() for k, v in state.items()}}
        else:
            rec["bad"] += 1
    return stage.patience is not None and all(
        loop.members[m]["bad"] >= stage.patience for m in stage.monitors)


def end_stage(trainer: Trainer, span: Span, loop: LoopState, stopped: bool) -> None:
    """Restore the stage members' best weights and hand the finished stage to the trainer."""
    name = span.stage.name
    best_epochs = {}
    for member, rec in loop.members.items():
        trainer.member(name, member).load_state_dict(rec["state"])
        best_epochs[member] = rec["epoch"]
    loop.members = {}
    if best_epochs:
        loop.stage_best[name] = best_epochs
    if stopped:
        loop.stopped.append(name)
    trainer.end_stage(name, best_epochs)


def run_epoch(trainer: Trainer, spans: list[Span], loop: LoopState, epoch: int,
              val: dict[str, float] | None) -> bool:
    """Stage bookkeeping after ``epoch`` trained (``val``: its validation metrics, if it was
    validated): own-selection stages select members, and a stage that ends (its last epoch or
    an early stop) restores and is handed to the trainer. Returns whether the stage stopped."""
    span = span_of(spans, epoch)
    stop = bool(span.stage.monitors) and val is not None and select_members(
        trainer, span, loop, epoch, val)
    if stop or epoch == span.last:
        end_stage(trainer, span, loop, stop)
    return stop


def drive(trainer: Trainer, validate: bool | None = None) -> list[dict]:
    """Train every epoch of ``trainer`` in memory with the loop's stage rules, validating each
    epoch (``validate`` None: when the trainer has a validation split); no run-wide selection
    or files. For tests and notebooks: the trainer ends as a run's final weights would."""
    spans = schedule(trainer)
    validate = trainer.has_valid() if validate is None else validate
    loop, history = LoopState(), []
    for epoch in range(sum(s.stage.epochs for s in spans)):
        if span_of(spans, epoch).stage.name in loop.stopped:
            continue
        record = {"epoch": epoch, **trainer.train_epoch(epoch)}
        val = trainer.evaluate("valid").metrics if validate else None
        record.update({f"valid_{k}": v for k, v in (val or {}).items()})
        run_epoch(trainer, spans, loop, epoch, val)
        history.append(record)
    return history


def _open_run_dir(cfg: ExperimentConfig, runs_root: Path, resume: Path | None) -> Path:
    plain = to_plain(cfg)
    if resume is None:
        return runs.create_run_dir(runs_root, cfg.name, run_hash(cfg), plain)
    from recbench.config import hash_plain
    from recbench.errors import RunError

    # keys that change no number (config.HASH_EXCLUDED: paper, seeds, threads) may differ
    if hash_plain(runs.read_config(resume)) != hash_plain(plain):
        raise RunError(f"{resume} was made with a different config; resume it with "
                       "`recbench train --resume RUN`, which reads the run's own config.yaml")
    if runs.is_finished(resume):
        raise RunError(f"{resume} is a finished run; nothing to resume (and it is never "
                       f"overwritten) — `recbench eval {resume}` re-checks it")
    return resume


def _restore(run_dir: Path, built: Built) -> LoopState:
    if not (run_dir / "last.pt").is_file():
        runs.trim_history(run_dir, -1)
        return LoopState()
    state = runs.load_checkpoint(run_dir / "last.pt", built.ctx.device)
    try:
        built.trainer.model.load_state_dict(state["model"])
        built.trainer.load_state_dict(state["trainer"])
        torch.set_rng_state(state["torch_rng"])
        loop = LoopState(**state["loop"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        from recbench.errors import RunError

        raise RunError(f"{run_dir / 'last.pt'} does not fit this run's model "
                       f"({type(exc).__name__}); it is damaged or from another run — train "
                       "again") from None
    if loop.best_epoch >= 0 or (run_dir / "best.pt").exists():
        best = runs.load_checkpoint(run_dir / "best.pt", built.ctx.device)  # fail before writing
        try:
            built.trainer.model.load_state_dict(best["model"], strict=True)
            built.trainer.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            from recbench.errors import RunError

            raise RunError(f"{run_dir / 'best.pt'} does not fit this run's model "
                           f"({type(exc).__name__}); it is from another run — train again") from None
    runs.trim_history(run_dir, loop.epoch)
    return loop


def _checkpoint(run_dir: Path, built: Built, loop: LoopState) -> None:
    runs.save_torch(run_dir / "last.pt", {
        "model": built.trainer.model.state_dict(), "trainer": built.trainer.state_dict(),
        "loop": loop.__dict__, "torch_rng": torch.get_rng_state()})


def _validate(built: Built, run_dir: Path, loop: LoopState, epoch: int, patience: int | None,
              val: dict[str, float]) -> bool:
    """Run-wide selection on validation: keep best.pt, say whether early stopping triggers."""
    if _better(val[built.monitor], loop.best, built.monitor):
        loop.best, loop.best_epoch, loop.bad = val[built.monitor], epoch, 0
        runs.save_torch(run_dir / "best.pt", {"model": built.trainer.model.state_dict(),
                                              "epoch": epoch})
        return False
    loop.bad += 1
    return patience is not None and loop.bad >= patience


def _decay_on_plateau(built: Built, loop: LoopState, train: TrainConfig) -> None:
    """``train.plateau_decay``: after every ``plateau_patience`` validations without improving
    on the run's monitor, scale every learning rate of the trainer's optimisers. The rates live
    in the optimisers' state (last.pt), so a resumed run continues at the decayed rate."""
    if train.plateau_decay is None or loop.bad == 0 or loop.bad % train.plateau_patience:
        return
    for opt in built.trainer.optimizers():
        for group in opt.param_groups:
            group["lr"] *= train.plateau_decay
    loop.lr_scale *= train.plateau_decay


def _decay_at_milestone(built: Built, loop: LoopState, train: TrainConfig, epoch: int) -> None:
    """``train.lr_milestones``: after each listed epoch, scale every learning rate by
    ``lr_gamma`` (the rates live in last.pt, so a resumed run keeps the decayed rate)."""
    if epoch not in train.lr_milestones:
        return
    for opt in built.trainer.optimizers():
        for group in opt.param_groups:
            group["lr"] *= train.lr_gamma
    loop.lr_scale *= train.lr_gamma


def _check_lr_schedule(built: Built, train: TrainConfig, has_valid: bool) -> None:
    """Refuse a learning-rate schedule where it could not act, instead of a silent constant
    rate: ``train.plateau_decay`` without validation, either key on a trainer that runs its own
    schedule, or both keys at once (two rules scaling one rate would be hard to read back)."""
    if train.plateau_decay is None and not train.lr_milestones:
        return
    from recbench.errors import RunError

    if train.plateau_decay is not None and train.lr_milestones:
        raise RunError("train.plateau_decay and train.lr_milestones both scale the learning "
                       "rate; keep one of them")
    if train.lr_milestones:
        if not built.trainer.optimizers():
            raise RunError(f"train.lr_milestones: {type(built.trainer).__name__} runs its own "
                           "schedule, so the loop cannot scale its learning rate; drop the key")
        return
    if not has_valid:
        raise RunError("train.plateau_decay needs a validation split to watch (set "
                       "dataset.valid_ratio, or drop the key)")
    if not built.trainer.optimizers():
        raise RunError(f"train.plateau_decay: {type(built.trainer).__name__} runs its own "
                       "schedule, so the loop cannot scale its learning rate; drop the key")


def _track_test(built: Built, loop: LoopState, epoch: int, record: dict) -> None:
    """The official NGCF/LightGCN code's protocol (``train.track_test``): score test now, keep
    the best test evaluation on the run's monitor. It reads test labels, so it only feeds the
    labelled ``test_selected_*`` figures of metrics.json, never ``best.pt`` or early stopping."""
    t0 = time.perf_counter()
    test = built.trainer.evaluate("test").metrics
    record.update({f"test_{k}": v for k, v in test.items()})
    record["test_seconds"] = time.perf_counter() - t0
    best = loop.test_best.get(built.monitor)
    if built.monitor in test and _better(test[built.monitor], best, built.monitor):
        loop.test_best = {**test, "epoch": epoch}


def _finish(run_dir: Path, built: Built, loop: LoopState, has_valid: bool, run_selects: bool,
            num_epochs: int) -> dict:
    """Evaluate the best (or, on a fixed schedule or with stage-own selection, the final)
    weights on test; metrics.json."""
    model = built.trainer.model
    if not has_valid:  # the paper's fixed schedule: the final epoch is the reported one
        loop.best_epoch = num_epochs - 1
        runs.save_torch(run_dir / "best.pt", {"model": model.state_dict(), "epoch": loop.best_epoch})
    elif not run_selects:  # stages selected their own members: the finished model is reported
        loop.best_epoch = loop.epoch
        loop.best = built.trainer.evaluate("valid").metrics[built.monitor]
        runs.save_torch(run_dir / "best.pt", {"model": model.state_dict(), "epoch": loop.best_epoch})
    model.load_state_dict(runs.load_checkpoint(run_dir / "best.pt", built.ctx.device)["model"])
    t0 = time.perf_counter()
    result = built.trainer.evaluate("test")
    eval_s = time.perf_counter() - t0
    _save_per_unit(run_dir, result)
    epochs_run = loop.epoch + 1
    metrics = {
        "test": result.metrics, "best_epoch": loop.best_epoch, "monitor": built.monitor,
        "best_valid": loop.best, "epochs_run": epochs_run, "train_seconds": loop.elapsed,
        "seconds_per_epoch": loop.elapsed / max(epochs_run, 1), "eval_seconds": eval_s,
        "num_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "extra": built.trainer.extra_metrics(),
    }
    if built.ctx.data.meta.get("data_hash"):  # the split it trained on (issue 31.5)
        metrics["data_hash"] = built.ctx.data.meta["data_hash"]
    if loop.stage_best:
        metrics["stage_best_epochs"] = loop.stage_best
    if loop.test_best:  # train.track_test: the published (test-selected) protocol, labelled
        metrics["extra"].update({f"test_selected_{k}": float(v) for k, v in loop.test_best.items()})
    runs.write_json(run_dir / "metrics.json", metrics)
    return metrics


def train_run(cfg: ExperimentConfig, paths: DataPaths, runs_root: Path, device: str = "cpu",
              resume: Path | None = None, progress: Progress | None = None,
              threads: ThreadChoice | None = None) -> Path:
    """Train one resolved run config into a run directory; returns the finished folder.
    ``threads``: what ``recbench.process.start`` chose for this process (env.json)."""
    built = build(cfg, paths, device, threads)
    if _secondary_rank():  # under torchrun only rank 0 writes the run directory
        import tempfile

        runs_root, resume = Path(tempfile.mkdtemp(prefix="recbench-rank-")), None
    run_dir = _open_run_dir(cfg, runs_root, resume)
    try:
        return _train_in(run_dir, cfg, built, device, resume, progress)
    except BaseException:
        if resume is None and not (run_dir / "last.pt").exists():
            # interrupted or failed before the first checkpoint: nothing to resume, so no
            # .partial left for a study, a tuning trial or a user to trip over
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train_in(run_dir: Path, cfg: ExperimentConfig, built: Built, device: str,
              resume: Path | None, progress: Progress | None) -> Path:
    now = built.ctx.data.meta.get("data_hash")
    if resume is not None and now and runs.started_on(run_dir) not in (None, now):
        from recbench.errors import RunError

        raise RunError(f"{run_dir} was started on other data than the processed split holds "
                       f"now (data hash {runs.started_on(run_dir)}, now {now}); it cannot be "
                       "resumed — train a new run")
    loop = _restore(run_dir, built) if resume is not None else LoopState()  # before any write
    env = {**_env(cfg, device, built.threads, built.kernels), **({"data_hash": now} if now else {})}
    runs.write_json(run_dir / "env.json", env)
    spans = schedule(built.trainer)
    num_epochs = sum(s.stage.epochs for s in spans)
    has_valid = built.trainer.has_valid()
    _check_lr_schedule(built, cfg.train, has_valid)
    run_selects = any(s.stage.monitors is None for s in spans)
    with open(run_dir / "log.txt", "a") as log, tracking.open_tracking(
            [] if _secondary_rank() else cfg.track, run_dir, cfg.name, run_hash(cfg),
            loop.epoch + 1) as tracker:
        tracker.start(to_plain(cfg), env)
        for epoch in range(loop.epoch + 1, num_epochs):
            span = span_of(spans, epoch)
            if span.stage.name in loop.stopped:  # ended early: its other epochs pass over
                continue
            t0 = time.perf_counter()
            record = {"epoch": epoch, **built.trainer.train_epoch(epoch)}
            record["train_seconds"] = time.perf_counter() - t0
            due = (epoch + 1) % cfg.train.eval_every == 0 or epoch == num_epochs - 1
            t_val = time.perf_counter()
            val = built.trainer.evaluate("valid").metrics if has_valid and due else None
            record.update({f"valid_{k}": v for k, v in (val or {}).items()})
            if val is not None:
                record["valid_seconds"] = time.perf_counter() - t_val
            if cfg.train.track_test and due:
                _track_test(built, loop, epoch, record)
            stop = (val is not None and span.stage.monitors is None
                    and _validate(built, run_dir, loop, epoch, cfg.train.patience, val))
            if val is not None and span.stage.monitors is None and not stop:
                _decay_on_plateau(built, loop, cfg.train)
            _decay_at_milestone(built, loop, cfg.train, epoch)
            if cfg.train.plateau_decay is not None or cfg.train.lr_milestones:
                record["lr_scale"] = loop.lr_scale  # the rate the next epoch trains at
            run_epoch(built.trainer, spans, loop, epoch, val)
            loop.elapsed += time.perf_counter() - t0
            loop.epoch = epoch
            runs.append_jsonl(run_dir / "history.jsonl", record)
            tracker.log_epoch(epoch, record)
            log.write(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in record.items()) + "\n")
            log.flush()
            _checkpoint(run_dir, built, loop)
            if progress:
                progress({"epochs": num_epochs, **record, "epoch": epoch + 1,
                          "monitor": built.monitor, "best": loop.best})
            if stop:
                break
        metrics = _finish(run_dir, built, loop, has_valid, run_selects, num_epochs)
        tracker.finish(metrics)
        log.write(f"test {json.dumps(metrics['test'], default=float)}\n")
    return runs.finalize(run_dir)


def load_run_config(run_dir: Path) -> ExperimentConfig:
    """A run's config.yaml, validated and checked against the config hash in the folder name
    (``<stamp>-<hash>``), so a truncated, edited or swapped file is caught before it is used."""
    import re

    from recbench.config import hash_plain, legacy_hash_plain
    from recbench.errors import RunError
    from recbench.experiment import validate

    raw = runs.read_config(run_dir)
    # the hash of the file as written (run_hash of the config then), so runs made before a
    # schema gained a field still match their folder name; folders named before the hash
    # left out the keys of config.HASH_EXCLUDED carry the legacy hash
    try:
        digests = {hash_plain(raw), legacy_hash_plain(raw)}
    except (TypeError, ValueError):
        digests = set()
    digest = min(digests, default=None)
    m = re.search(r"-([0-9a-f]{10})(\.partial)?$", run_dir.name)
    if m and m.group(1) not in digests:
        raise RunError(f"{run_dir / 'config.yaml'} does not match the run (config hash "
                       f"{digest}, folder {m.group(1)}): it was damaged, edited or copied from "
                       "another run — restore it or train again")
    return validate(raw, str(run_dir / "config.yaml"))


def evaluate_run(run_dir: Path, paths: DataPaths, device: str = "cpu") -> tuple[dict, dict]:
    """Reload ``best.pt`` and recompute the test metrics; returns (recomputed, stored)."""
    from recbench.errors import RunError

    stored = runs.read_metrics(run_dir)
    cfg = load_run_config(run_dir)
    built = build(cfg, paths, device)
    state = runs.load_checkpoint(run_dir / "best.pt", built.ctx.device)
    try:
        built.trainer.model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise RunError(f"{run_dir / 'best.pt'} does not fit the model of {run_dir / 'config.yaml'} "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0][:80]}); the files come "
                       "from different runs") from None
    return built.trainer.evaluate("test").metrics, stored["test"]
