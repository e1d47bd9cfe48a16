"""Run directories: eval reproduces metrics.json, resume continues, nothing is overwritten."""

from __future__ import annotations

import json

import pytest
import torch

from recbench import runs
from recbench.config import expand_seeds, run_hash
from recbench.errors import RunError
from recbench.experiment import load_experiment
from recbench.runner import evaluate_run, train_run
from tests.conftest import interrupt_at, write_experiment


def _train(tmp_path, tiny_paths, name="bpr", **sections):
    cfg = expand_seeds(load_experiment(write_experiment(tmp_path, name, **sections)))[0]
    return cfg, train_run(cfg, tiny_paths, tmp_path / "runs")


def test_run_directory_layout_and_eval_reproduces(tmp_path, tiny_paths):
    cfg, run_dir = _train(tmp_path, tiny_paths)
    assert run_dir.name.endswith(run_hash(cfg)) and runs.is_finished(run_dir)
    for name in ("config.yaml", "env.json", "history.jsonl", "metrics.json", "best.pt", "last.pt",
                 "log.txt", "per_unit.npz"):
        assert (run_dir / name).is_file(), name
    history = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    fresh, stored = evaluate_run(run_dir, tiny_paths)
    assert fresh == pytest.approx(stored, abs=1e-7)


def test_rating_model_eval_reproduces(tmp_path, tiny_paths):
    _, run_dir = _train(tmp_path, tiny_paths, "mf", model={"name": "biased_mf", "emb_dim": 4})
    fresh, stored = evaluate_run(run_dir, tiny_paths)
    assert set(stored) == {"rmse", "mae"} and fresh == pytest.approx(stored, abs=1e-7)


def test_same_seed_same_metrics(tmp_path, tiny_paths):
    _, a = _train(tmp_path, tiny_paths)
    _, b = _train(tmp_path, tiny_paths)
    assert a != b  # a second run never overwrites the first
    assert runs.read_metrics(a)["test"] == runs.read_metrics(b)["test"]


def test_resume_after_interruption_matches_uninterrupted(tmp_path, tiny_paths):
    cfg, full = _train(tmp_path, tiny_paths)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tiny_paths, tmp_path / "runs2", progress=interrupt_at(2))
    partial = runs.find_partial(tmp_path / "runs2", cfg.name, run_hash(cfg))
    assert partial is not None and not (partial / "metrics.json").exists()
    done = train_run(cfg, tiny_paths, tmp_path / "runs2", resume=partial)
    assert runs.read_metrics(done)["test"] == pytest.approx(runs.read_metrics(full)["test"])
    assert len((done / "history.jsonl").read_text().splitlines()) == 4


def test_finalize_refuses_to_overwrite(tmp_path):
    partial = runs.create_run_dir(tmp_path, "exp", "abc", {"a": 1})
    (partial.with_name(partial.name[: -len(runs.PARTIAL)])).mkdir()
    with pytest.raises(RunError, match="overwrite"):
        runs.finalize(partial)


def test_checkpoints_hold_state_dicts_only(tmp_path, tiny_paths):
    _, run_dir = _train(tmp_path, tiny_paths)
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert isinstance(state["model"], dict) and all(
        isinstance(v, torch.Tensor) for v in state["model"].values())


def test_a_checkpoint_asking_for_objects_is_refused_by_name_and_damage_stays_damage(tmp_path):
    """Issue 31.1: weights_only; what a refused file asks for is named (read without running
    it), and a merely damaged file is still called damaged."""
    import numpy as np

    path = tmp_path / "best.pt"
    torch.save({"model": {}, "score": np.float64(0.5)}, path)
    with pytest.raises(RunError, match=r"best.pt holds more than tensors .*numpy.*refuses"):
        runs.load_checkpoint(path)
    for junk in (b"", b"\x80\x04garbage\xff\x00{[: ", b"PK\x03\x04 truncated"):
        path.write_bytes(junk)
        with pytest.raises(RunError, match="is damaged"):
            runs.load_checkpoint(path)
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3, "loop": {"best": None}}, path)
    assert runs.load_checkpoint(path)["epoch"] == 3


def test_the_newest_of_two_runs_made_in_one_second_wins(tmp_path):
    """create_run_dir names a second run of the same second STAMP-1-HASH; a name sort put it
    before STAMP-HASH whenever the hash began with a digit above 1 (so --rerun's run lost)."""
    for name in ("20261206-000000-5abcdef012", "20261206-000000-1-5abcdef012"):
        (tmp_path / "e" / name).mkdir(parents=True)
        (tmp_path / "e" / name / "metrics.json").write_text("{}")
    assert runs.find_finished(tmp_path, "e", "5abcdef012").name == "20261206-000000-1-5abcdef012"


def test_a_partial_run_of_other_data_is_not_resumed(tmp_path, tiny_paths):
    """Issue 31.5: env.json records the split's data hash; resuming on other data is one line."""
    import json

    cfg = expand_seeds(load_experiment(write_experiment(tmp_path, "bpr")))[0]
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tiny_paths, tmp_path / "runs", progress=interrupt_at(2))
    partial = runs.find_partial(tmp_path / "runs", cfg.name, run_hash(cfg))
    assert runs.started_on(partial)
    env = json.loads((partial / "env.json").read_text())
    (partial / "env.json").write_text(json.dumps({**env, "data_hash": "0123456789"}))
    with pytest.raises(RunError, match="other data"):
        train_run(cfg, tiny_paths, tmp_path / "runs", resume=partial)
