"""Native (C) kernels for the hottest small-tensor loops, compiled on first use: build.py
builds and loads them, ops.py calls them on tensors. Optional everywhere: the torch path they
replace stays and is taken when they are off (``RECBENCH_NATIVE=0``, no C compiler)."""

from recbench.native.build import library, status

__all__ = ["library", "status"]
