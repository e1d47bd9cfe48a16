"""GConv-Transform's Table 1 baselines and the floors, on the same next-item samples.

One registry entry, ``seq_baseline``, with a ``kind`` key, so a study varies one key. Every
learned kind maps a left-padded history (B, L) to scores over all items (column 0 = pad):

- svm: a linear map of the bag of the last L items (multi-class hinge loss, Crammer-Singer);
- dnn: MLP over the mean history embedding, dot product with the item embeddings;
- cnn: Caser (Tang & Wang 2018) horizontal + vertical convolutions over the L × d matrix;
- densenet / densecnn: densely connected 1-D convolutions over the sequence (3 / 1 blocks).

"Graph" and "Attention" are GConv-Transform with a part switched off (no separate code). The
floors learn nothing: popularity, first-order Markov (transition counts from the last item) and
item-kNN (summed cosine similarity to the history), all counted on training-visible data only,
ties broken by popularity.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from recbench.config import NonNegInt, PosInt, Share, Strict
from recbench.data import next_item_task as nt
from recbench.errors import ConfigError
from recbench.seeding import drawing_from, init_generator
from recbench.train.api import RunContext
from recbench.train.next_item import NextItemData, NextItemTrainer, build_data

Decay = Annotated[float, Field(gt=0, le=1)]
Kind = Literal["svm", "dnn", "cnn", "densenet", "densecnn", "popularity", "markov", "itemknn"]
FLOORS = ("popularity", "markov", "itemknn")


class SeqBaselineConfig(Strict):
    name: Literal["seq_baseline"]
    kind: Kind = "dnn"
    hidden: PosInt = 64  # item embedding width (dnn, cnn, densenet, densecnn)
    mlp_hidden: PosInt = 256  # dnn
    num_layers: NonNegInt = 2  # dnn hidden layers
    horizontal: list[PosInt] = [2, 3, 4]  # cnn: horizontal filter heights
    num_horizontal: NonNegInt = 16  # cnn: filters per height
    num_vertical: NonNegInt = 4  # cnn
    # cnn: how Caser's filters are computed. conv2d: torch's Conv2d (mkldnn), every run before
    # the key. matmul: the same sums as one matrix product over the unfolded windows, with the
    # same parameters and draws; ~10× faster a step at 1 thread (mkldnn's backward of an h × d
    # filter over 5 × 50 inputs dominated the ML-1M epoch), floats differ in the last bits, so
    # it is hashed like any value other than the default
    cnn_path: Literal["conv2d", "matmul"] = "conv2d"
    channels: PosInt = 64  # densenet / densecnn stem width
    growth: PosInt = 32  # densenet / densecnn
    dense_blocks: PosInt = 3  # densenet (densecnn: 1)
    dense_layers: PosInt = 3  # layers per dense block
    kernel_size: PosInt = 3
    dropout: Share = 0.2
    knn_neighbours: PosInt | list[PosInt] = 100  # itemknn: neighbours kept per item
    # itemknn recency: sum over the last W items (0: all), the k-th latest weighted decay^(k-1).
    # Lists: every (neighbours, W, decay) is scored on validation, the best NDCG@10 is kept
    knn_windows: list[NonNegInt] = Field(default=[0], min_length=1)
    knn_decays: list[Decay] = Field(default=[1.0], min_length=1)
    next_item: nt.NextItemConfig = nt.NextItemConfig()

    @model_validator(mode="after")
    def _cnn_path_for_cnn(self) -> SeqBaselineConfig:
        if self.cnn_path != "conv2d" and self.kind != "cnn":
            raise ValueError(f"model.cnn_path applies to kind cnn (Caser), not {self.kind}; "
                             "drop it")
        return self


class ItemEmbedding(nn.Module):
    """Item table (pad row 0) initialised N(0, 0.02) and the shared dot-product scorer."""

    def __init__(self, num_items: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_items + 1, dim) * 0.02)

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        return self.weight[items] * (items > 0).unsqueeze(-1)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight.T


class BagSVM(nn.Module):
    """Linear scores W · bag(history) + b; W is (I + 1) × (I + 1)."""

    def __init__(self, num_items: int):
        super().__init__()
        self.bag = nn.EmbeddingBag(num_items + 1, num_items + 1, mode="sum", padding_idx=0)
        nn.init.zeros_(self.bag.weight)
        self.bias = nn.Parameter(torch.zeros(num_items + 1))

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        return self.bag(histories) + self.bias


class MeanMLP(nn.Module):
    def __init__(self, cfg: SeqBaselineConfig, num_items: int):
        super().__init__()
        self.items = ItemEmbedding(num_items, cfg.hidden)
        dims = [cfg.hidden] + [cfg.mlp_hidden] * cfg.num_layers
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(cfg.dropout)]
        self.mlp = nn.Sequential(*layers, nn.Linear(dims[-1], cfg.hidden))

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        e = self.items.embed(histories)
        mean = e.sum(1) / (histories > 0).sum(1, keepdim=True).clamp_min(1)
        return self.items.scores(self.mlp(mean))


class Caser(nn.Module):
    """Horizontal filters (h × d, max-pooled over time) and vertical filters (L × 1).

    ``cnn_path: matmul`` computes the very filters of the Conv2d modules as matrix products:
    a horizontal filter of height h is a linear map of each window of h rows (h·d values), a
    vertical filter a weighted sum over the L rows per column. Same modules, same state dict."""

    def __init__(self, cfg: SeqBaselineConfig, num_items: int):
        super().__init__()
        d, n = cfg.hidden, cfg.next_item.max_len
        self.items = ItemEmbedding(num_items, d)
        self.horizontal = nn.ModuleList(nn.Conv2d(1, cfg.num_horizontal, (h, d))
                                        for h in cfg.horizontal)
        self.vertical = nn.Conv2d(1, cfg.num_vertical, (n, 1))
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.num_horizontal * len(cfg.horizontal) + cfg.num_vertical * d, d)
        self.matmul = cfg.cnn_path == "matmul"

    def _filters(self, e: torch.Tensor) -> list[torch.Tensor]:
        """Each height's max-pooled filter outputs (B, C) and the vertical ones (B, C_v · d)."""
        if not self.matmul:
            e4 = e.unsqueeze(1)  # (B, 1, L, d)
            return [*(torch.relu(conv(e4)).squeeze(3).amax(2) for conv in self.horizontal),
                    self.vertical(e4).flatten(1)]
        out = []
        for conv in self.horizontal:
            h = conv.kernel_size[0]
            windows = e.unfold(1, h, 1).transpose(2, 3).flatten(2)  # (B, L-h+1, h·d)
            y = windows @ conv.weight.flatten(1).T + conv.bias  # (B, L-h+1, C)
            out.append(torch.relu(y).amax(1))
        w = self.vertical.weight[:, 0, :, 0]  # (C_v, L)
        v = torch.einsum("cl,bld->bcd", w, e) + self.vertical.bias[:, None]
        return out + [v.flatten(1)]

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        e = self.items.embed(histories)  # (B, L, d)
        z = torch.relu(self.fc(self.drop(torch.cat(self._filters(e), 1))))
        return self.items.scores(z)


