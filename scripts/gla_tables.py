"""GLA tables the studies engine cannot write yet: the N sweep and the 32/64/128 table.

One GLA run reports every representation type (``metric|TYPE``), every K in
``report_candidates`` and every N in ``eval.k``. The per-type and per-K tables are written by the
studies (``rows:`` in experiments/studies/{representations,representations-loo,candidates}.yaml;
clusters by its own study); this script only writes ``results/{top-n,dims}/`` (several metric
keys per row, which a study's single metric cannot hold yet).

Usage: python scripts/gla_tables.py RUNS_ROOT [--out results]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import yaml

METRICS = ["recall", "precision", "hr", "arhr"]
PAPER_T6 = {"ml-100k": {"AP": {32: (.6501, .4011), 64: (.7243, .4944), 128: (.6999, .4538)},
                        "AD": {32: (.6426, .3787), 64: (.7063, .4675), 128: (.6903, .3902)},
                        "NeuMF": {32: (.6405, .3679), 64: (.6617, .3834), 128: (.6490, .3766)}},
            "yelp-madison": {"AP": {32: (.6275, .3357), 64: (.6361, .4672), 128: (.7079, .5729)},
                             "AD": {32: (.6304, .3518), 64: (.6477, .4601), 128: (.7010, .5819)},
                             "NeuMF": {32: (.6383, .3917), 64: (.6502, .3986),
                                       128: (.6556, .4104)}}}


def load_runs(root: Path) -> list[dict]:
    runs = []
    for metrics in sorted(root.glob("*/*/metrics.json")):
        cfg = yaml.safe_load((metrics.parent / "config.yaml").read_text())
        runs.append({"dir": metrics.parent, "cfg": cfg, "test": json.loads(
            metrics.read_text())["test"]})
    return runs


def key(metric: str, n: int, rep: str, main: str, k: int | None = None) -> str:
    base = f"{metric}@{n}" + ("" if rep == main else f"|{rep}")
    return base + (f"|K{k}" if k is not None else "")


def stat(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def write(out: Path, name: str, lines: list[str], rows: list[list], runs: list[Path]) -> None:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.md").write_text("\n".join(lines) + "\n")
    with open(folder / "table.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (folder / "runs.txt").write_text("\n".join(str(r) for r in runs) + "\n")


def cluster_runs(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["cfg"]["model"]["name"] == "gl_attention"
            and r["cfg"]["dataset"].get("protocol") != "loo"]


def top_n(runs: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt

    ns = [5, 10, 15, 20, 25, 30]
    lines = ["# top-n — metrics vs list length N at K = 2 (GLA Figures 5-7)", "",
             "The paper gives figures only. Ours: mean over seeds.", ""]
    rows = [["dataset", "type", "metric"] + [f"N{n}" for n in ns]]
    used = []
    groups: dict[str, list[dict]] = {}
    for r in cluster_runs(runs):
        m = r["cfg"]["model"]
        if set(ns) <= set(r["cfg"]["eval"]["k"]) and m["candidate_clusters"] == 2 and \
                m["num_clusters"] == (10 if "pitts" in r["cfg"]["dataset"]["name"] else 20):
            groups.setdefault(r["cfg"]["name"], []).append(r)
    fig, axes = plt.subplots(max(1, len(groups)), 4, figsize=(18, 4 * max(1, len(groups))),
                             squeeze=False)
    for row_axes, (ds, group) in zip(axes, sorted(groups.items()), strict=False):
        used += [r["dir"] for r in group]
        main = group[0]["cfg"]["model"]["representation"]
        for metric, ax in zip(METRICS, row_axes, strict=True):
            lines += [f"## {ds}: {metric}", "", "| type | " + " | ".join(
                f"N = {n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
            for t in ["GD", "GP", "LD", "LP", "AD", "AP"]:
                vals = [[r["test"].get(key(metric, n, t, main)) for r in group] for n in ns]
                if any(v is None for row in vals for v in row):
                    continue
                lines.append(f"| {t} | " + " | ".join(f"{np.mean(v):.4f}" for v in vals) + " |")
                rows.append([ds, t, metric] + [np.mean(v) for v in vals])
                ax.plot(ns, [np.mean(v) for v in vals], marker="o", label=t)
            lines.append("")
            ax.set_title(f"{ds}: {metric}@N")
            ax.set_xlabel("N")
            ax.legend(fontsize=7)
    fig.tight_layout()
    write(out, "top-n", lines, rows, used)
    fig.savefig(out / "top-n" / "plot.png", dpi=110)
    plt.close(fig)


def dims(runs: list[dict], out: Path) -> None:
    lines = ["# dims — leave-one-out HR@10 / NDCG@10 vs representation size (GLA Table 6)", "",
             "| dataset | method | size | HR@10 | NDCG@10 | paper HR / NDCG | seeds |",
             "|---|---|---|---|---|---|---|"]
    rows = [["dataset", "method", "size", "hr@10", "ndcg@10", "paper_hr", "paper_ndcg"]]
    used = []
    loo = [r for r in runs if r["cfg"]["dataset"].get("protocol") == "loo"]
    table: dict[tuple, list[dict]] = {}
    for r in loo:
        m = r["cfg"]["model"]
        ds = r["cfg"]["dataset"]["name"]
        if m["name"] == "gl_attention":
            for t in [m["representation"]] + m.get("extra_representations", []):
                table.setdefault((ds, t, m["out_dim"], t == m["representation"]), []).append(r)
        else:
            table.setdefault((ds, {"neumf": "NeuMF", "bpr_mf": "BPR-MF"}.get(m["name"], m["name"]),
                              m["emb_dim"], True), []).append(r)
    for (ds, method, size, is_main), group in sorted(table.items(), key=lambda kv: str(kv[0])):
        suffix = "" if is_main else f"|{method}"
        hr = [r["test"][f"hr@10{suffix}"] for r in group]
        nd = [r["test"][f"ndcg@10{suffix}"] for r in group]
        paper = PAPER_T6.get(ds, {}).get(method, {}).get(size)
        ptxt = f"{paper[0]:.4f} / {paper[1]:.4f}" if paper else "—"
        lines.append(f"| {ds} | {method} | {size} | {stat(hr)} | {stat(nd)} | {ptxt} | "
                     f"{sorted(r['cfg']['seed'] for r in group)} |")
        rows.append([ds, method, size, np.mean(hr), np.mean(nd)] + list(paper or ("", "")))
        used += [r["dir"] for r in group]
    write(out, "dims", lines, rows, sorted(set(used)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path)
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args()
    runs = load_runs(args.runs)
    top_n(runs, args.out)
    dims(runs, args.out)


if __name__ == "__main__":
    main()
