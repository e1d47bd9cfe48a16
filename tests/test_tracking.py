"""Run tracking (issue 35): what TensorBoard and MLflow hold is read back and compared with the
run's own history.jsonl / metrics.json; with tracking off nothing is imported or written."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from recbench import runs, tracking
from recbench.config import expand_seeds, run_hash
from recbench.errors import ConfigError
from recbench.experiment import load_experiment
from recbench.runner import train_run
from tests.conftest import interrupt_at, write_experiment

TRACKER_MODULES = ("mlflow", "tensorboard", "torch.utils.tensorboard")


def _config(tmp_path, track, **sections):
    return expand_seeds(load_experiment(write_experiment(tmp_path, "bpr", track=track,
                                                         **sections)))[0]


def _history(run_dir):
    return [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]


def _tensorboard(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return acc


def _check_tensorboard(run_dir) -> None:
    """Every history number is a scalar at its epoch (float32, as TensorBoard stores it), the
    final test metrics sit at the best epoch, the config and env.json are there as text."""
    acc, history, metrics = _tensorboard(run_dir), _history(run_dir), runs.read_metrics(run_dir)
    expected: dict[str, list] = {}
    for rec in history:
        for tag, value in tracking.scalars(rec).items():
            expected.setdefault(tag, []).append((rec["epoch"], float(np.float32(value))))
    assert {"train/bpr", "valid/recall@5", "time/train_seconds"} <= set(expected)
    for tag, points in expected.items():
        assert [(e.step, e.value) for e in acc.Scalars(tag)] == points, tag
    for name, value in metrics["test"].items():
        assert [(e.step, e.value) for e in acc.Scalars(f"final/{name}")] == \
            [(metrics["best_epoch"], float(np.float32(value)))]
    assert {"config/text_summary", "env/text_summary"} <= set(acc.Tags()["tensors"])
    env = acc.Tensors("env/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert json.loads(env) == json.loads((run_dir / "env.json").read_text())


def _mlflow_run(runs_root, cfg):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.mlflow_uri(runs_root))
    experiment = client.get_experiment_by_name(cfg.name)
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 1  # one MLflow run per run folder, resumed or not
    return client, found[0]


def _check_mlflow(runs_root, cfg, run_dir) -> None:
    """Params (the config, flattened), every history number as a metric at its epoch, the
    final test metrics, env.json as an artifact, the run FINISHED and named by its hash."""
    client, run = _mlflow_run(runs_root, cfg)
    history, metrics = _history(run_dir), runs.read_metrics(run_dir)
    assert run.info.run_name == run_hash(cfg) and run.info.status == "FINISHED"
    assert run.data.tags[tracking.RUN_TAG] == run_dir.name
    params = run.data.params
    assert params["model.emb_dim"] == "8" and params["train.lr"] == "0.05"
    assert params["eval.k"] == "[5]" and "track" not in params
    expected: dict[str, list] = {}
    for rec in history:
        for tag, value in tracking.scalars(rec).items():
            expected.setdefault(tracking.mlflow_name(tag), []).append((rec["epoch"], value))
    assert {"train/bpr", "valid/recall_at_5"} <= set(expected)
    for key, points in expected.items():
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert got == points, key
    for name, value in metrics["test"].items():
        assert run.data.metrics[f"final/{tracking.mlflow_name(name)}"] == value
    env = json.loads((run_dir / "env.json").read_text())
    artifact = client.download_artifacts(run.info.run_id, "env.json", str(run_dir.parent))
    assert json.loads(open(artifact).read()) == env


def test_tracking_off_imports_and_writes_nothing(tmp_path, tiny_paths, monkeypatch):
    for name in TRACKER_MODULES:  # an import of any of them would now fail
        monkeypatch.setitem(sys.modules, name, None)
    cfg = _config(tmp_path, "none")
    run_dir = train_run(cfg, tiny_paths, tmp_path / "runs")
    assert cfg.track == [] and not (run_dir / "tb").exists()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["bpr"]


def test_tensorboard_and_mlflow_hold_what_the_run_wrote(tmp_path, tiny_paths):
    cfg = _config(tmp_path, ["tensorboard", "mlflow"], train={"track_test": True})
    run_dir = train_run(cfg, tiny_paths, tmp_path / "runs")
    assert "test/recall@5" in tracking.scalars(_history(run_dir)[0])  # track_test's curves
    _check_tensorboard(run_dir)
    _check_mlflow(tmp_path / "runs", cfg, run_dir)


def test_resume_continues_the_same_tracking_run(tmp_path, tiny_paths):
    """Interrupted after epoch 1, resumed: TensorBoard and MLflow hold each epoch once, equal
    to the resumed run's history; MLflow marked the interrupted run KILLED, then FINISHED."""
    cfg = _config(tmp_path, ["tensorboard", "mlflow"])
    root = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tiny_paths, root, progress=interrupt_at(2))
    assert _mlflow_run(root, cfg)[1].info.status == "KILLED"
    partial = runs.find_partial(root, cfg.name, run_hash(cfg))
    done = train_run(cfg, tiny_paths, root, resume=partial)
    assert [h["epoch"] for h in _history(done)] == [0, 1, 2, 3]
    _check_tensorboard(done)
    _check_mlflow(root, cfg, done)


