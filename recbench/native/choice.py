"""Which numeric path a run's step takes, declared by ``train.kernels`` (issue 36).

Why declared: the native kernels and the torch step compute the same function with sums in
another order, so they agree to float rounding, not bit for bit. When the path followed the
thread count, and the default thread count the machine's load at start, one config hash gave
different floats on a busy and on an idle machine. Now ``auto`` looks only at what the run is
(the device, whether the kernels build here, the graph's size), never at threads or load;
``native`` and ``torch`` say it outright. ``native`` asked for where it cannot run is an error
(runner.build), not a silent fallback; env.json records the path each run actually took.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from recbench.memory import LARGE_GRAPH_EDGES
from recbench.native.build import library, status

Path = Literal["native", "torch"]


@dataclass(frozen=True)
class KernelChoice:
    path: Path
    reason: str


def choose_kernels(requested: str, device: torch.device, num_edges: int | None = None
                   ) -> KernelChoice:
    """The path a native-capable step takes for ``train.kernels`` = ``requested``.
    ``num_edges``: the training graph's (None: no graph, BPR-MF). ``auto`` is native on the CPU
    when the kernels build and the graph is below the large-graph mode's size (the CSR product
    was not measured there against DGL's); ``native`` takes them at any size."""
    if requested == "torch":
        return KernelChoice("torch", "asked for (train.kernels: torch)")
    if device.type != "cpu":
        return KernelChoice("torch", f"device {device.type}: the native kernels are CPU code")
    if library() is None:
        return KernelChoice("torch", f"native kernels {status()}")
    if requested == "native":
        return KernelChoice("native", "asked for (train.kernels: native)")
    if num_edges is not None and num_edges >= LARGE_GRAPH_EDGES:
        return KernelChoice("torch", f"auto: graph of {num_edges:,} edges is at or above the "
                                     f"large-graph size ({LARGE_GRAPH_EDGES:,})")
    return KernelChoice("native", "auto: CPU, kernels built"
                        + ("" if num_edges is None else ", graph below the large-graph size"))
