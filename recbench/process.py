"""Process-wide settings, applied once where a process (or an executor's call) starts.

torch's thread count with the BLAS pools (:mod:`recbench.threads`) and glibc's allocator
(:mod:`recbench.memory`) belong to the process, not to a run or a model: they used to be set
from ``runner.build`` and the GNN builder, so whatever else the process did changed with the
model it built last. Now the entries call :func:`start` before they train: the CLI's ``train``
and ``eval``, every executor call (``studies.run_planned`` in a pool worker, a Ray worker or
this process; a tuning trial), the benchmarks. ``runner.build`` only records what was set
(env.json: ``threads``, ``threads_reason``, ``allocator``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from recbench.config import ExperimentConfig
from recbench.data.prepare import DataPaths, resolve
from recbench.memory import LARGE_GRAPH_EDGES, keep_freed_memory, reuse_freed_memory
from recbench.threads import ThreadChoice, apply_threads, choose_threads


@dataclass(frozen=True)
class ProcessSettings:
    """What :func:`start` applied: the thread choice and whether the large-graph mode is on."""

    threads: ThreadChoice
    large_graph: bool


def start(cfg: ExperimentConfig, paths: DataPaths) -> ProcessSettings:
    """Apply the settings the run ``cfg`` asks of its process: its thread count
    (``train.num_threads``, else chosen from the free CPUs and the model family's cap), the
    every-run allocator setting, and the large-graph allocator mode for a full-graph GNN whose
    message graph reaches :data:`~recbench.memory.LARGE_GRAPH_EDGES`. Changes no number."""
    threads = choose_threads(cfg.train.num_threads, cfg.model.name)
    apply_threads(threads.threads)
    reuse_freed_memory()  # no page faults for every step's tensors: recbench/memory.py
    large = needs_large_graph_mode(cfg, paths)
    if large:
        keep_freed_memory()  # 1.9x a large-graph step: recbench/memory.py
    return ProcessSettings(threads, large)


def needs_large_graph_mode(cfg: ExperimentConfig, paths: DataPaths) -> bool:
    """A full-graph GNN on a split whose bidirected training graph (2 edges per training
    interaction) reaches the large-graph size, read from the processed split's meta.json (a
    split not yet processed counts as small: the setting only changes speed)."""
    from recbench.models.gnn.base import GNNArchitecture

    if not isinstance(cfg.model, GNNArchitecture) or cfg.model.training != "full":
        return False
    try:
        meta = paths.processed_dir(resolve(cfg.dataset)) / "meta.json"
        train = json.loads(meta.read_text())["counts"]["train"]
    except (OSError, ValueError, KeyError):
        return False
    return 2 * int(train) >= LARGE_GRAPH_EDGES
