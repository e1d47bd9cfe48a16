"""The allocator settings of recbench/memory.py: taken on glibc, idempotent, the stronger wins."""

import platform

import pytest

from recbench import memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_settings_are_taken_and_the_large_graph_one_wins():
    assert memory.reuse_freed_memory() is True
    assert memory.reuse_freed_memory() is True  # cached: set once
    assert "32 MB" in memory.allocator_setting() or "large-graph" in memory.allocator_setting()
    assert memory.keep_freed_memory() is True
    assert "large-graph" in memory.allocator_setting()
    memory.reuse_freed_memory.cache_clear()
    assert memory.reuse_freed_memory() is True  # a no-op after keep_freed_memory
    assert "large-graph" in memory.allocator_setting()
