"""Issue #16, through the CLI: each bad input is one line on stderr and exit 2 (no traceback,
no run folder); a 0–10 rating file trains and is scored on its own scale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recbench.experiment import load_experiment
from tests.conftest import write_experiment
from tests.test_cli import _invoke, _one_error_line


def _train(exp: Path, tmp_path: Path, paths, *extra: str):
    runs = tmp_path / "runs"
    result, out = _invoke("train", str(exp), "--data-dir", str(paths.root), "--runs-dir",
                          str(runs), "--threads", "1", *extra)
    return result, out, runs


@pytest.mark.parametrize(("override", "expected"), [
    ("train.epochs=-3", "train.epochs: -3 is out of range; allowed: at least 1"),
    ("dataset.test_ratio=1", "dataset.test_ratio: 1 is out of range; allowed: a number in (0, 1)"),
])
def test_out_of_range_setting_is_one_line_and_trains_nothing(tmp_path, tiny_paths, override,
                                                             expected):
    """`train: {epochs: -3}` used to train nothing, print metrics and exit 0."""
    result, out, runs = _train(write_experiment(tmp_path, "e"), tmp_path, tiny_paths,
                               "--set", override)
    assert result.exit_code == 2
    assert expected in _one_error_line(out) and len(out.strip().splitlines()) == 1
    assert not runs.exists()


def test_fanouts_not_matching_layers_is_one_line(tmp_path, tiny_paths):
    exp = write_experiment(tmp_path, "e")
    raw = yaml.safe_load(exp.read_text())
    raw["model"] = {"name": "lightgcn", "training": "neighbor", "num_layers": 2,
                    "fanouts": [5, 5, 5]}
    exp.write_text(yaml.safe_dump(raw))
    result, out, runs = _train(exp, tmp_path, tiny_paths)
    assert result.exit_code == 2
    assert "model.fanouts: fanouts has 3 entries for num_layers 2" in _one_error_line(out)
    assert not runs.exists()


def _rows(n_users: int = 30, n_items: int = 12, scale: int = 5) -> list[str]:
    rng = np.random.default_rng(0)
    return [f"u{u},i{i},{int(rng.integers(0, scale + 1))}\n"
            for u in range(n_users) for i in rng.choice(n_items, size=8, replace=False)]


@pytest.mark.parametrize(("bad", "expected"), [
    ("u1,i1\n", "line 2 has 2 field(s) where the other rows have 3"),
    ("u1,i1,abc\nu2,i2,\n", "line 2: rating is not a finite number 'abc'"),
])
def test_bad_rows_in_from_file_are_one_line(tmp_path, bad, expected):
    rows = _rows()
    src = tmp_path / "mine.csv"
    src.write_text(rows[0] + bad + "".join(rows[1:]))
    data = tmp_path / "data"
    result, out = _invoke("preprocess", "mine", "--from", str(src), "--data-dir", str(data))
    assert result.exit_code == 2
    msg = _one_error_line(out)
    assert expected in msg and "--skip-bad-rows" in msg
    assert not (data / "raw" / "mine").exists()  # nothing registered from a bad file


def test_skip_bad_rows_says_how_many(tmp_path):
    rows = _rows()
    src = tmp_path / "mine.csv"
    src.write_text(rows[0] + "u1,i1\nu2,i2,abc\n" + "".join(rows[1:]))
    result, out = _invoke("preprocess", "mine", "--from", str(src), "--protocol", "random",
                          "--data-dir", str(tmp_path / "data"), "--skip-bad-rows")
    assert result.exit_code == 0, out
    assert "skipped 2 bad row(s)" in out and "line(s) 2, 3" in out


def test_a_zero_to_ten_scale_trains_and_is_clamped_to_it(tmp_path):
    """Predictions were clamped to a hard-coded (1, 5): a 0–10 file lost its 0s and 6–10s."""
    from recbench.data.graph import split_edges
    from recbench.data.prepare import DataPaths
    from recbench.models.glocal_k import GLocalKConfig
    from recbench.runner import build
    from recbench.train.trainers import evaluate_ratings

    src = tmp_path / "ten.csv"
    src.write_text("".join(_rows(scale=10)))
    data = tmp_path / "data"
    result, out = _invoke("preprocess", "ten", "--from", str(src), "--protocol", "random",
                          "--data-dir", str(data))
    assert result.exit_code == 0, out
    exp = write_experiment(tmp_path, "ten", dataset={"name": "ten"},
                           train={"epochs": 2, "lr": 0.05, "batch_size": 64})
    raw = yaml.safe_load(exp.read_text())
    raw["model"] = {"name": "biased_mf", "emb_dim": 4}
    exp.write_text(yaml.safe_dump(raw))
    result, out, _ = _train(exp, tmp_path, DataPaths(data))
    assert result.exit_code == 0, out
    cfg = load_experiment(exp).model_copy(update={"seed": 0})
    built = build(cfg, DataPaths(data))
    assert built.trainer.clip == (0.0, 10.0)
    # a prediction far above the scale is pulled to its top, 10, not to 5
    res = evaluate_ratings(lambda u, i: torch.full((len(u),), 99.0), built.ctx, "test",
                           built.trainer.clip)
    r = split_edges(built.ctx.data.g, "test")[2]
    assert res.metrics["mae"] == pytest.approx(float((10.0 - r).abs().mean()), abs=1e-5)
    gk = cfg.model_copy(update={"model": GLocalKConfig(name="glocal_k", hidden_dims=[4])})
    assert build(gk, DataPaths(data)).trainer.clip == (0.0, 10.0)


def _laughs(levels: int = 30) -> str:
    """A billion-laughs YAML: each level doubles the one below (2**levels values expanded)."""
    lines = ["name: x", "a0: &a0 [lol, lol]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nmodel: {{name: bpr_mf, emb_dim: *a{levels - 1}}}\n"


@pytest.mark.parametrize("where", ["experiment", "set", "run config"])
def test_exponential_yaml_aliases_fail_fast_in_one_line(tmp_path, tiny_paths, where):
    """Issue 31 item 11: the acyclicity check serialised the expanded document (6.6 GB after
    60 s); now the expansion is counted over the shared nodes and bounded."""
    import time

    exp = write_experiment(tmp_path, "e")
    t0 = time.perf_counter()
    if where == "experiment":
        bomb = tmp_path / "bomb.yaml"
        bomb.write_text(_laughs())
        result, out = _invoke("train", str(bomb))
    elif where == "set":
        alias = "- &a0 [1, 1]\n" + "".join(f"- &a{i} [*a{i - 1}, *a{i - 1}]\n"
                                          for i in range(1, 40))
        result, out = _invoke("train", str(exp), "--set", f"model.emb_dim={alias}")
    else:
        run = tmp_path / "runs" / "e" / "20260101-000000-0123456789.partial"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(_laughs())
        result, out = _invoke("train", "--resume", str(run), "--data-dir", str(tiny_paths.root))
    assert time.perf_counter() - t0 < 10
    assert result.exit_code == 2
    msg = _one_error_line(out)
    assert "expand" in msg and len(out.strip().splitlines()) <= 2, out


def test_an_oversized_yaml_file_is_one_line(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\npaper:\n" + "".join(f"  m{i}: 0.5\n" for i in range(400_000)))
    result, out = _invoke("train", str(big))
    assert result.exit_code == 2 and "too large" in _one_error_line(out)


def test_a_binary_experiment_file_is_one_line(tmp_path):
    """Issue 31 item 17: a binary file as the experiment gave a UnicodeDecodeError traceback."""
    binary = tmp_path / "model.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    result, out = _invoke("train", str(binary))
    assert result.exit_code == 2 and "model.yaml" in _one_error_line(out)


def _damage(folder: Path, how: str) -> None:
    graph, meta = folder / "graph.bin", folder / "meta.json"
    data = graph.read_bytes()
    if how == "no meta.json":
        meta.unlink()
    elif how == "no graph.bin":
        graph.unlink()
    elif how == "truncated graph.bin":
        graph.write_bytes(data[: len(data) // 2])
    elif how == "bit flip in graph.bin":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        graph.write_bytes(bytes(flipped))
    elif how == "garbage graph.bin":
        graph.write_bytes(b"not a graph" * 50)
    elif how == "truncated meta.json":
        meta.write_text(meta.read_text()[:40])
    elif how == "legacy meta, garbage graph.bin":  # a cache written before the checksum
        plain = json.loads(meta.read_text())
        plain.pop("graph_sha256", None)
        meta.write_text(json.dumps(plain))
        graph.write_bytes(b"\x00" * 64)


DAMAGE = ["no meta.json", "no graph.bin", "truncated graph.bin", "bit flip in graph.bin",
          "garbage graph.bin", "truncated meta.json", "legacy meta, garbage graph.bin"]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_processed_cache_is_one_line_and_preprocess_repairs_it(tmp_path, tiny_paths,
                                                                         how):
    """Issue 31 item 14: graph.bin without meta.json, a corrupt graph.bin: a traceback, a
    train↔preprocess loop or DGL's C++ backtrace. Now: one line naming the fix, and the fix
    (`preprocess NAME --force`) works."""
    from recbench.data.prepare import preprocess

    exp = write_experiment(tmp_path, "e")
    folder = preprocess(load_experiment(exp).dataset, tiny_paths)
    _damage(folder, how)
    result, out, _ = _train(exp, tmp_path, tiny_paths)
    assert result.exit_code == 2, out
    msg = _one_error_line(out)
    assert "processed cache for tiny is damaged" in msg and "preprocess tiny --force" in msg
    assert "Stack trace" not in out and "[bt]" not in out
    result, out = _invoke("preprocess", "tiny", "--protocol", "random", "--test-ratio", "0.2",
                          "--valid-ratio", "0.2", "--data-dir", str(tiny_paths.root), "--force")
    assert result.exit_code == 0, out
    result, out, _ = _train(exp, tmp_path, tiny_paths)
    assert result.exit_code == 0, out


def test_a_failed_graph_write_is_one_line_and_leaves_no_tmp(tmp_path, tiny_paths, monkeypatch):
    """Issue 31 item 15: DGL reports a full disk as a DGLError with a C++ backtrace."""
    import dgl

    def full(path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise dgl.DGLError("[bt] (0) libdgl.so: Check failed: write")

    monkeypatch.setattr(dgl, "save_graphs", full)
    result, out, _ = _train(write_experiment(tmp_path, "e"), tmp_path, tiny_paths)
    assert result.exit_code == 2 and "disk" in _one_error_line(out) and "[bt]" not in out
    left = [p for p in tiny_paths.processed.rglob("*") if p.is_file() and p.suffix != ".lock"]
    assert not left  # the split's lock file (empty, held only while loading) may stay


@pytest.mark.parametrize("value", ["1000000000000", "1.0e+12", "70000"])
def test_an_absurd_layer_width_is_one_line_naming_the_key(tmp_path, tiny_paths, value):
    """Issue 31 item 17: `emb_dim: 1e12` went to the allocator (a RuntimeError traceback)."""
    result, out, runs = _train(write_experiment(tmp_path, "e"), tmp_path, tiny_paths,
                               "--set", f"model.emb_dim={value}")
    assert result.exit_code == 2
    assert "model.emb_dim" in _one_error_line(out) and "too large" in out
    assert not runs.exists()


def test_a_model_that_does_not_fit_in_memory_is_one_line(tmp_path, tiny_paths, monkeypatch):
    """Sizes within the bound can still multiply past the memory (a width times a catalogue)."""
    from recbench.models import MODELS

    def too_big(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] err == 0. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 96000000000000 bytes.")

    import dataclasses

    monkeypatch.setitem(MODELS, "bpr_mf", dataclasses.replace(MODELS["bpr_mf"],
                                                              make_trainer=too_big))
    result, out, _ = _train(write_experiment(tmp_path, "e"), tmp_path, tiny_paths)
    assert result.exit_code == 2 and "does not fit in memory" in _one_error_line(out)