class DenseBlock(nn.Module):
    def __init__(self, channels: int, growth: int, layers: int, kernel: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Conv1d(channels + i * growth, growth, kernel, padding=kernel // 2)
            for i in range(layers))
        self.out_channels = channels + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.layers:
            x = torch.cat([x, conv(torch.relu(x))], 1)
        return x


class DenseNet1d(nn.Module):
    """Stem conv → dense blocks with 1 × 1 transitions → max over positions → item space."""

    def __init__(self, cfg: SeqBaselineConfig, num_items: int, blocks: int):
        super().__init__()
        d = cfg.hidden
        self.items = ItemEmbedding(num_items, d)
        self.stem = nn.Conv1d(d, cfg.channels, cfg.kernel_size, padding=cfg.kernel_size // 2)
        layers: list[nn.Module] = []
        c = cfg.channels
        for b in range(blocks):
            block = DenseBlock(c, cfg.growth, cfg.dense_layers, cfg.kernel_size)
            layers.append(block)
            c = block.out_channels
            if b < blocks - 1:
                layers.append(nn.Sequential(nn.ReLU(), nn.Conv1d(c, cfg.channels, 1)))
                c = cfg.channels
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * c, d)

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(self.items.embed(histories).transpose(1, 2)))
        x = torch.relu(x)
        z = self.head(self.drop(torch.cat([x.amax(2), x[:, :, -1]], 1)))
        return self.items.scores(z)


