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
    state = torch.load(run_dir / "last.pt")
    assert isinstance(state["model"], dict) and all(
        isinstance(v, torch.Tensor) for v in state["model"].values())


def test_track_test_records_best_test_evaluation_without_selecting(tmp_path, tiny_paths):
    """train.track_test (the official NGCF/LightGCN protocol) logs test at every validation and
    reports its best as labelled extras; best.pt and the headline stay validation-selected."""
    _, run = _train(tmp_path, tiny_paths, "tracked", train={"track_test": True, "epochs": 4})
    history = [json.loads(ln) for ln in (run / "history.jsonl").read_text().splitlines()]
    metrics = json.loads((run / "metrics.json").read_text())
    curve = [h["test_recall@5"] for h in history]
    assert len(curve) == 4 and all("valid_seconds" in h for h in history)
    assert metrics["extra"]["test_selected_recall@5"] == pytest.approx(max(curve))
    best = int(metrics["extra"]["test_selected_epoch"])
    assert curve[best] == max(curve)
    # the headline is the validation-selected epoch's test figure, not the test-selected one
    assert metrics["test"]["recall@5"] == pytest.approx(curve[metrics["best_epoch"]])
