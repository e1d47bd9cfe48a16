"""Worker for test_gnn_distributed: neighbour-sampled LightGCN on a tiny graph, 1 or N processes.

Run as ``python tests/ddp_worker.py DATA_DIR OUT.pt`` or under ``torchrun --nproc_per_node N``;
rank 0 saves the trained embedding table and the per-epoch losses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from recbench.config import DatasetConfig, EvalConfig, TrainConfig
from recbench.data.prepare import DataPaths, load
from recbench.models import MODELS
from recbench.seeding import seed_everything
from recbench.train import distributed
from recbench.train.api import RunContext


def main(data_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    seed_everything(0)
    data = load(DatasetConfig(name="tiny", protocol="random", test_ratio=0.2, valid_ratio=0.2),
                DataPaths(Path(data_dir)))
    cfg = MODELS["lightgcn"].config(name="lightgcn", emb_dim=8, num_layers=2,
                                    training="neighbor", fanouts=[-1, -1], reg=1e-3)
    ctx = RunContext(data, TrainConfig(lr=0.02, batch_size=32), EvalConfig(k=[5]),
                     torch.device("cpu"), 0)
    trainer = MODELS["lightgcn"].make_trainer(cfg, ctx)
    losses = [trainer.train_epoch(e)["bpr"] for e in range(3)]
    if trainer.dist.is_main:
        torch.save({"emb": trainer.model.emb.weight.detach(), "losses": losses,
                    "world": trainer.dist.world}, out)
    distributed.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
