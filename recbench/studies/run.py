"""Run a study's planned runs that are not finished yet, on an executor (local processes or
Ray), each as an ordinary run folder found again by its config hash.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from recbench import runs
from recbench.config import run_hash, to_plain
from recbench.executors import Executor, LocalExecutor
from recbench.experiment import stored_hash
from recbench.studies.cells import PlannedRun


def run_planned(plain: dict, data_root: str, runs_root: str, device: str,
                threads: int | None, rerun: bool = False) -> str:
    """Train one planned run, resuming its .partial folder if one exists (the body of
    every executor's call, so it takes plain, picklable arguments). With ``rerun`` a new run
    is trained from the first epoch even when a finished or partial one exists: --rerun used
    to reach this lookup, find the finished run and report it as done (issue 31.4)."""
    from recbench import process
    from recbench.data.prepare import DataPaths
    from recbench.experiment import validate
    from recbench.runner import train_run

    if threads:  # the caller's choice (--threads, or the CPUs split over --jobs) wins;
        # process.start below applies it with the BLAS pools
        plain = {**plain, "train": {**plain.get("train", {}), "num_threads": threads}}
    cfg = validate(plain, plain.get("name", "study run"))
    settings = process.start(cfg, DataPaths(Path(data_root)))  # the executor call's start
    root, h = Path(runs_root), run_hash(cfg)
    with runs.claim(root, cfg.name, h):  # another worker may be training this very config
        if rerun:
            return str(train_run(cfg, DataPaths(Path(data_root)), root, device,
                                 threads=settings.threads))
        from recbench.data.prepare import data_hash

        now = data_hash(cfg.dataset, DataPaths(Path(data_root)))
        finished = runs.find_finished(root, cfg.name, h, rehash=stored_hash, data_hash=now)
        if finished is not None:
            return str(finished)
        partial = runs.find_partial(root, cfg.name, h, rehash=stored_hash, data_hash=now)
        return str(train_run(cfg, DataPaths(Path(data_root)), root, device, partial,
                             threads=settings.threads))


def execute(planned: list[PlannedRun], paths, runs_root: Path, jobs: int = 1,
            rerun: bool = False, device: str = "cpu",
            on_done: Callable[[PlannedRun, str], None] | None = None,
            threads: int | None = None,
            executor: Executor | None = None) -> list[tuple[PlannedRun, str]]:
    """Run every planned run not cached (all with ``rerun``) on ``executor`` (default: local
    processes, ``jobs`` at once); one failure never stops the rest. Planned runs of one
    config (two labels for one setting) are trained once and reported for each."""
    executor = executor or LocalExecutor(jobs=jobs)
    todo = [p for p in planned if rerun or p.cached is None]
    for p in planned:
        if p not in todo and on_done:
            on_done(p, "cached")
    groups: dict[tuple[str, str], list[PlannedRun]] = {}
    for p in todo:
        groups.setdefault((p.cfg.name, p.hash), []).append(p)
    heads = [group[0] for group in groups.values()]
    per_call = executor.threads_per_call(threads)
    calls = [(to_plain(p.cfg), str(Path(paths.root).resolve()), str(Path(runs_root).resolve()),
              device, per_call, rerun) for p in heads]
    failures: list[tuple[PlannedRun, str]] = []

    def on_result(index: int, run_dir: Any, error: BaseException | None) -> None:
        head = heads[index]
        for p in groups[(head.cfg.name, head.hash)]:
            if error is not None:
                failures.append((p, str(error) or type(error).__name__))
            if on_done:
                on_done(p, "failed" if error is not None else _outcome(Path(run_dir)))

    executor.run(run_planned, calls, on_result)
    return failures


def _outcome(run_dir: Path) -> str:
    """'done: <monitor> <value>' for the progress line."""
    m = runs.read_metrics(run_dir)
    value = m["test"].get(m["monitor"])
    return f"done: test {m['monitor']} {value:.4f}" if value is not None else "done"
