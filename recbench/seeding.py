"""One run seed, many independent generators.

This is the only module that touches the global RNGs. A run seeds them once at its start
(:func:`seed_everything`: DGL's samplers and walks read only a global seed), and a model
builder hands its initialisation stream over to torch's global generator once
(:func:`continue_globally`) for the ops that take no ``generator=`` (dropout, attention
dropout). Everything else takes a generator derived here, so two purposes (data split,
negative sampling, batches) never share a stream and adding one does not shift the others.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


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


def init_generator(seed: int) -> torch.Generator:
    """The CPU generator a model's initial weights are drawn from, seeded with ``seed`` itself.

    Not ``derive_seed(seed, "init")``: builders used to call ``torch.manual_seed(seed)`` and
    draw from the global generator, and every committed table was produced from that stream;
    a generator seeded the same way draws the same numbers, so those tables stay reproducible.
    (GL-Attention seeds it with its own historic ``derive_seed(seed, "init") % 2**31``.)
    """
    import torch

    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


@contextmanager
def drawing_from(gen: torch.Generator) -> Iterator[torch.Generator]:
    """Construct layers whose default initialisers read the global generator (``nn.Linear``,
    ``nn.Embedding``, DGL's convolutions) so that they draw from ``gen`` instead.

    Those initialisers take no ``generator=``; inside the block the global CPU generator runs
    ``gen``'s stream, on exit ``gen`` has advanced by what was drawn and the global state is
    restored, so a build leaves the global RNG as it found it. Do not pass ``generator=gen``
    inside the block: ``gen`` itself is only brought up to date on exit.
    """
    import torch

    saved = torch.get_rng_state()
    torch.set_rng_state(gen.get_state())
    try:
        yield gen
    finally:
        gen.set_state(torch.get_rng_state())
        torch.set_rng_state(saved)


def continue_globally(gen: torch.Generator) -> None:
    """Let torch's global CPU generator continue ``gen``'s stream (once, after a model build).

    Ops without a ``generator=`` argument (``F.dropout``, ``scaled_dot_product_attention``'s
    dropout, DGL's attention dropout, DropEdge drawn in the same forward pass) read the global
    generator. Before generators were passed in, the builders seeded it and the training draws
    followed the initial weights in one stream; handing the stream over keeps those draws, and
    so every trained number, what they were. The loop checkpoints the global state for resume.
    """
    import torch

    torch.set_rng_state(gen.get_state())


def seed_everything(seed: int) -> None:
    """Seed the global RNGs that third-party code (DGL samplers, torch ops) reads; once a run."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    try:
        import dgl

        dgl.seed(seed)
    except Exception:  # noqa: BLE001 - dgl optional at seeding time
        pass
