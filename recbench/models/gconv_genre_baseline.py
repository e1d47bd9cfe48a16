"""The GConv-Transform paper's Table 1 comparison models on the same genre-node features.

One registry entry, ``gconv_genre_baseline``, with a ``kind`` key: every baseline shares the sample
building, split, trainer and timing of :mod:`recbench.models.gconv_genre`, so one base
experiment and one varied key (``model.kind``) give the whole table. "Graph" and "Attention"
are not here: they are the GConv-Transform model with a component switched off.

Shapes: input (B, C, F) (C = 18 genre nodes, F = 6 features), output (B, C) scores.
- svm: linear map of the flattened C·F inputs, one-vs-rest hinge loss;
- dnn: MLP, ``num_layers`` × ``hidden`` ReLU;
- cnn: 1-D convolutions over the node axis (channels = features), ``num_layers`` × ``channels``;
- densenet: DenseNet-style 1-D CNN, ``dense_blocks`` blocks of ``dense_layers`` layers
  (growth ``growth``) with 1×1 transitions;
- densecnn: the shallower variant, one dense block.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from recbench.config import NonNegInt, PosInt, Share, Strict
from recbench.data import genre_task as gt
from recbench.models.gconv_genre import genre_setup, trainer_for
from recbench.seeding import continue_globally, drawing_from, init_generator
from recbench.train.api import RunContext
from recbench.train.classification import ClassificationTrainer

Kind = Literal["svm", "dnn", "cnn", "densenet", "densecnn"]


class GConvGenreBaselineConfig(Strict):
    name: Literal["gconv_genre_baseline"]
    kind: Kind = "dnn"
    hidden: PosInt = 256  # dnn
    num_layers: NonNegInt = 3  # dnn, cnn
    channels: PosInt = 64  # cnn; stem width of densenet/densecnn
    kernel_size: PosInt = 3  # cnn, densenet, densecnn
    growth: PosInt = 16  # densenet, densecnn (spec: 32; 16 halves the CPU cost)
    dense_blocks: PosInt = 3  # densenet (densecnn: 1)
    dense_layers: PosInt = 3  # layers per dense block (densecnn: this minus one)
    dropout: Share = 0.1
    loss: Literal["auto", "soft_ce", "hinge"] = "auto"  # auto: hinge for svm, else soft_ce
    genre_task: gt.GenreTaskConfig = gt.GenreTaskConfig()


class FlatLinear(nn.Module):
    """Linear SVM scores: (B, C, F) → flatten → (B, C)."""

    def __init__(self, num_nodes: int, in_dim: int):
        super().__init__()
        self.linear = nn.Linear(num_nodes * in_dim, num_nodes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    def __init__(self, num_nodes: int, in_dim: int, hidden: int, num_layers: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width = num_nodes * in_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, num_nodes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CNN1d(nn.Module):
    """Convolutions along the node axis; a linear head reads the flattened feature map."""

    def __init__(self, num_nodes: int, in_dim: int, channels: int, num_layers: int,
                 kernel_size: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers):
            layers += [nn.Conv1d(width, channels, kernel_size, padding=kernel_size // 2),
                       nn.BatchNorm1d(channels), nn.ReLU()]
            width = channels
        self.net = nn.Sequential(*layers, nn.Dropout(dropout))
        self.head = nn.Linear(channels * num_nodes, num_nodes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x.transpose(1, 2)).flatten(1))


class DenseBlock1d(nn.Module):
    """Each layer (BN → ReLU → conv, ``growth`` channels) sees all earlier feature maps."""

    def __init__(self, in_ch: int, growth: int, num_layers: int, kernel_size: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm1d(in_ch + i * growth), nn.ReLU(),
                          nn.Conv1d(in_ch + i * growth, growth, kernel_size,
                                    padding=kernel_size // 2))
            for i in range(num_layers))
        self.out_channels = in_ch + num_layers * growth

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = torch.cat([h, layer(h)], dim=1)
        return h


class DenseNet1d(nn.Module):
    """Stem conv → dense blocks with 1×1 transitions (halving channels) → linear head."""

    def __init__(self, num_nodes: int, in_dim: int, channels: int, growth: int, num_blocks: int,
                 layers_per_block: int, kernel_size: int, dropout: float):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv1d(in_dim, channels, kernel_size, padding=kernel_size // 2)]
        width = channels
        for b in range(num_blocks):
            block = DenseBlock1d(width, growth, layers_per_block, kernel_size)
            mods.append(block)
            width = block.out_channels
            if b < num_blocks - 1:
                mods += [nn.BatchNorm1d(width), nn.ReLU(), nn.Conv1d(width, width // 2, 1)]
                width //= 2
        mods += [nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*mods)
        self.head = nn.Linear(width * num_nodes, num_nodes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x.transpose(1, 2)).flatten(1))


def build_baseline(cfg: GConvGenreBaselineConfig, num_nodes: int, in_dim: int) -> nn.Module:
    if cfg.kind == "svm":
        return FlatLinear(num_nodes, in_dim)
    if cfg.kind == "dnn":
        return MLP(num_nodes, in_dim, cfg.hidden, cfg.num_layers, cfg.dropout)
    if cfg.kind == "cnn":
        return CNN1d(num_nodes, in_dim, cfg.channels, cfg.num_layers, cfg.kernel_size, cfg.dropout)
    if cfg.kind == "densenet":
        return DenseNet1d(num_nodes, in_dim, cfg.channels, cfg.growth, cfg.dense_blocks,
                          cfg.dense_layers, cfg.kernel_size, cfg.dropout)
    return DenseNet1d(num_nodes, in_dim, cfg.channels, cfg.growth, 1,
                      max(cfg.dense_layers - 1, 1), cfg.kernel_size, cfg.dropout)


def make_gconv_genre_baseline_trainer(cfg: GConvGenreBaselineConfig,
                                ctx: RunContext) -> ClassificationTrainer:
    samples, setup = genre_setup(cfg.genre_task, ctx)
    _, num_nodes, in_dim = samples.x.shape
    gen = init_generator(ctx.seed)
    with drawing_from(gen):  # the layers' default inits
        model = build_baseline(cfg, num_nodes, in_dim)
    continue_globally(gen)  # dropout continues the init stream, as it always has
    loss = cfg.loss if cfg.loss != "auto" else ("hinge" if cfg.kind == "svm" else "soft_ce")
    return trainer_for(model, samples, setup, cfg.genre_task, ctx, loss)
