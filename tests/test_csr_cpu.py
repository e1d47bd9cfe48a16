"""The base layer's one CSR row-pointer builder and one /proc/cpuinfo reader (issue 35)."""

from __future__ import annotations

import platform

import torch

from recbench import cpu
from recbench.csr import by_row, row_pointers


def test_row_pointers_by_hand():
    rows = torch.tensor([2, 0, 2, 2, 4])
    assert row_pointers(rows, 6).tolist() == [0, 1, 1, 4, 4, 5, 5]
    assert row_pointers(torch.zeros(0, dtype=torch.int64), 2).tolist() == [0, 0, 0]


def test_by_row_is_stable_within_a_row():
    rows = torch.tensor([1, 0, 1, 0, 1])
    cols = torch.tensor([10, 20, 30, 40, 50])
    indptr, order = by_row(rows, 3)
    assert indptr.tolist() == [0, 2, 5, 5]
    assert cols[order].tolist() == [20, 40, 10, 30, 50]


INTEL = ["processor\t: 0", "model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
         "flags\t\t: fpu sse4_2 avx avx2 avx512f", "processor\t: 1",
         "model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "flags\t\t: fpu"]
ARM = ["processor\t: 0", "Features\t: fp asimd evtstrm aes"]


def test_cpu_model_and_flags_from_cpuinfo_lines():
    assert cpu.cpu_model(INTEL) == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz (avx512f)"
    assert cpu.cpu_flags(INTEL) == "flags\t\t: fpu sse4_2 avx avx2 avx512f"
    assert cpu.cpu_flags(ARM) == "Features\t: fp asimd evtstrm aes"
    assert cpu.cpu_model(ARM) == platform.processor()


def test_unreadable_cpuinfo_falls_back_to_the_processor_name(tmp_path):
    lines = cpu.cpuinfo_lines(tmp_path / "missing")
    assert lines == []
    assert cpu.cpu_model(lines) == cpu.cpu_flags(lines) == platform.processor()
