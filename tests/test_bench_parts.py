"""bench/bench_spmm_floor.py's per-part timer (issue 36): it wraps calls on their instances, so
the step runs its own code; each call's result and exceptions pass through unchanged."""

from __future__ import annotations

import pytest

from bench.bench_spmm_floor import PartTimes


class Step:
    def __init__(self) -> None:
        self.calls = 0

    def forward(self, x: int) -> int:
        self.calls += 1
        return 2 * x

    def fail(self) -> None:
        raise RuntimeError("inside the step")


def test_wrapped_calls_return_their_result_and_are_timed_per_call():
    step, timer = Step(), PartTimes()
    timer.wrap(step, "forward", "forward")
    assert [step.forward(1), step.forward(5)] == [2, 10]
    assert step.calls == 2
    assert len(timer.seconds["forward"]) == 2 and all(s >= 0 for s in timer.seconds["forward"])
    assert Step().forward(3) == 6  # only that instance is wrapped


def test_a_failing_call_is_timed_and_its_error_passes_through():
    step, timer = Step(), PartTimes()
    timer.wrap(step, "fail", "fail")
    with pytest.raises(RuntimeError, match="inside the step"):
        step.fail()
    assert len(timer.seconds["fail"]) == 1
