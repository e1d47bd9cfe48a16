"""Run a GConv-Transform study with a chosen subset of its seeds and write the extra columns.

``recbench ablate --study NAME`` runs every seed of a study; on a shared 2-core machine this
script runs the same plan with fewer seeds (``--seeds 0``), writes the engine's table/plot, and
adds ``results/NAME/extra.md``: the paper's other Table 1 columns (inference ms per batch of 96,
parameters in millions) beside accuracy@1/@3 and the majority-class floor, from each run's
``metrics.json``. ``--extras-only`` rewrites the tables from finished runs without training.

    python bench/gconv_studies.py --study gconv-table1 --seeds 0
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from recbench import report, runs, studies
from recbench.data.prepare import DataPaths


def extra_table(result: studies.StudyResult, seeds: list[int]) -> str:
    cols = ["accuracy@1", "accuracy@3", "infer ms / 96", "params (M)", "epochs", "s / epoch"]
    lines = [f"# {result.study.study}: all Table 1 columns", "",
             f"Test split, mean over seeds {seeds} (finished runs only). Inference: median "
             "wall time of one forward pass on a test batch of 96 after warm-up, CPU, "
             "1 torch thread, measured while other jobs shared the 2 cores (compare rows of "
             "this table only). Majority floor: always predict the most frequent training "
             "genre(s).", "",
             "| variant | seeds | " + " | ".join(cols) + " | paper acc |", "|---" * (len(cols) + 3) + "|"]
    floor: dict[str, float] = {}
    for cell in result.cells:
        metrics = [runs.read_metrics(d) for d in cell.run_dirs]
        if not metrics:
            lines.append(f"| {cell.variant} | 0 | " + " | ".join(["(not run)"] * len(cols))
                         + f" | {cell.paper if cell.paper is not None else ''} |")
            continue

        def mean(get, rows=metrics) -> float:
            return statistics.fmean(get(m) for m in rows)

        vals = [mean(lambda m: m["test"]["accuracy@1"]), mean(lambda m: m["test"]["accuracy@3"]),
                mean(lambda m: m["extra"]["inference_ms_per_batch"]),
                mean(lambda m: m["extra"]["params_m"]), mean(lambda m: m["epochs_run"]),
                mean(lambda m: m["seconds_per_epoch"])]
        fmt = ["{:.4f}", "{:.4f}", "{:.2f}", "{:.4f}", "{:.1f}", "{:.0f}"]
        paper = "" if cell.paper is None else f"{cell.paper:.3f}"
        lines.append(f"| {cell.variant} | {len(metrics)} | "
                     + " | ".join(f.format(v) for f, v in zip(fmt, vals, strict=True))
                     + f" | {paper} |")
        floor = {k: metrics[0]["extra"][k] for k in ("majority_accuracy@1", "majority_accuracy@3")}
    if floor:
        lines.append(f"| majority floor | – | {floor['majority_accuracy@1']:.4f} | "
                     f"{floor['majority_accuracy@3']:.4f} | – | – | – | – | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", required=True)
    ap.add_argument("--seeds", default=None, help="comma-separated subset of the study's seeds")
    ap.add_argument("--variants", default=None, help="comma-separated subset of variant labels")
    ap.add_argument("--extras-only", action="store_true")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--results", default="results")
    args = ap.parse_args()
    study = studies.load_study(Path("experiments/studies"), args.study)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(study.seeds or [0])
    study = study.model_copy(update={"seeds": seeds})
    runs_root = Path(args.runs)
    planned = studies.plan(study, runs_root)
    if not args.extras_only:
        wanted = set(args.variants.split(",")) if args.variants else None
        todo = [p for p in planned if wanted is None or p.variant in wanted]
        paths = DataPaths(Path(os.environ.get("RECBENCH_DATA", "data")))
        failures = studies.execute(todo, paths, runs_root, on_done=lambda p, o: print(
            f"{p.variant} seed {p.seed}: {o}", flush=True))
        for p, msg in failures:
            print(f"FAILED {p.variant} seed {p.seed}: {msg}", flush=True)
    result = studies.aggregate(study, studies.plan(study, runs_root))
    out = report.write_study(result, Path(args.results) / study.study)
    (out / "extra.md").write_text(extra_table(result, seeds))
    print((out / "table.md").read_text())
    print((out / "extra.md").read_text())


if __name__ == "__main__":
    main()
