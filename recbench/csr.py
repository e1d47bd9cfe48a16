"""Compressed sparse rows: the one place row pointers are built.

Evaluation masks, the native SpMM, GLocal-K's sparse products and the GAT head blocks all need
"where does row r start" for a list of (row, col) entries; it sits in the base layer so that
every layer, the native kernels included, can import it.
"""

from __future__ import annotations

import torch


def row_pointers(rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """CSR row pointers (num_rows + 1, int64) of the entries' row indices: once the entries
    are grouped by row, row r's are ``indptr[r]:indptr[r + 1]``."""
    indptr = torch.zeros(num_rows + 1, dtype=torch.int64, device=rows.device)
    indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
    return indptr


def by_row(rows: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indptr, order)``: ``order`` groups the entries by row, keeping the given order within a
    row (stable), so row r's entries are ``order[indptr[r]:indptr[r + 1]]``."""
    return row_pointers(rows, num_rows), torch.argsort(rows, stable=True)
