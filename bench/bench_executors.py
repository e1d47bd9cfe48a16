"""--executor ray vs --executor local on one machine: the 6-run study bpr-emb-size (BPR-MF,
3 sizes x 2 seeds), every run retrained (--rerun) into a scratch runs folder, both executors
running two runs at once with one torch thread each. Paired and alternated, so a change in the
machine's load hits both sides. Target (issue 17): ray no slower than local by more than 10 %.
Also checks that both give the same table."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, data_paths, write

REPEATS = int(os.environ.get("BENCH_REPEATS", "2"))


def timed(args: list[str], runs_dir: Path, results_dir: Path) -> float:
    cmd = [sys.executable, "-m", "recbench", "ablate", "--study", "bpr-emb-size", "--rerun",
           "--threads", "1", "--runs-dir", str(runs_dir), "--results-dir", str(results_dir),
           *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    data_paths("ml-100k")
    scratch = Path(tempfile.mkdtemp(prefix="bench-exec-"))
    sides = {"local --jobs 2": ["--executor", "local", "--jobs", "2"],
             "ray (2 CPUs, 1 per run)": ["--executor", "ray"]}
    times: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(REPEATS):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            folder = scratch / f"{r}-{name.split()[0]}"
            times[name].append(timed(sides[name], folder / "runs", folder / "results"))
    tables = {name: (scratch / f"0-{name.split()[0]}" / "results" / "bpr-emb-size" /
                     "table.csv").read_text() for name in sides}
    local, ray = (statistics.median(times[k]) for k in sides)
    figures = {"seconds": times, "median_local": local, "median_ray": ray,
               "ray_over_local": ray / local, "same_table": len(set(tables.values())) == 1}
    lines = ["6-run study bpr-emb-size, every run retrained, 2 at a time, 1 thread each; "
             f"{REPEATS} alternated repeats (wall seconds of the whole command).", "",
             "| executor | median s | all |", "|---|---|---|"]
    lines += [f"| {k} | {statistics.median(v):.1f} | {', '.join(f'{x:.1f}' for x in v)} |"
              for k, v in times.items()]
    lines += ["", f"ray / local = {ray / local:.2f} (target ≤ 1.10); same table from both: "
              f"{figures['same_table']}"]
    write("executors", figures, lines)


if __name__ == "__main__":
    main()
