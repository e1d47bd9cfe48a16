"""Run directories: eval reproduces metrics.json, resume continues, nothing is overwritten."""

from __future__ import annotations

import json

import pytest
import torch

from recbench import runs
from recbench.config import expand_seeds, hash_plain, run_hash, to_plain
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


def test_resume_with_the_runs_own_start_command_and_threads(tmp_path, tiny_paths):
    """Issue 31 item 18: `train EXP --threads N --resume RUN` (the run's start command plus
    --resume) is the same config: num_threads is left out of the hash, so not compared."""
    from tests.test_cli import _invoke

    exp = write_experiment(tmp_path, "bpr")
    cfg = expand_seeds(load_experiment(exp, ["train.num_threads=1"]))[0]
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tiny_paths, tmp_path / "runs", progress=interrupt_at(2))
    partial = runs.find_partial(tmp_path / "runs", cfg.name, run_hash(cfg))
    result, out = _invoke("train", str(exp), "--threads", "1", "--resume", str(partial),
                          "--data-dir", str(tiny_paths.root), "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, out
    assert len(list((tmp_path / "runs" / "bpr").glob("*[0-9a-f]"))) == 1


def _fail_writes_of(monkeypatch, suffix: str, errno_: int) -> None:
    """Every fsync of a file whose name ends with ``suffix`` fails with ``errno_`` (a full
    disk reports ENOSPC at the latest when the data is flushed)."""
    import errno
    import os

    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(suffix):
            raise OSError(errno_, os.strerror(errno_))
        return real(fd)

    monkeypatch.setattr(runs.os, "fsync", fsync)
    assert errno.ENOSPC


def test_atomic_write_leaves_no_tmp_on_a_full_disk(tmp_path, monkeypatch):
    """Issue 31 item 15: a full disk left `.last.pt.tmp` behind."""
    import errno

    _fail_writes_of(monkeypatch, ".tmp", errno.ENOSPC)
    with pytest.raises(OSError):
        runs.atomic_write_bytes(tmp_path / "last.pt", b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def _cli_train(tmp_path, tiny_paths, runs_dir):
    from tests.test_cli import _invoke, _one_error_line

    exp = write_experiment(tmp_path, "bpr")
    result, out = _invoke("train", str(exp), "--threads", "1", "--data-dir",
                          str(tiny_paths.root), "--runs-dir", str(runs_dir))
    return result, (_one_error_line(out) if result.exit_code else out)


def test_a_full_disk_during_training_is_one_line_and_leaves_no_tmp(tmp_path, tiny_paths,
                                                                   monkeypatch):
    import errno

    _fail_writes_of(monkeypatch, ".last.pt.tmp", errno.ENOSPC)
    result, msg = _cli_train(tmp_path, tiny_paths, tmp_path / "runs")
    assert result.exit_code == 2 and "No space left on device" in msg
    assert not [p for p in (tmp_path / "runs").rglob("*") if ".tmp" in p.name]


def test_a_read_only_runs_folder_is_one_line(tmp_path, tiny_paths, monkeypatch):
    import errno
    import os
    import pathlib

    real = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if "runs" in self.parts:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    result, msg = _cli_train(tmp_path, tiny_paths, tmp_path / "runs")
    assert result.exit_code == 2 and "Read-only file system" in msg and "runs" in msg


@pytest.mark.parametrize("what", ["file", "dangling symlink"])
def test_a_runs_dir_that_is_not_a_folder_is_one_line(tmp_path, tiny_paths, what):
    target = tmp_path / "runs"
    if what == "file":
        target.write_text("not a folder")
    else:
        target.symlink_to(tmp_path / "gone")
    result, msg = _cli_train(tmp_path, tiny_paths, target)
    assert result.exit_code == 2 and "--runs-dir" in msg and str(target) in msg
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("value", ["abc", None, [1, 2], True])
def test_eval_of_a_non_number_in_metrics_json_is_one_line(tmp_path, tiny_paths, value):
    """Issue 31 item 17: a string under metrics.json's test metrics gave a ValueError
    traceback in `recbench eval`."""
    from tests.test_cli import _invoke, _one_error_line

    _, run_dir = _train(tmp_path, tiny_paths)
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["test"][next(iter(metrics["test"]))] = value
    path.write_text(json.dumps(metrics))
    result, out = _invoke("eval", str(run_dir), "--data-dir", str(tiny_paths.root))
    assert result.exit_code == 2 and "metrics.json" in _one_error_line(out)
    assert "not a number" in out


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


def _expected_scales(valid: list[float], decay: float, every: int) -> list[float]:
    """The lr scale after each validation, replayed from the validation curve (higher is
    better): a decay after every ``every`` validations without a new best."""
    best, bad, scale, out = None, 0, 1.0, []
    for v in valid:
        if best is None or v > best:
            best, bad = v, 0
        else:
            bad += 1
            if bad % every == 0:
                scale *= decay
        out.append(scale)
    return out


@pytest.mark.parametrize("model", [{"name": "bpr_mf", "emb_dim": 8},
                                   {"name": "lightgcn", "emb_dim": 8, "num_layers": 2}])
def test_plateau_decay_scales_the_rate_after_validations_without_improving(tmp_path, tiny_paths,
                                                                           model):
    """train.plateau_decay: the rate the optimiser holds follows the validation curve, the run
    hash of a config without the key is unchanged, and a resumed run decays as an uninterrupted
    one does (BPR-MF and LightGCN, whose step takes Adam's update from the native kernels)."""
    train = {"epochs": 12, "lr": 0.05, "patience": None, "plateau_decay": 0.5,
             "plateau_patience": 1}
    cfg, run = _train(tmp_path, tiny_paths, "decayed", model=model, train=train)
    history = [json.loads(ln) for ln in (run / "history.jsonl").read_text().splitlines()]
    monitor = runs.read_metrics(run)["monitor"]
    valid = [h[f"valid_{monitor}"] for h in history]
    scales = [h["lr_scale"] for h in history]
    assert scales == pytest.approx(_expected_scales(valid, 0.5, 1))
    assert min(scales) < 1.0  # the tiny curve does stall, so the rule was exercised
    last = torch.load(run / "last.pt", weights_only=True)
    lrs = [g["lr"] for g in last["trainer"]["opt"]["param_groups"]]
    assert lrs and lrs == pytest.approx([0.05 * scales[-1]] * len(lrs))

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tiny_paths, tmp_path / "runs2", progress=interrupt_at(7))
    partial = runs.find_partial(tmp_path / "runs2", cfg.name, run_hash(cfg))
    done = train_run(cfg, tiny_paths, tmp_path / "runs2", resume=partial)
    again = [json.loads(ln) for ln in (done / "history.jsonl").read_text().splitlines()]
    assert [h["lr_scale"] for h in again] == scales
    assert runs.read_metrics(done)["test"] == pytest.approx(runs.read_metrics(run)["test"])

    # a config.yaml written before the keys existed keeps its hash
    plain = to_plain(expand_seeds(load_experiment(write_experiment(tmp_path, "old")))[0])
    older = {**plain, "train": {k: v for k, v in plain["train"].items()
                                if k not in ("plateau_decay", "plateau_patience")}}
    assert "plateau_decay" in plain["train"] and hash_plain(older) == hash_plain(plain)


def test_lr_milestones_replay_a_chosen_schedule_without_validation(tmp_path, tiny_paths):
    """train.lr_milestones: the rate halves after each listed epoch, on a run with no
    validation split (the refit on all training pairs), and resume keeps the decayed rate."""
    train = {"epochs": 8, "lr": 0.05, "patience": None, "lr_milestones": [2, 5],
             "lr_gamma": 0.5}
    data = {"name": "tiny", "valid_ratio": 0.0}
    cfg, run = _train(tmp_path, tiny_paths, "steps", dataset=data, train=train)
    history = [json.loads(ln) for ln in (run / "history.jsonl").read_text().splitlines()]
    assert [h["lr_scale"] for h in history] == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    last = torch.load(run / "last.pt", weights_only=True)
    assert [g["lr"] for g in last["trainer"]["opt"]["param_groups"]] == pytest.approx([0.0125])

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tiny_paths, tmp_path / "runs2", progress=interrupt_at(4))
    partial = runs.find_partial(tmp_path / "runs2", cfg.name, run_hash(cfg))
    done = train_run(cfg, tiny_paths, tmp_path / "runs2", resume=partial)
    again = [json.loads(ln) for ln in (done / "history.jsonl").read_text().splitlines()]
    assert [h["lr_scale"] for h in again] == [h["lr_scale"] for h in history]
    assert runs.read_metrics(done)["test"] == pytest.approx(runs.read_metrics(run)["test"])

    plain = to_plain(expand_seeds(load_experiment(write_experiment(tmp_path, "old")))[0])
    older = {**plain, "train": {k: v for k, v in plain["train"].items()
                                if k not in ("lr_milestones", "lr_gamma")}}
    assert hash_plain(older) == hash_plain(plain)  # configs before the keys keep their hash


def test_lr_milestones_and_plateau_decay_together_is_one_line(tmp_path, tiny_paths):
    with pytest.raises(RunError, match="keep one of them"):
        _train(tmp_path, tiny_paths, "both",
               train={"epochs": 2, "plateau_decay": 0.5, "lr_milestones": [0]})
    assert not list((tmp_path / "runs").glob("both/*"))


def test_plateau_decay_without_a_validation_split_is_one_line(tmp_path, tiny_paths):
    with pytest.raises(RunError, match="plateau_decay needs a validation split"):
        _train(tmp_path, tiny_paths, "novalid", dataset={"name": "tiny", "valid_ratio": 0.0},
               train={"epochs": 2, "plateau_decay": 0.5})
    assert not list((tmp_path / "runs").glob("novalid/*"))  # nothing half-made is left
