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

from typing import Literal

import torch
from torch import nn

from recbench.config import NonNegInt, PosInt, Share, Strict
from recbench.data import next_item_task as nt
from recbench.seeding import drawing_from, init_generator
from recbench.train.api import RunContext
from recbench.train.next_item import NextItemData, NextItemTrainer, build_data

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
    channels: PosInt = 64  # densenet / densecnn stem width
    growth: PosInt = 32  # densenet / densecnn
    dense_blocks: PosInt = 3  # densenet (densecnn: 1)
    dense_layers: PosInt = 3  # layers per dense block
    kernel_size: PosInt = 3
    dropout: Share = 0.2
    knn_neighbours: PosInt = 100  # itemknn: neighbours kept per item
    next_item: nt.NextItemConfig = nt.NextItemConfig()


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
    """Horizontal filters (h × d, max-pooled over time) and vertical filters (L × 1)."""

    def __init__(self, cfg: SeqBaselineConfig, num_items: int):
        super().__init__()
        d, n = cfg.hidden, cfg.next_item.max_len
        self.items = ItemEmbedding(num_items, d)
        self.horizontal = nn.ModuleList(nn.Conv2d(1, cfg.num_horizontal, (h, d))
                                        for h in cfg.horizontal)
        self.vertical = nn.Conv2d(1, cfg.num_vertical, (n, 1))
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.num_horizontal * len(cfg.horizontal) + cfg.num_vertical * d, d)

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        e = self.items.embed(histories).unsqueeze(1)  # (B, 1, L, d)
        hs = [torch.relu(conv(e)).squeeze(3).amax(2) for conv in self.horizontal]
        v = self.vertical(e).flatten(1)
        z = torch.relu(self.fc(self.drop(torch.cat([*hs, v], 1))))
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
    tie-break far below one count."""

    def __init__(self, kind: str, popularity: torch.Tensor, table: torch.Tensor | None):
        super().__init__()
        self.kind = kind
        self.register_buffer("tie", popularity / popularity.max().clamp_min(1) * 1e-6)
        self.register_buffer("table", table if table is not None else torch.zeros(0))

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        base = self.tie.expand(len(histories), -1)
        if self.kind == "popularity":
            return base.clone()
        if self.kind == "markov":
            return self.table[histories[:, -1]] + base
        rows = self.table[histories] * (histories > 0).unsqueeze(-1)  # itemknn
        return rows.sum(1) + base


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
                 "itemknn": lambda: nt.item_cosine_graph(data.seqs, cfg.knn_neighbours)}[cfg.kind]()
        return CountFloor(cfg.kind, pop, table)
    return {"svm": lambda: BagSVM(n), "dnn": lambda: MeanMLP(cfg, n), "cnn": lambda: Caser(cfg, n),
            "densenet": lambda: DenseNet1d(cfg, n, cfg.dense_blocks),
            "densecnn": lambda: DenseNet1d(cfg, n, 1)}[cfg.kind]()


def make_seq_baseline_trainer(cfg: SeqBaselineConfig, ctx: RunContext) -> NextItemTrainer:
    data = build_data(ctx, cfg.next_item)
    with drawing_from(init_generator(ctx.seed)):  # default inits; the global RNG is untouched
        model = build_model(cfg, data)
    mode = "none" if cfg.kind in FLOORS else "samples"
    return NextItemTrainer(model, ctx, data, mode, "hinge" if cfg.kind == "svm" else "ce")
