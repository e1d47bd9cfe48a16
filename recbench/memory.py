"""Keep freed memory in the process (glibc's allocator) so tensors are not paged in anew.

Why: glibc serves a block above its mmap threshold with a fresh ``mmap`` and returns it on
free, and trims the top of the heap once more than twice that threshold lies free there; every
page of the next tensor is then faulted in (and zeroed by the kernel) again, tens of thousands
of page faults an epoch on ML-100K (figures: docs/benchmarks.md).

Two settings, both changing no number (allocator state only; off glibc they do nothing), taken
by ``recbench.process.start``:

- :func:`reuse_freed_memory`, every run: blocks up to 32 MB (glibc's largest threshold) always
  come from the heap, and up to 1 GiB of free heap top is kept. The bound: a run holds at most
  1 GiB of freed heap beyond its peak; larger tensors still map and unmap.
- :func:`keep_freed_memory`, the large-graph mode: no mmap at all and the heap never trimmed. A
  large-graph step (full-graph LightGCN with a ~1M-edge BPR batch on the 20M-edge synthetic
  graph) allocates and frees dozens of 0.3-0.6 GB tensors, above any threshold; freed memory
  stays mapped, so the peak resident memory grows.

Measure a setting by alternating it between epochs of one process: separate processes drift
on a shared VM by more than the gain.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
HEAP_BLOCK_LIMIT = 32 << 20  # glibc's largest mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX)
KEPT_FREE_HEAP = 1 << 30  # free heap top kept before trimming
LARGE_GRAPH_EDGES = 5_000_000  # message-graph edges from which the full-graph mode asks for it


def _mallopt():
    """glibc's ``mallopt``, or None off glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


@functools.cache
def reuse_freed_memory() -> bool:
    """Serve blocks up to 32 MB from the heap and keep up to 1 GiB of it free (every run).

    Returns whether the allocator took the setting (False off glibc). A no-op once
    :func:`keep_freed_memory` was taken (it is the stronger setting)."""
    if keep_freed_memory.cache_info().currsize:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return (bool(mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT))
            and bool(mallopt(M_TRIM_THRESHOLD, KEPT_FREE_HEAP)))


@functools.cache
def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never return freed heap to the OS.

    Returns whether the allocator took the setting (False off glibc)."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # -1: glibc takes the threshold as size_t, so this is SIZE_MAX, "never trim" (the largest
    # positive int, 2 GB, still trimmed between steps: docs/benchmarks.md)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))


def allocator_setting() -> str:
    """What this process asked of the allocator, for a run's env.json."""
    if keep_freed_memory.cache_info().currsize and keep_freed_memory():
        return "glibc: no mmap, heap never trimmed (large-graph mode)"
    if reuse_freed_memory.cache_info().currsize and reuse_freed_memory():
        return "glibc: blocks up to 32 MB from the heap, 1 GiB of free heap kept"
    return "allocator default"
