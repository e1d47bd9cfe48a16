"""Fault injection for the property-based tests: a fault (an OSError of the file system, or
Ctrl-C) raised at the n-th call of one of the functions a command goes through, and a deadline
so that a command that would hang (a pipe read, a dead cluster) fails the test instead.

Faults are placed by call count, not by timer, so every example Hypothesis finds replays
exactly (a timer lands on another instruction every run).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# the file-system states a write can meet, and Ctrl-C
ERRNOS = ["ENOSPC", "EROFS", "EACCES", "EDQUOT", "EIO"]
FAULTS = [*ERRNOS, "ctrl-c"]


def make_fault(kind: str, where: str = "") -> BaseException:
    if kind == "ctrl-c":
        return KeyboardInterrupt()
    code = getattr(errno, kind)
    return OSError(code, os.strerror(code), where or None)


@contextlib.contextmanager
def fault_at(targets: list[tuple[object, str]], target: int, call: int, kind: str,
             after: bool = False) -> Iterator[dict]:
    """Raise ``kind`` at the ``call``-th call (0-based) of ``targets[target]`` (module,
    attribute), before the real call runs, or just after it when ``after``. Yields a record
    whose ``fired`` says whether the fault happened (the command may make fewer calls)."""
    owner, name = targets[target]
    real = getattr(owner, name)
    record = {"calls": 0, "fired": False}

    def wrapper(*args, **kwargs):
        n = record["calls"]
        record["calls"] += 1
        if n == call and not after:
            record["fired"] = True
            raise make_fault(kind, str(args[0]) if args else "")
        value = real(*args, **kwargs)
        if n == call:
            record["fired"] = True
            raise make_fault(kind, str(args[0]) if args else "")
        return value

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(owner, name, wrapper)
        yield record


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (TimeoutError) instead of hanging when the body runs past ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the command hangs")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def leftovers(root: Path) -> list[Path]:
    """Temp files a failed write must not leave behind."""
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


def assert_one_line(result, out: str, kind: str) -> None:
    """A fault ends the command with its exit code and one error line, never a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{out}")
    expected = 130 if kind == "ctrl-c" else 2
    assert result.exit_code == expected, out
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), out
    assert "Traceback" not in out
    if kind != "ctrl-c":
        assert os.strerror(getattr(errno, kind)) in " ".join(lines), out
