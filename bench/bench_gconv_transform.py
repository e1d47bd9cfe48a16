"""GConv-Transform family on next-item prediction: parameters, inference and training-step time.

Every Table 1 model and every N of Table 3 (1 … 22), on the same batch of 96 real ML-100K
histories (L = 30) and the real training-visible item graph: inference = scoring one batch of
96 histories against all 1,682 items (Table 1's "Times" column, our reading); training step =
one optimiser step of each model's own training mode (a batch of 96 windows for the causal
models, 96 samples for the others). Peak RSS after the N = 22 steps is the memory check.
Writes results/bench/gconv_transform.{json,md}.

    python -m bench.bench_gconv_transform [--threads 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench.common import data_paths, peak_rss_mb, write
from recbench.config import DatasetConfig, EvalConfig, TrainConfig
from recbench.data import next_item_task as nt
from recbench.data.prepare import load
from recbench.models import gconv_transform as gm
from recbench.models import seq_baselines as sb
from recbench.train.api import RunContext
from recbench.train.next_item import NextItemData, build_data

B = 96


def models(data: NextItemData, sim: torch.Tensor) -> dict[str, tuple[torch.nn.Module, bool]]:
    """name → (model, trained on windows)."""
    out: dict[str, tuple[torch.nn.Module, bool]] = {}
    for kind in ("svm", "dnn", "cnn", "densenet", "densecnn"):
        cfg = sb.SeqBaselineConfig(name="seq_baseline", kind=kind)
        out[kind] = (sb.build_model(cfg, data), False)

    def gconv(**kw) -> gm.GConvTransform:
        cfg = gm.GConvTransformConfig(name="gconv_transform", **kw)
        return gm.GConvTransform(cfg, data.num_items, sim if cfg.graph or cfg.chebyshev else None)

    out["graph (N=2)"] = (gconv(attention=False), True)
    out["attention = SASRec (N=2)"] = (gconv(graph=False, chebyshev=False, feedforward=True), True)
    for n in (1, 2, 4, 8, 12, 16, 22):
        out[f"gconv-transform N={n}"] = (gconv(num_blocks=n), True)
    return out


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(model: torch.nn.Module, windows: bool, data: NextItemData, win: nt.Windows,
            repeats: int) -> dict:
    hist = data.histories["test"][:B]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)
    inputs, targets = win.inputs[:B], win.targets[:B]
    where = targets > 0
    x_train, y_train = data.histories["train"][:B], data.targets["train"][:B]

    def step() -> None:
        opt.zero_grad()
        if windows:
            loss = F.cross_entropy(model.score_positions(inputs, where), targets[where])
        else:
            loss = F.cross_entropy(model.score_last(x_train), y_train)
        loss.backward()
        opt.step()

    model.train()
    train_ms = median_ms(step, max(repeats // 4, 3))
    model.eval()
    with torch.no_grad():
        infer_ms = median_ms(lambda: model.score_last(hist), repeats)
    return {"params_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
            "infer_ms_per_96": infer_ms, "train_step_ms_per_96": train_ms,
            "peak_rss_mb": peak_rss_mb()}


def chebconv_dense_vs_dgl(data: NextItemData, sim: torch.Tensor, repeats: int) -> dict:
    """One 3-term ChebConv (64 → 64) over 96 history graphs, adjacency built from the batch:
    our dense ``bmm`` path vs ``dgl.graph`` of the 96 graphs + ``dgl.nn.ChebConv`` (which uses
    unweighted symmetric normalisation: the cost comparison, not the same operator). Calls are
    interleaved so that load on a shared machine hits both alike."""
    import dgl
    from dgl.nn import ChebConv

    items = data.histories["test"][:B]
    n = items.shape[1]
    x = torch.randn(B, n, 64)
    dense, cheb = gm.SeqChebConv(64, 64, 3), ChebConv(64, 64, 3, activation=None)

    def run_dense() -> None:
        dense(x, gm.row_normalize(gm.history_adjacency(items, sim)))

    def run_dgl() -> None:
        a = gm.history_adjacency(items, sim)
        b, dst, src = torch.nonzero(a, as_tuple=True)
        g = dgl.graph((src + b * n, dst + b * n), num_nodes=B * n)
        cheb(g, x.reshape(-1, 64), lambda_max=[2.0]).reshape(B, n, 64)

    times: dict[str, list[float]] = {"dense": [], "dgl": []}
    with torch.no_grad():
        for i in range(repeats + 3):
            for name, fn in (("dense", run_dense), ("dgl", run_dgl)):
                t0 = time.perf_counter()
                fn()
                if i >= 3:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ds = load(DatasetConfig(name="ml-100k"), data_paths("ml-100k"))
    ctx = RunContext(ds, TrainConfig(batch_size=B), EvalConfig(k=[10]), torch.device("cpu"), 0)
    data = build_data(ctx, nt.NextItemConfig())
    sim = nt.item_cosine_graph(data.seqs, 20)
    win = nt.training_windows(data.seqs, 30)
    cheb = chebconv_dense_vs_dgl(data, sim, 5 * args.repeats)
    rows = {name: measure(m, w, data, win, args.repeats)
            for name, (m, w) in models(data, sim).items()}
    lines = [f"{args.threads} torch thread(s); median of {args.repeats} passes after 3 warm-up "
             "passes; a batch = 96 real ML-100K test histories (L = 30) scored against all "
             "1,682 items. Training step: 96 windows (causal models) or 96 samples (others). "
             "Compare rows of this table only.", "",
             "| model | params (M) | inference ms / 96 | train step ms / 96 | peak RSS (MB) |",
             "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['params_m']:.4f} | {v['infer_ms_per_96']:.2f} | "
              f"{v['train_step_ms_per_96']:.1f} | {v['peak_rss_mb']:.0f} |" for k, v in rows.items()]
    lines += ["", "One ChebConv (3 terms, 64 → 64) over 96 history graphs, adjacency included, "
              f"interleaved calls: dense `bmm` {cheb['dense']:.2f} ms vs `dgl.graph` + "
              f"`dgl.nn.ChebConv` {cheb['dgl']:.2f} ms (median of {5 * args.repeats})."]
    write("gconv_transform", {"threads": args.threads, "repeats": args.repeats, "rows": rows,
                              "chebconv_ms": cheb}, lines)


if __name__ == "__main__":
    main()
