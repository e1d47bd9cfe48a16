"""Keep freed memory in the process (glibc's allocator) so tensors are not paged in anew.

Why: glibc serves a block above its mmap threshold with a fresh ``mmap`` and returns it on
free, and trims the top of the heap once more than twice that threshold lies free there; every
page of the next tensor is then faulted in (and zeroed by the kernel) again. On ML-100K that was
20-80k page faults an epoch, several microseconds each on this VM.

Two settings, both changing no number (allocator state only; off glibc they do nothing):

- :func:`reuse_freed_memory`, every run (``recbench.process.start``): blocks up to 32 MB (glibc's largest
  threshold) always come from the heap, and up to 1 GiB of free heap top is kept. Alternating
  epochs in one process, allocator default vs this (2026-12-03, 1 thread, others stopped):
  BPR-MF 0.124 -> 0.059 s/epoch (26k -> 1.6k page faults an epoch), NGCF 0.92 -> 0.79 (62k ->
  2k), GAT 2.42 -> 2.23 (2 threads), LightGCN unchanged (0.40). The bound: a run holds at most
  1 GiB of freed heap beyond its peak; larger tensors still map and unmap.
- :func:`keep_freed_memory`, the large-graph mode: no mmap at all and the heap never trimmed. A
  large-graph step (full-graph LightGCN with a ~1M-edge BPR batch on the 20M-edge synthetic
  graph) allocates and frees dozens of 0.3-0.6 GB tensors, above any threshold: 3 steps went
  41,600 -> 77,700 edges/s on the 2-core machine (2026-12-03, others paused), peak RSS 8.6 ->
  13.8 GiB (freed memory stays mapped; the limit is 24 GiB).

Earlier notes said small runs gain nothing (GAT 2026-12-02; NGCF "page faults 13-26k an epoch
-> 300 but not a millisecond"): those compared separate processes, whose speed drifts on this
VM by more than the gain. Alternating the setting between epochs of one process shows it.
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
    # positive int, 2 GB, still trimmed between steps: 51k instead of 78k edges/s)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))


def allocator_setting() -> str:
    """What this process asked of the allocator, for a run's env.json."""
    if keep_freed_memory.cache_info().currsize and keep_freed_memory():
        return "glibc: no mmap, heap never trimmed (large-graph mode)"
    if reuse_freed_memory.cache_info().currsize and reuse_freed_memory():
        return "glibc: blocks up to 32 MB from the heap, 1 GiB of free heap kept"
    return "allocator default"
