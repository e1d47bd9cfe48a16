"""How many torch threads a run uses when nobody said: right on an idle and on a busy machine.

torch's default (every core of the machine) is the worst choice on a shared one: OpenMP
threads spin waiting for a core that is taken, several times slower beside one busy process
(issue 15; figures: docs/benchmarks.md). So the default is derived, once when a run starts, from
- the CPUs this process may use: its affinity mask and its cgroup CPU quota (containers),
- how busy those CPUs are right now (a short /proc/stat sample, not the lagging load average),
- a per-model-family cap where more threads measured no faster even on an idle machine.
``--threads`` / ``train.num_threads`` and a study's ``--jobs`` split still decide when given.
The choice and its reason are written to the run's env.json.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

# Families whose kernels ran no faster with more threads (history: docs/benchmarks.md). A
# family not listed may use every free CPU.
FAMILY_CAPS: dict[str, tuple[int, str]] = {
    # its 40 steps an epoch are dispatch-bound, not arithmetic-bound; the reason keeps its
    # figure because env.json records it with every run's choice
    "bpr_mf": (1, "BPR-MF idle: 0.059 s/epoch at 1 thread vs 0.086 s at 2"),
    "biased_mf": (1, "same embedding-lookup kernels as BPR-MF"),
    "most_popular": (1, "no parallel work"),
}


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def affinity_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 ``cpu.max``, v1 cfs files), or None
    when unlimited or unreadable."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _cpu_times(cpus: set[int] | None) -> tuple[int, int] | None:
    """(total, idle) jiffies summed over ``cpus`` (None: all) from /proc/stat."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    total = idle = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields]
        total += sum(values[:8])  # guest time is already inside user time
        idle += values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (total, idle) if total else None


def busy_cpus(sample_s: float = 0.25) -> float | None:
    """How many of this process's CPUs are busy with other work right now, from two
    /proc/stat readings ``sample_s`` apart (this process sleeps meanwhile, so it does not
    count itself)."""
    try:
        mine: set[int] | None = set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        mine = None
    a = _cpu_times(mine)
    time.sleep(sample_s)
    b = _cpu_times(mine)
    if a is None or b is None or b[0] <= a[0]:
        return None
    n = len(mine) if mine else (os.cpu_count() or 1)
    return max(0.0, (1.0 - (b[1] - a[1]) / (b[0] - a[0])) * n)


def choose_threads(requested: int | None, family: str | None = None,
                   cpus: int | None = None, quota: float | None = None,
                   busy: float | None = None) -> ThreadChoice:
    """The thread count for a run and why (arguments other than ``requested`` and ``family``
    are measured when not given; tests pass them)."""
    if requested:
        return ThreadChoice(requested, "asked for (--threads, train.num_threads or --jobs split)")
    cpus = cpus if cpus is not None else affinity_cpus()
    quota = quota if quota is not None else cgroup_cpus()
    usable = min(cpus, max(1, math.floor(quota))) if quota else cpus
    busy = busy if busy is not None else busy_cpus()
    free = usable if busy is None else max(1, min(usable, round(usable - busy)))
    parts = [f"{usable} usable CPU(s) (affinity {cpus}"
             + (f", cgroup quota {quota:g})" if quota else ")"),
             "load unknown" if busy is None else f"{busy:.1f} busy → {free} free"]
    threads = free
    if family in FAMILY_CAPS:
        cap, why = FAMILY_CAPS[family]
        threads = min(threads, cap)
        parts.append(f"{family} cap {cap}: {why}")
    return ThreadChoice(threads, "; ".join(parts))


def apply_threads(count: int) -> None:
    """Give torch ``count`` threads and bound the BLAS pools of numpy/scipy to the same count.

    Why the BLAS bound: the closed-form models (EASE^R's Cholesky, GF-CF's SVD) run in
    scipy's OpenBLAS, whose pool ignores torch's setting and starts one thread a core; at
    Gowalla size a multi-threaded ``spotrf`` beside another job crashed with SIGSEGV, and it
    oversubscribes the cores ``--threads`` was meant to share. threadpoolctl sets the limit
    in-process, after the libraries are loaded (environment variables would be too late)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(count)
    threadpool_limits(limits=count, user_api="blas")