class CountFloor(nn.Module):
    """A floor scored from counts: ``popularity`` alone, or a per-item table (Markov
    transitions from the last item, kNN similarities summed over the history) + a popularity
    tie-break far below one count.

    Scores are float64: in float32 a count of 1 has an ulp of 1.2e-7, so ``1e-6 · pop / max``
    keeps only about 9 distinct values and most equal counts stay tied (ranked against the
    target). In float64 every distinct popularity stays distinct up to counts of ~10⁶.

    item-kNN sums the similarity rows of the last ``window`` items (0: the whole history), the
    k-th most recent weighted ``decay ** (k - 1)``; decay 1 and window 0 is the plain sum."""

    def __init__(self, kind: str, popularity: torch.Tensor, table: torch.Tensor | None):
        super().__init__()
        self.kind = kind
        pop = popularity.double()
        self.register_buffer("tie", pop / pop.max().clamp_min(1) * 1e-6)
        if table is not None and kind == "itemknn":
            table = table.double()  # similarities are summed: keep the sum exact to 1e-16
        self.register_buffer("table", table if table is not None else torch.zeros(0))
        self.window, self.decay = 0, 1.0

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        base = self.tie.expand(len(histories), -1)
        if self.kind == "popularity":
            return base.clone()
        if self.kind == "markov":
            return self.table[histories[:, -1]].double() + base
        recent = histories[:, -self.window:] if self.window else histories  # itemknn
        lag = torch.arange(recent.shape[1] - 1, -1, -1, device=recent.device)  # 0 = last item
        weight = (self.decay ** lag.double()).expand_as(recent) * (recent > 0)
        rows = torch.arange(len(recent), device=recent.device).repeat_interleave(recent.shape[1])
        bag = torch.sparse_coo_tensor(torch.stack([rows, recent.flatten()]), weight.flatten(),
                                      (len(recent), self.table.shape[0]))
        return torch.sparse.mm(bag, self.table) + base  # Σ_k weight_k · table[item_k]


def markov_table(data: NextItemData) -> torch.Tensor:
    n = data.num_items + 1
    pairs = torch.as_tensor(data.seqs.visible_pairs())
    table = torch.zeros(n, n)
    table.index_put_((pairs[:, 0], pairs[:, 1]), torch.ones(len(pairs)), accumulate=True)
    return table


def build_model(cfg: SeqBaselineConfig, data: NextItemData) -> nn.Module:
    n = data.num_items
    if cfg.kind in FLOORS:
        pop = nt.visible_popularity(data.seqs)
        table = {"popularity": lambda: None, "markov": lambda: markov_table(data),
                 "itemknn": lambda: nt.item_cosine_graph(data.seqs, _as_list(cfg.knn_neighbours)[0])
                 }[cfg.kind]()
        return CountFloor(cfg.kind, pop, table)
    return {"svm": lambda: BagSVM(n), "dnn": lambda: MeanMLP(cfg, n), "cnn": lambda: Caser(cfg, n),
            "densenet": lambda: DenseNet1d(cfg, n, cfg.dense_blocks),
            "densecnn": lambda: DenseNet1d(cfg, n, 1)}[cfg.kind]()


def _as_list(value: int | list[int]) -> list[int]:
    return value if isinstance(value, list) else [value]


def choose_knn(trainer: NextItemTrainer, neighbours: list[int], windows: list[int],
               decays: list[float]) -> None:
    """Set the item-kNN floor's (neighbours, window, decay) to the triple with the best
    validation NDCG@10 (ties: the first in grid order), on the same evaluator and masks as
    every model; the test split is never read. The grid's scores and the choice are reported
    in the run's extra metrics (``knn_valid_ndcg@10``: "neighbours/window/decay" → score)."""
    floor = trainer.model
    grid = [(k, w, d) for k in neighbours for w in windows for d in decays]
    best, best_score, seen = grid[0], -1.0, {}
    if len(grid) > 1:
        if not trainer.has_valid():
            raise ConfigError("model.knn_neighbours/knn_windows/knn_decays: choosing among "
                              "several needs a validation split")
        for k in neighbours:
            if len(neighbours) > 1:
                floor.table = nt.item_cosine_graph(trainer.data.seqs, k).double()
            for w in windows:
                for d in decays:
                    floor.window, floor.decay = w, d
                    score = trainer.evaluate("valid").metrics[trainer.monitor]
                    seen[f"{k}/{w}/{d:g}"] = score
                    if score > best_score:
                        best, best_score = (k, w, d), score
        if len(neighbours) > 1:
            floor.table = nt.item_cosine_graph(trainer.data.seqs, best[0]).double()
    floor.window, floor.decay = best[1], best[2]
    floor.chosen = {"knn_neighbours": best[0], "knn_window": best[1], "knn_decay": best[2],
                    **({"knn_valid_ndcg@10": seen} if seen else {})}


def make_seq_baseline_trainer(cfg: SeqBaselineConfig, ctx: RunContext) -> NextItemTrainer:
    data = build_data(ctx, cfg.next_item)
    with drawing_from(init_generator(ctx.seed)):  # default inits; the global RNG is untouched
        model = build_model(cfg, data)
    mode = "none" if cfg.kind in FLOORS else "samples"
    trainer = NextItemTrainer(model, ctx, data, mode, "hinge" if cfg.kind == "svm" else "ce")
    if cfg.kind == "itemknn":
        choose_knn(trainer, _as_list(cfg.knn_neighbours), cfg.knn_windows, cfg.knn_decays)
    return trainer
