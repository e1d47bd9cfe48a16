"""The one reader of /proc/cpuinfo: which CPU a run or a native build ran on.

Float kernels (and so trained weights) can differ between CPUs, so env.json records the model
and its widest SIMD set, and the native kernels' build cache is keyed by the CPU's flags.
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpuinfo_lines(path: Path = CPUINFO) -> list[str]:
    """The lines of ``path``; none where it cannot be read (not Linux, a sandbox)."""
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def _first(lines: list[str], prefixes: tuple[str, ...]) -> str | None:
    return next((ln for ln in lines if ln.startswith(prefixes)), None)


def cpu_model(lines: list[str] | None = None) -> str:
    """CPU model and its widest SIMD set, e.g. ``Intel(R) Xeon(R) ... (avx512f)``."""
    lines = cpuinfo_lines() if lines is None else lines
    name_line, flags_line = _first(lines, ("model name",)), _first(lines, ("flags",))
    name = name_line.split(":", 1)[1].strip() if name_line else platform.processor()
    flags = flags_line.split(":", 1)[1].split() if flags_line else []
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")
    return f"{name} ({simd})" if simd else name


def cpu_flags(lines: list[str] | None = None) -> str:
    """The CPU's feature line as written (``flags`` on x86, ``Features`` on ARM), else the
    processor name: what a compiled kernel's cache key must change with."""
    lines = cpuinfo_lines() if lines is None else lines
    return _first(lines, ("flags", "Features")) or platform.processor()
