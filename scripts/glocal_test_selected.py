"""Final-epoch RMSE beside the best-test-epoch RMSE for each cell of a GLocal-K study.

Why: the paper's figures (and the official code's printed result) are the best *test* epoch of
one run; our headline is the final epoch of the fixed schedule. Putting both side by side for a
study shows which of the paper's curves are an artefact of test-epoch selection (on Douban the
fixed schedule overfits after epoch ≈ 55, so every variant's final-epoch number moves with how
far past its best epoch the schedule runs). The test-selected column is a diagnosis, never a
result: nothing is chosen with it.

Usage: python scripts/glocal_test_selected.py STUDY [--runs runs] [--out results]
Writes results/STUDY/test_selected.md from finished runs only (trains nothing).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from recbench import runs
from recbench.studies import load_study, plan


def rows(study_name: str, runs_root: Path, studies_dir: Path) -> list[list[str]]:
    cells: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for p in plan(load_study(studies_dir, study_name), runs_root):
        if p.cached is None:
            continue
        m = runs.read_metrics(p.cached)
        extra = m.get("extra", {})
        if "test_selected_rmse" not in extra:
            continue
        cells[(p.dataset, p.variant)].append((m["test"]["rmse"], extra["test_selected_rmse"],
                                              extra["test_selected_epoch"]))
    out = []
    for (dataset, variant), vals in cells.items():
        final, selected, epoch = (np.array(v) for v in zip(*vals, strict=True))
        out.append([dataset, variant, str(len(vals)), f"{final.mean():.4f}", f"{selected.mean():.4f}",
                    f"{final.mean() - selected.mean():+.4f}", f"{epoch.mean():.0f}"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--studies-dir", type=Path, default=Path("experiments/studies"))
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    body = rows(args.study, args.runs, args.studies_dir)
    lines = [f"# {args.study}: final epoch vs best test epoch (diagnosis only)", "",
             "Final = the paper's fixed schedule, our headline. Test-selected = the lowest test RMSE "
             "over the epochs of the same run, the figure the official code prints; it uses test "
             "labels, so it is reported only to explain gaps, never as a result.", "",
             "| dataset | variant | seeds | final RMSE | test-selected RMSE | final − selected "
             "| selected epoch |", "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    folder = args.out / args.study
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_selected.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