def test_tensorboard_hides_epochs_logged_after_the_last_checkpoint(tmp_path, tiny_paths,
                                                                    monkeypatch):
    """Interrupted between logging epoch 2 and checkpointing it: the resume trains epoch 2
    again, and TensorBoard shows it once, with the resumed run's values."""
    from recbench import runner

    real, calls = runner._checkpoint, {"n": 0}

    def interrupted_third(*args) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(runner, "_checkpoint", interrupted_third)
    cfg = _config(tmp_path, "tensorboard")
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tiny_paths, tmp_path / "runs")
    partial = runs.find_partial(tmp_path / "runs", cfg.name, run_hash(cfg))
    assert [e.step for e in _tensorboard(partial).Scalars("train/bpr")] == [0, 1, 2]
    monkeypatch.setattr(runner, "_checkpoint", real)
    done = train_run(cfg, tiny_paths, tmp_path / "runs", resume=partial)
    _check_tensorboard(done)


def test_a_tracker_not_installed_is_one_line_and_leaves_no_run(tmp_path, tiny_paths, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    cfg = _config(tmp_path, "mlflow")
    with pytest.raises(ConfigError, match=r"mlflow is not installed; pip install 'recbench\[track\]'"):
        train_run(cfg, tiny_paths, tmp_path / "runs")
    assert list((tmp_path / "runs" / "bpr").iterdir()) == []


def test_a_damaged_mlflow_store_is_one_line(tmp_path, tiny_paths):
    from recbench.errors import RunError

    store = tmp_path / "runs" / tracking.MLFLOW_DIR
    store.mkdir(parents=True)
    (store / "mlflow.db").write_bytes(b"not a database" * 100)
    with pytest.raises(RunError, match=r"track: the MLflow store .*mlflow\.db cannot be used"
                                       r" \(.*\); move it aside") as err:
        train_run(_config(tmp_path, "mlflow"), tiny_paths, tmp_path / "runs")
    assert "\n" not in str(err.value)


def test_train_track_option_overrides_the_file(tmp_path, tiny_paths):
    from tests.test_cli import _invoke

    exp = write_experiment(tmp_path, "bpr", track="mlflow")
    where = ["--data-dir", str(tiny_paths.root), "--runs-dir", str(tmp_path / "runs")]
    result, out = _invoke("train", str(exp), "--track", "tensorboard", "--threads", "1", *where)
    assert result.exit_code == 0, out
    (run_dir,) = (tmp_path / "runs" / "bpr").iterdir()
    assert runs.read_config(run_dir)["track"] == ["tensorboard"]
    assert (run_dir / "tb").is_dir() and not (tmp_path / "runs" / tracking.MLFLOW_DIR).exists()
    assert run_dir.name.endswith(run_hash(expand_seeds(load_experiment(exp))[0]))
    bad, out = _invoke("train", str(exp), "--track", "wandb", *where)
    assert bad.exit_code == 2 and "track.0" in out and "'tensorboard' or 'mlflow'" in out


def test_a_study_set_track_tracks_its_runs_and_keeps_their_hashes(tmp_path, tiny_paths):
    """`ablate --set track=tensorboard`: the runs the study trains are tracked, and since the
    hash ignores `track` the untracked study finds them cached (and vice versa)."""
    import yaml

    from recbench import studies

    exp = write_experiment(tmp_path, "tiny-bpr")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "dims.yaml").write_text(yaml.safe_dump({
        "study": "dims", "description": "d", "base": [str(exp)], "vary": {"model.emb_dim": [4]},
        "seeds": [0], "metric": "recall@5"}))
    root = tmp_path / "runs"
    tracked = studies.plan(studies.load_study(tmp_path / "studies", "dims", ["track=tensorboard"]),
                           root)
    plain = studies.plan(studies.load_study(tmp_path / "studies", "dims"), root)
    assert [p.hash for p in tracked] == [p.hash for p in plain]
    assert studies.execute(tracked, tiny_paths, root) == []
    (cached,) = [p.cached for p in studies.plan(studies.load_study(tmp_path / "studies", "dims"),
                                                root)]
    assert cached is not None and (cached / "tb").is_dir()


def test_ablate_track_option_tracks_the_runs_it_trains(tmp_path, tiny_paths):
    """`ablate --track tensorboard` (a shared study option): the study's runs stream their
    curves, the ledger keeps the untracked hash, and a plain rerun finds them cached."""
    import yaml

    from tests.test_cli import _invoke

    exp = write_experiment(tmp_path, "tiny-bpr")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "dims.yaml").write_text(yaml.safe_dump({
        "study": "dims", "description": "d", "base": [str(exp)], "vary": {"model.emb_dim": [4]},
        "seeds": [0], "metric": "recall@5"}))
    where = ["--studies-dir", str(tmp_path / "studies"), "--data-dir", str(tiny_paths.root),
             "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
             "--threads", "1"]
    result, out = _invoke("ablate", "--study", "dims", "--track", "tensorboard", *where)
    assert result.exit_code == 0, out
    (run_dir,) = [d for d in (tmp_path / "runs" / "tiny-bpr").iterdir() if d.is_dir()]
    assert (run_dir / "tb").is_dir() and runs.read_config(run_dir)["track"] == ["tensorboard"]
    again, out = _invoke("ablate", "--study", "dims", *where)
    assert again.exit_code == 0 and "1 cached" in out, out
