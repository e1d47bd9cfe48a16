"""One run seed, many independent generators.

Library code never touches the global RNGs except through :func:`seed_everything` (DGL's
samplers only read a global seed). Everything else takes a generator derived here, so two
purposes (data split, init, negative sampling) never share a stream and adding one does not
shift the others.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def derive_seed(seed: int, purpose: str) -> int:
    """A stable 63-bit seed for ``purpose``, independent of other purposes for the same seed."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def numpy_rng(seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, purpose))


def torch_generator(seed: int, purpose: str, device: str = "cpu"):
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, purpose))
    return gen


def seed_everything(seed: int) -> None:
    """Seed the global RNGs that third-party code (DGL samplers, torch init) reads."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    try:
        import dgl

        dgl.seed(seed)
    except Exception:  # noqa: BLE001 - dgl optional at seeding time
        pass
