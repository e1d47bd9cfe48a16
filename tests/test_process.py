"""Process-wide settings are applied where a process starts (recbench.process), not by a build."""

from __future__ import annotations

import json

import torch

from recbench import memory, process
from recbench.config import expand_seeds
from recbench.data.prepare import load, resolve
from recbench.experiment import load_experiment
from tests.conftest import write_experiment


def _cfg(tmp_path, **sections):
    return expand_seeds(load_experiment(write_experiment(tmp_path, "p", **sections)))[0]


def test_building_a_run_leaves_the_process_settings_alone(tmp_path, tiny_paths):
    """runner.build used to apply the run's thread count (and the allocator): a second run
    built in one process re-set what the process had chosen."""
    from recbench import runner

    cfg = _cfg(tmp_path, train={"num_threads": 1})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        built = runner.build(cfg, tiny_paths)
        assert torch.get_num_threads() == 2
        assert built.threads is None
        torch.set_num_threads(3)
        settings = process.start(cfg, tiny_paths)
        assert torch.get_num_threads() == 1 and settings.threads.threads == 1
        assert "asked for" in settings.threads.reason and not settings.large_graph
        assert memory.reuse_freed_memory.cache_info().currsize  # taken by the start
    finally:
        torch.set_num_threads(before)


def test_large_graph_mode_is_decided_from_the_split_for_full_graph_gnns(tmp_path, tiny_paths,
                                                                        monkeypatch):
    gnn = _cfg(tmp_path, model={"name": "lightgcn", "emb_dim": 8, "num_layers": 1})
    assert not process.needs_large_graph_mode(gnn, tiny_paths)  # not processed yet: small
    load(gnn.dataset, tiny_paths)
    meta = json.loads((tiny_paths.processed_dir(resolve(gnn.dataset)) / "meta.json").read_text())
    train = meta["counts"]["train"]
    assert not process.needs_large_graph_mode(gnn, tiny_paths)
    monkeypatch.setattr(process, "LARGE_GRAPH_EDGES", 2 * train)  # as if the split were large
    assert process.needs_large_graph_mode(gnn, tiny_paths)
    sampled = gnn.model_copy(update={"model": gnn.model.model_copy(
        update={"training": "neighbor", "fanouts": [3]})})
    assert not process.needs_large_graph_mode(sampled, tiny_paths)
    assert not process.needs_large_graph_mode(_cfg(tmp_path), tiny_paths)  # BPR-MF
    taken = []
    monkeypatch.setattr(process, "keep_freed_memory", lambda: taken.append(1))
    assert process.start(gnn, tiny_paths).large_graph and taken == [1]
