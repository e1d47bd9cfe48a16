"""Split protocols: pure functions from interactions (+ a generator) to per-row split codes.

A code array holds one int8 per interaction row: ``TRAIN``, ``VALID``, ``TEST`` or ``UNUSED``
(a training row dropped by ``train_ratio`` subsampling). Protocols never look at models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recbench.errors import ConfigError

TRAIN, VALID, TEST, UNUSED = 0, 1, 2, 3


def fixed(published: np.ndarray) -> np.ndarray:
    """A split published with the data (ML-100K uN files, Douban masks, Yelp test items): a
    bool test flag per row, or int8 codes where it has a validation part too (RecBole's
    benchmark files)."""
    if published.dtype == np.int8:
        return published.copy()
    return np.where(published, TEST, TRAIN).astype(np.int8)


def random_ratio(frame: pd.DataFrame, test_ratio: float, rng: np.random.Generator,
                 per_user: bool = True, legacy_seed: int | None = None) -> np.ndarray:
    """``test_ratio`` of the rows to test: per user (rounded down) or over all rows.

    ``legacy_seed`` reproduces GLocal-K's ML-1M split exactly: NumPy's legacy
    ``RandomState(seed).shuffle(arange(n))``, the first ``int(ratio*n)`` rows to test.
    """
    if not 0.0 < test_ratio < 1.0:
        raise ConfigError(f"dataset.test_ratio must be in (0, 1), got {test_ratio}")
    n = len(frame)
    codes = np.full(n, TRAIN, dtype=np.int8)
    if not per_user:
        order = (np.random.RandomState(legacy_seed).permutation(n) if legacy_seed is not None
                 else rng.permutation(n))
        codes[order[: int(test_ratio * n)]] = TEST
        return codes
    for rows in _rows_by_user(frame):
        take = int(test_ratio * len(rows))
        codes[rng.permutation(rows)[:take]] = TEST
    return codes


def holdout(frame: pd.DataFrame, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` random rows of each user to test (users with ≤ k rows keep all in train)."""
    codes = np.full(len(frame), TRAIN, dtype=np.int8)
    for rows in _rows_by_user(frame):
        if len(rows) > k:
            codes[rng.permutation(rows)[:k]] = TEST
    return codes


def leave_one_out(frame: pd.DataFrame, rng: np.random.Generator, num_items: int,
                  num_negatives: int = 99, by_time: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each user's latest row (or a random one) to test, plus ``num_negatives`` sampled items the
    user never interacted with, stored with the split so every model ranks the same candidates.

    Returns ``(codes, negatives)`` with ``negatives`` of shape (num_users, num_negatives), -1 rows
    for users without a test item.
    """
    codes = np.full(len(frame), TRAIN, dtype=np.int8)
    num_users = int(frame.user.max()) + 1
    negatives = np.full((num_users, num_negatives), -1, dtype=np.int64)
    stamps = frame.timestamp.to_numpy()
    items = frame.item.to_numpy()
    for rows in _rows_by_user(frame):
        if len(rows) < 2:
            continue
        if by_time:
            # latest interaction; ties broken by the later row, as sorting by (time, row) does
            pick = rows[np.lexsort((rows, stamps[rows]))[-1]]
        else:
            pick = rows[rng.integers(len(rows))]
        codes[pick] = TEST
        seen = set(items[rows].tolist())
        if len(seen) + num_negatives > num_items:
            raise ConfigError(f"cannot draw {num_negatives} negatives: a user has seen {len(seen)} "
                              f"of {num_items} items; lower dataset.num_negatives or use another "
                              "protocol")
        user = int(frame.user.iat[rows[0]])
        drawn: list[int] = []
        while len(drawn) < num_negatives:
            cand = rng.integers(num_items, size=2 * num_negatives)
            for c in cand.tolist():
                if c not in seen:
                    seen.add(c)
                    drawn.append(c)
                    if len(drawn) == num_negatives:
                        break
        negatives[user] = drawn
    return codes, negatives


def carve_validation(codes: np.ndarray, frame: pd.DataFrame, ratio: float,
                     rng: np.random.Generator, per_user: bool = True) -> np.ndarray:
    """Move ``ratio`` of the training rows to validation (per user, rounded down, or globally)."""
    if ratio <= 0:
        return codes
    out = codes.copy()
    if not per_user:
        train_rows = np.flatnonzero(codes == TRAIN)
        out[rng.permutation(train_rows)[: int(ratio * len(train_rows))]] = VALID
        return out
    for rows in _rows_by_user(frame):
        train_rows = rows[codes[rows] == TRAIN]
        out[rng.permutation(train_rows)[: int(ratio * len(train_rows))]] = VALID
    return out


def subsample_train(codes: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Keep a uniform random ``ratio`` of the training rows (cold-start curves); test untouched."""
    if not 0.0 < ratio <= 1.0:
        raise ConfigError(f"dataset.train_ratio must be in (0, 1], got {ratio}")
    if ratio == 1.0:
        return codes
    out = codes.copy()
    train_rows = np.flatnonzero(codes == TRAIN)
    drop = rng.permutation(train_rows)[int(round(ratio * len(train_rows))):]
    out[drop] = UNUSED
    return out


def _rows_by_user(frame: pd.DataFrame) -> list[np.ndarray]:
    users = frame.user.to_numpy()
    order = np.argsort(users, kind="stable")
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    return np.split(order, bounds)
