"""Data-parallel mini-batch training under ``torchrun`` (PyTorch's own DistributedDataParallel).

``torchrun --nproc_per_node N`` sets RANK/WORLD_SIZE; :func:`setup` joins the process group
(gloo on CPU, nccl on CUDA). Every rank draws the same global batch and negatives from the
same seeded generators and keeps its 1/N shard; DDP averages the gradients, so an epoch
matches the one-process epoch on the full batch up to float summation order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (no-op in a plain single process)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index or 0] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def shard(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (sizes differ by at most one)."""
    if not info.enabled:
        return x
    return x.tensor_split(info.world)[info.rank]


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum of a few floats over all ranks."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def cleanup() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
