"""Shared fixtures: a tiny seeded interactions file registered as dataset 'tiny', the mirror."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

os.environ.setdefault("DGLBACKEND", "pytorch")


def make_interactions(num_users: int = 24, num_items: int = 30, per_user: int = 10,
                      seed: int = 0) -> pd.DataFrame:
    """Users with a preference for one of three item blocks, so models have signal to learn."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        block = u % 3
        pool = np.arange(block * num_items // 3, (block + 1) * num_items // 3)
        liked = rng.choice(pool, size=min(per_user - 2, len(pool)), replace=False)
        other = rng.choice(np.setdiff1d(np.arange(num_items), liked), size=2, replace=False)
        for t, i in enumerate(np.concatenate([liked, other])):
            rows.append((f"u{u}", f"i{i}", float(rng.integers(3, 6) if i in liked else 1), 1000 + t))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


@pytest.fixture
def tiny_paths(tmp_path: Path):
    """DataPaths whose raw folder holds the registered dataset 'tiny'."""
    from recbench.data.prepare import DataPaths, register_custom

    csv = tmp_path / "tiny.csv"
    make_interactions().to_csv(csv, index=False)
    paths = DataPaths(tmp_path / "data")
    register_custom(csv, "tiny", paths, None, None, "rating", "timestamp")
    return paths


def interrupt_at(call: int):
    """A progress callback that raises KeyboardInterrupt on its ``call``-th call: a run
    interrupted mid-training, as Ctrl-C (or a killed worker) leaves it, for resume tests."""
    calls = {"n": 0}

    def progress(_record) -> None:
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt

    return progress


def write_experiment(folder: Path, name: str, **sections) -> Path:
    body = {"name": name,
            "dataset": {"name": "tiny", "protocol": "random", "test_ratio": 0.2,
                        "valid_ratio": 0.2},
            "model": {"name": "bpr_mf", "emb_dim": 8},
            "train": {"epochs": 4, "lr": 0.05, "batch_size": 64, "patience": None},
            "eval": {"k": [5]}, "seeds": [0]}
    for key, value in sections.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.fixture
def one_thread():
    """Tiny models: one thread is fastest, and two cores are easily oversubscribed. Modules of
    tiny models use it for every test (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mirror() -> Path:
    value = os.environ.get("RECBENCH_MIRROR")
    if not value or not Path(value).is_dir():
        pytest.skip("RECBENCH_MIRROR is not set to the dataset mirror")
    return Path(value)


@pytest.fixture(scope="session")
def real_paths(tmp_path_factory, mirror: Path):
    """A session data folder with every mirrored dataset fetched from the mirror."""
    from recbench.data.datasets import get_dataset
    from recbench.data.fetch import fetch
    from recbench.data.prepare import DataPaths

    paths = DataPaths(tmp_path_factory.mktemp("realdata"))
    for name in ("ml-100k", "douban-monti", "yelp-madison", "yelp-pittsburgh"):
        fetch(get_dataset(name), paths.raw, mirror)
    return paths


# Property-based tests (tests/test_fuzz_*.py): a bounded, deterministic budget for `make test`;
# `make test-all` sets HYPOTHESIS_PROFILE=thorough for a larger, still reproducible search.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a dev extra
    pass
else:
    _quiet = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
              HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile("default", max_examples=25, derandomize=True, deadline=None,
                              suppress_health_check=_quiet, print_blob=True, database=None)
    settings.register_profile("thorough", max_examples=300, derandomize=True, deadline=None,
                              suppress_health_check=_quiet, print_blob=True, database=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def at_threads():
    """Call a function at each of 1, 2, 3 torch threads; restores the count afterwards (the
    native kernels' floats must not depend on it)."""
    import torch

    before = torch.get_num_threads()

    def run(fn):
        out = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            out.append(fn())
        return out

    yield run
    torch.set_num_threads(before)
