"""Keep freed memory in the process (glibc's allocator) for runs that churn huge tensors.

Why: a large-graph step (full-graph LightGCN propagation with a ~1M-edge BPR batch on the
20M-edge synthetic graph) allocates and frees dozens of 0.3-0.6 GB tensors. glibc serves every
block above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and hands it back with
``munmap`` on free, so each such tensor is paged in (and zeroed by the kernel) anew: the
element-wise ops of the step ran at ~0.6 GB/s and the step took 25 s. With mmap disabled and the
heap never trimmed, freed blocks are reused: 3 steps went 41,600 -> 77,700 edges/s on the
2-core machine (2026-12-03, others paused), peak RSS 8.6 -> 13.8 GiB (freed memory stays
mapped; the limit is 24 GiB). Small runs gain nothing measurable (GAT, 2026-12-02), so only the
large-graph mode asks for it (``models/gnn/base.make_graph_trainer``).

It is process-wide allocator state, set once and never undone; it changes no number. Off glibc
(macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_MAX = -4
LARGE_GRAPH_EDGES = 5_000_000  # message-graph edges from which the full-graph mode asks for it


@functools.cache
def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never return freed heap to the OS.

    Returns whether the allocator took the setting (False off glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # -1: glibc takes the threshold as size_t, so this is SIZE_MAX, "never trim" (the largest
    # positive int, 2 GB, still trimmed between steps: 51k instead of 78k edges/s)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
