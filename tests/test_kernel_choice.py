"""train.kernels (issue 36): the numeric path is declared, decided from the run and never from
the thread count or the load, in the run hash only when not ``auto`` (every committed run keeps
its hash), ``native`` where it cannot run is a one-line error, and env.json says what ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from recbench.config import hash_plain, run_hash, to_plain
from recbench.errors import ConfigError
from recbench.experiment import with_overrides
from recbench.memory import LARGE_GRAPH_EDGES
from recbench.native import library
from recbench.native.choice import choose_kernels
from tests.conftest import write_experiment

needs_native = pytest.mark.skipif(library() is None, reason="native kernels do not build here")
CPU = torch.device("cpu")


@needs_native
def test_auto_is_native_on_the_cpu_below_the_large_graph_size_at_any_thread_count():
    before = torch.get_num_threads()
    try:
        picks = set()
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            picks.add(choose_kernels("auto", CPU, 1000))
            picks.add(choose_kernels("auto", CPU))
    finally:
        torch.set_num_threads(before)
    assert {c.path for c in picks} == {"native"}
    big = choose_kernels("auto", CPU, LARGE_GRAPH_EDGES)
    assert big.path == "torch" and "large-graph" in big.reason
    assert choose_kernels("native", CPU, LARGE_GRAPH_EDGES).path == "native"  # declared


def test_torch_and_off_and_gpu_give_the_torch_path(monkeypatch):
    assert choose_kernels("torch", CPU).reason == "asked for (train.kernels: torch)"
    assert choose_kernels("auto", torch.device("cuda")).path == "torch"
    monkeypatch.setenv("RECBENCH_NATIVE", "0")
    off = choose_kernels("auto", CPU)
    assert off.path == "torch" and "RECBENCH_NATIVE=0" in off.reason


def test_the_key_keeps_every_committed_hash_and_a_declared_path_changes_it():
    """A ledger run of BPR-MF (native-capable) hashed before the key existed keeps its hash."""
    from recbench.experiment import validate

    folder = Path(__file__).resolve().parents[1] / "results/bpr-emb-size/ledger/bpr_mf-ml100k"
    run = next(p for p in sorted(folder.iterdir()) if (p / "config.yaml").exists())
    plain = yaml.safe_load((run / "config.yaml").read_text())
    assert "kernels" not in plain["train"]
    with_key = {**plain, "train": {**plain["train"], "kernels": "auto"}}
    assert hash_plain(with_key) == hash_plain(plain) == run.name
    cfg = validate(plain, "ledger")
    assert to_plain(cfg)["train"]["kernels"] == "auto"  # what a new run's config.yaml says
    without = to_plain(cfg)
    del without["train"]["kernels"]
    assert run_hash(cfg) == hash_plain(without)
    for path in ("torch", "native"):
        changed = with_overrides(cfg, {"train.kernels": path})
        assert run_hash(changed) != run_hash(cfg)
        assert hash_plain({**plain, "train": {**plain["train"], "kernels": path}}) != run.name


def _train(tmp_path: Path, tiny_paths, name: str, **sections) -> Path:
    from recbench.config import expand_seeds
    from recbench.experiment import load_experiment
    from recbench.runner import train_run

    cfg = expand_seeds(load_experiment(write_experiment(tmp_path, name, **sections)))[0]
    return train_run(cfg, tiny_paths, tmp_path / "runs")


@needs_native
@pytest.mark.parametrize("model,declared,path", [
    ("bpr_mf", "auto", "native"), ("bpr_mf", "torch", "torch"), ("lightgcn", "auto", "native"),
    ("lightgcn", "torch", "torch"), ("ngcf", "native", "native"), ("gcn", "auto", "torch")])
def test_env_json_records_the_path_the_step_took(tmp_path, tiny_paths, model, declared, path):
    run = _train(tmp_path, tiny_paths, f"k-{model}-{declared}",
                 model={"name": model, "emb_dim": 16},
                 train={"epochs": 1, "kernels": declared, "num_threads": 1})
    env = json.loads((run / "env.json").read_text())
    assert env["kernels"] == path, env["kernels_reason"]
    assert env["kernels_reason"]


@pytest.mark.parametrize("model,sections,why", [
    ("gcn", {}, "has no native step"),
    ("lightgcn", {"model": {"name": "lightgcn", "emb_dim": 16, "message_dropout": 0.1}},
     "autograd step"),
])
def test_native_where_the_step_cannot_take_it_is_a_one_line_error(tmp_path, tiny_paths, model,
                                                                  sections, why):
    if library() is None:
        why = "native kernels off"
    with pytest.raises(ConfigError, match="train.kernels: native asked for") as err:
        _train(tmp_path, tiny_paths, f"n-{model}",
               **{"model": {"name": model, "emb_dim": 16}, **sections},
               train={"epochs": 1, "kernels": "native", "num_threads": 1})
    assert why in str(err.value) and "\n" not in str(err.value)


def test_native_without_the_kernels_is_a_one_line_error(tmp_path, tiny_paths, monkeypatch):
    monkeypatch.setenv("RECBENCH_NATIVE", "0")
    with pytest.raises(ConfigError, match=r"RECBENCH_NATIVE=0\); set train.kernels: auto or"):
        _train(tmp_path, tiny_paths, "n-off", train={"epochs": 1, "kernels": "native",
                                                     "num_threads": 1})
