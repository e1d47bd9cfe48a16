"""Regression tests from the issue's list: the rating scale and large input files."""

from __future__ import annotations

import os

import torch

from recbench.config import DatasetConfig, EvalConfig, TrainConfig
from recbench.data.graph import rating_range
from recbench.data.prepare import DataPaths, _input_digests, load, register_custom
from recbench.train.api import RunContext
from recbench.train.trainers import evaluate_ratings


def test_predictions_are_clipped_to_the_datas_own_scale(tmp_path):
    rows = "".join(f"u{u},i{i},{(u * 3 + i) % 11},{i}\n" for u in range(6) for i in range(10))
    src = tmp_path / "ten.csv"
    src.write_text(rows)
    paths = DataPaths(tmp_path / "data")
    register_custom(src, "ten", paths, ",", False, "2", "3")
    ds = load(DatasetConfig(name="ten", protocol="random", test_ratio=0.2), paths)
    assert rating_range(ds.g) == (0.0, 10.0)
    ctx = RunContext(ds, TrainConfig(), EvalConfig(), torch.device("cpu"), 0)
    from recbench.data.graph import split_edges

    u, i, r = split_edges(ds.g, "test")
    truth = {(a, b): c for a, b, c in zip(u.tolist(), i.tolist(), r.tolist())}

    def perfect(us, its):  # an oracle: the true rating, 0 and 10 included
        return torch.tensor([truth[(a, b)] for a, b in zip(us.tolist(), its.tolist())])

    result = evaluate_ratings(perfect, ctx, "test")
    assert result.metrics["rmse"] == 0.0  # clipped to (1, 5) it was > 0: 0s and 10s were moved


def test_large_input_files_are_in_the_recorded_checksums(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:  # sparse: 201 MB on paper, nothing on disk
        fh.truncate((200 << 20) + (1 << 20))
    (tmp_path / "small.txt").write_text("x")
    digests = _input_digests(tmp_path)
    assert set(digests) == {"big.bin", "small.txt"}
    os.remove(big)
