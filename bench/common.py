"""Shared bits of the benchmarks: data paths (fetching from the mirror when needed), output.

bench/ is a package run from the repository root (``python -m bench.bench_x``, as ``make bench``
does), so it imports recbench and ``bench.common`` like any other code, without touching sys.path.
It is the top layer: it may import anything from recbench, and nothing imports it
(tests/test_layers.py).
"""

from __future__ import annotations

import json
import os
import platform
import resource
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DGLBACKEND", "pytorch")


def data_paths(*names: str):
    from recbench.data.datasets import get_dataset
    from recbench.data.fetch import fetch
    from recbench.data.prepare import DataPaths
    from recbench.runs import data_dir

    paths = DataPaths(data_dir())
    mirror = os.environ.get("RECBENCH_MIRROR")
    for name in names:
        fetch(get_dataset(name), paths.raw, Path(mirror) if mirror else None)
    return paths


def machine() -> dict:
    import torch

    from recbench.cpu import cpu_model

    return {"machine": platform.machine(), "processor": platform.processor(),
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1m": os.getloadavg()[0], "torch": torch.__version__}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write(name: str, figures: dict, lines: list[str], out: Path | None = None) -> None:
    out = out if out is not None else ROOT / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    figures = {**figures, "env": machine()}
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2, default=float) + "\n")
    env = figures["env"]
    head = [f"# bench: {name}", "",
            f"machine: {env['cpus']} CPUs ({env['machine']}, {env['cpu_model']}), torch "
            f"{env['torch']} with "
            f"{env['torch_threads']} threads, 1-min load average at the end {env['load_average_1m']:.2f}",
            ""]
    (out / f"{name}.md").write_text("\n".join(head + lines) + "\n")
    print("\n".join(head + lines))
