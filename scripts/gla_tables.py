"""Study tables for the GLA paper from all-in-one runs (until the studies engine runs them).

One GLA run trains the four representation nets once and reports every representation type
(``metric|TYPE``), every K in ``report_candidates`` (``metric|K<k>``, ``metric|TYPE|K<k>``) and
every N in ``eval.k``. This script reads finished run directories and writes
``results/{representations,candidates,top-n,clusters,dims}/`` (table.md, table.csv, plot.png,
runs.txt) with the paper's numbers beside ours (mean ± std over seeds).

Usage: python scripts/gla_tables.py RUNS_ROOT [--out results]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import yaml

TYPES = ["GD", "GP", "GAD", "GAP", "LD", "LP", "LAD", "LAP", "AD", "AP"]
METRICS = ["recall", "precision", "hr", "arhr"]
PAPER_T23 = {  # Tables 2-3, K = 2, N = 15: recall, precision, HR, ARHR
    "ml-100k": {"GD": (.2230, .2829, .9025, 1.1060), "GP": (.2001, .2294, .8956, .8407),
                "GAD": (.2500, .2961, .9275, 1.1736), "GAP": (.2391, .2919, .9166, 1.1619),
                "LD": (.2965, .3817, .9303, 1.5752), "LP": (.2452, .2896, .9251, 1.1421),
                "LAD": (.2958, .3743, .9298, 1.5077), "LAP": (.2833, .3478, .9406, 1.4750),
                "AD": (.3045, .3858, .9475, 1.5861), "AP": (.3002, .3841, .9428, 1.5759)},
    "yelp-madison": {"GD": (.0797, .0160, .2126, .0671), "GP": (.0790, .0158, .2124, .0591),
                     "GAD": (.0797, .0159, .2124, .0671), "GAP": (.0818, .0164, .2172, .0659),
                     "LD": (.0873, .0174, .2322, .0745), "LP": (.0985, .0197, .2563, .0799),
                     "LAD": (.1008, .0201, .2605, .0835), "LAP": (.0998, .0200, .2589, .0804),
                     "AD": (.1006, .0201, .2600, .0829), "AP": (.1009, .0201, .2609, .0834)},
    "yelp-pittsburgh": {"GD": (.0652, .0130, .1786, .0559), "GP": (.0580, .0116, .1594, .0464),
                        "GAD": (.0652, .0130, .1786, .0559), "GAP": (.0657, .0131, .1785, .0549),
                        "LD": (.0710, .0142, .1903, .0680), "LP": (.0632, .0127, .1709, .0491),
                        "LAD": (.0723, .0144, .1931, .0682), "LAP": (.0705, .0141, .1898, .0642),
                        "AD": (.0722, .0144, .1930, .0681), "AP": (.0727, .0145, .1963, .0731)},
}
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


def representations(runs: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt

    lines = ["# representations — GLA Tables 2-3 (K = 2 candidate clusters, N = 15)", "",
             "Ours: mean ± std over seeds; all ten types come from the same four trained "
             "representation nets of a run (one attention head per attentive type).", ""]
    rows = [["dataset", "type", "seeds"] + [f"{m}@15" for m in METRICS]
            + [f"paper_{m}@15" for m in METRICS]]
    combos = sorted({(r["cfg"]["dataset"]["name"], r["cfg"]["name"]) for r in cluster_runs(runs)
                     if r["cfg"]["dataset"]["name"] in PAPER_T23})
    fig, axes = plt.subplots(1, max(1, len(combos)), figsize=(5 * max(1, len(combos)), 4),
                             squeeze=False)
    axes = axes[0]
    used, ax_i = [], 0
    for ds, name in combos:
        group = [r for r in cluster_runs(runs) if r["cfg"]["dataset"]["name"] == ds
                 and r["cfg"]["name"] == name
                 and r["cfg"]["model"]["num_clusters"] == (10 if "pitts" in ds else 20)
                 and r["cfg"]["model"]["candidate_clusters"] == 2
                 and 15 in r["cfg"]["eval"]["k"]]
        if not group:
            continue
        used += [r["dir"] for r in group]
        main = group[0]["cfg"]["model"]["representation"]
        lines += [f"## {ds} — experiment `{name}` (M = "
                  f"{group[0]['cfg']['model']['num_clusters']}, seeds "
                  f"{sorted(r['cfg']['seed'] for r in group)})", "",
                  "| type | recall@15 | precision@15 | HR@15 | ARHR@15 | paper R / P / HR / ARHR |",
                  "|---|---|---|---|---|---|"]
        ours = []
        for t in TYPES:
            vals = {m: [r["test"][key(m, 15, t, main)] for r in group
                        if key(m, 15, t, main) in r["test"]] for m in METRICS}
            if not vals["recall"]:
                continue
            p = PAPER_T23[ds][t]
            lines.append(f"| {t} | " + " | ".join(stat(vals[m]) for m in METRICS)
                         + f" | {p[0]:.4f} / {p[1]:.4f} / {p[2]:.4f} / {p[3]:.4f} |")
            rows.append([ds, t, len(group)] + [np.mean(vals[m]) for m in METRICS] + list(p))
            ours.append((t, np.mean(vals["recall"]), p[0]))
        singles = max(v for t, v, _ in ours if t in ("GD", "GP", "LD", "LP"))
        best_att = {t: v for t, v, _ in ours if t in ("AD", "AP")}
        verdict = ", ".join(f"{t} {v:.4f} {'>' if v > singles else '≤'} best single {singles:.4f}"
                            for t, v in best_att.items())
        lines += ["", f"Central claim (attentive beats every single space): {verdict}.", ""]
        ax = axes[ax_i]
        ax_i += 1
        x = np.arange(len(ours))
        ax.bar(x - 0.2, [v for _, v, _ in ours], 0.4, label="ours")
        ax.bar(x + 0.2, [p for _, _, p in ours], 0.4, label="paper")
        ax.set_xticks(x, [t for t, _, _ in ours], rotation=45)
        ax.set_title(f"{name}: recall@15", fontsize=9)
        ax.legend()
    fig.tight_layout()
    write(out, "representations", lines, rows, used)
    fig.savefig(out / "representations" / "plot.png", dpi=110)
    plt.close(fig)


def candidates(runs: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt

    lines = ["# candidates — recall@20 vs K candidate clusters (GLA Figure 4 x-axis)", "",
             "The paper gives this as a figure only (no numbers). Ours: one trained model per "
             "seed evaluated at K = 1..5; candidate fraction = pool after masking / items.", ""]
    rows = [["dataset", "M", "type"] + [f"K{k}" for k in range(1, 6)]]
    used = []
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for r in cluster_runs(runs):
        if 20 in r["cfg"]["eval"]["k"] and r["cfg"]["model"].get("report_candidates"):
            ds, m = r["cfg"]["dataset"]["name"], r["cfg"]["model"]["num_clusters"]
            group = groups.setdefault((ds, m, r["cfg"]["name"]), [])
            if r["cfg"]["seed"] not in {g["cfg"]["seed"] for g in group}:
                group.append(r)  # one run per seed (all-in-one and study runs may coincide)
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(5 * max(1, len(groups)), 4),
                             squeeze=False)
    for ax, ((ds, m, name), group) in zip(axes[0], sorted(groups.items()), strict=False):
        used += [r["dir"] for r in group]
        main = group[0]["cfg"]["model"]["representation"]
        lines += [f"## {ds}, M = {m}, experiment `{name}` (seeds "
                  f"{sorted(r['cfg']['seed'] for r in group)})", "",
                  "| type | " + " | ".join(f"K = {k}" for k in range(1, 6)) + " |",
                  "|---|" + "---|" * 5]
        for t in ["GD", "GP", "LD", "LP", "AD", "AP"]:
            vals = [[r["test"].get(key("recall", 20, t, main, k)) for r in group]
                    for k in range(1, 6)]
            if any(v is None for row in vals for v in row):
                continue
            lines.append(f"| {t} | " + " | ".join(stat(v) for v in vals) + " |")
            rows.append([ds, m, t] + [np.mean(v) for v in vals])
            ax.plot(range(1, 6), [np.mean(v) for v in vals], marker="o", label=t)
        frac = [[r["test"].get(f"candidate_fraction|K{k}") for r in group] for k in range(1, 6)]
        if all(v is not None for row in frac for v in row):
            lines.append("| candidate fraction | " + " | ".join(
                f"{np.mean(v):.4f} (K/M {k / m:.3f})" for k, v in zip(range(1, 6), frac,
                                                                      strict=True)) + " |")
        lines.append("")
        ax.set_title(f"{name}, M = {m}", fontsize=9)
        ax.set_xlabel("K candidate clusters")
        ax.set_ylabel("recall@20")
        ax.legend()
    fig.tight_layout()
    write(out, "candidates", lines, rows, used)
    fig.savefig(out / "candidates" / "plot.png", dpi=110)
    plt.close(fig)
    clusters_table(groups, out)


def clusters_table(groups: dict, out: Path) -> None:
    import matplotlib.pyplot as plt

    lines = ["# clusters — number of k-means clusters M (GLA Figure 4)", "",
             "recall@20 at K = 1..5 for AD per M; the paper gives the figure only and chooses "
             "M = 20 (ML-100K, Madison), 10 (Pittsburgh).", "",
             "| dataset | M | " + " | ".join(f"K = {k}" for k in range(1, 6)) + " |",
             "|---|---|" + "---|" * 5]
    rows = [["dataset", "M"] + [f"K{k}" for k in range(1, 6)]]
    used = []
    datasets = sorted({ds for ds, _, _ in groups})
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5 * max(1, len(datasets)), 4),
                             squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=False):
        for (d, m, name), group in sorted(groups.items()):
            if d != ds or "intra" in name:  # the paper-recipe runs only
                continue
            used += [r["dir"] for r in group]
            main = group[0]["cfg"]["model"]["representation"]
            vals = [[r["test"][key("recall", 20, "AD", main, k)] for r in group]
                    for k in range(1, 6)]
            lines.append(f"| {ds} | {m} | " + " | ".join(stat(v) for v in vals) + " |")
            rows.append([ds, m] + [np.mean(v) for v in vals])
            ax.plot(range(1, 6), [np.mean(v) for v in vals], marker="o", label=f"M = {m}")
        ax.set_title(f"{ds}: AD recall@20")
        ax.set_xlabel("K candidate clusters")
        ax.legend()
    fig.tight_layout()
    write(out, "clusters", lines, rows, used)
    fig.savefig(out / "clusters" / "plot.png", dpi=110)
    plt.close(fig)


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
    representations(runs, args.out)
    candidates(runs, args.out)
    top_n(runs, args.out)
    dims(runs, args.out)


if __name__ == "__main__":
    main()
