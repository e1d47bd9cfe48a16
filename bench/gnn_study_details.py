"""Per-run details of a finished study: seconds per epoch, epochs, and every @20 test metric.

The study table shows one metric; the sampling study also needs time per epoch. Reads
results/STUDY/runs.txt and each listed run's metrics.json; writes results/STUDY/details.md.

    python bench/gnn_study_details.py sampling [gnn-zoo ...]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def details(study: str) -> str:
    folder = ROOT / "results" / study
    rows = ["| experiment | variant | s/epoch | epochs run | best epoch | Recall@20 | NDCG@20 "
            "| HR@20 |", "|---|---|---|---|---|---|---|---|"]
    cell = ("", "")
    for line in (folder / "runs.txt").read_text().splitlines():
        if line.startswith("["):
            base, variant = line.strip("[]").split(" | ")
            cell = (base, variant)
            continue
        run = Path(line.strip())
        if not run.is_absolute():
            run = ROOT / run
        if not (run / "metrics.json").is_file():
            continue
        m = json.loads((run / "metrics.json").read_text())
        t = m["test"]
        rows.append(f"| {cell[0]} | {cell[1]} | {m['seconds_per_epoch']:.2f} | {m['epochs_run']} "
                    f"| {m['best_epoch']} | {t.get('recall@20', float('nan')):.4f} "
                    f"| {t.get('ndcg@20', float('nan')):.4f} | {t.get('hr@20', float('nan')):.4f} |")
    load = os.getloadavg()[0]
    head = [f"# {study}: per-run details", "",
            "Seconds per epoch include the epoch's training only (evaluation excluded); runs "
            "shared 2 CPU cores with other jobs (load average about 6-7 while they ran; "
            f"{load:.1f} when this file was written), so times compare only roughly.", ""]
    return "\n".join(head + rows) + "\n"


if __name__ == "__main__":
    for name in sys.argv[1:]:
        text = details(name)
        (ROOT / "results" / name / "details.md").write_text(text)
        print(text)
