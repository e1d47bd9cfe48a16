"""sha256 of a file, read in 1 MiB blocks: the one checksum reader of the package.

It sits at the bottom layer because both the data layer (downloads, graph.bin) and the native
kernels' build cache (recbench/native/build.py) verify files with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
