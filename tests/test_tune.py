"""`recbench tune` on tiny data: resume without duplicate runs, pruning, the report, bad input."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from recbench import runs, tune  # noqa: E402
from recbench.errors import ConfigError, RunError  # noqa: E402
from recbench.executors import LocalExecutor  # noqa: E402
from recbench.studies import report, search  # noqa: E402
from tests.conftest import write_experiment  # noqa: E402

SPACE = {"params": {"train.lr": {"type": "float", "low": 0.005, "high": 0.1, "log": True},
                    "model.emb_dim": {"type": "categorical", "choices": [4, 8]}},
         "startup_trials": 2, "warmup_evaluations": 0, "seed": 3}


def _setup(tmp_path, tiny_paths, space=None, name="s") -> tune.TuneSetup:
    exp = write_experiment(tmp_path, "tiny-bpr", train={"epochs": 6, "patience": None})
    return tune.TuneSetup(
        experiment=str(exp), overrides=(), space=tune.SearchSpace.model_validate(
            space or SPACE).model_dump(), name=name,
        storage=tune.default_storage(tmp_path / "runs", name), data_root=str(tiny_paths.root),
        runs_root=str(tmp_path / "runs"), threads=1)


def _run_dirs(tmp_path) -> list:
    return sorted(p for p in (tmp_path / "runs" / "tiny-bpr").iterdir() if p.is_dir())


def test_interrupted_search_resumes_to_the_same_count_without_duplicate_runs(tmp_path, tiny_paths):
    setup = _setup(tmp_path, tiny_paths)
    tune.search(setup, 2, LocalExecutor())  # "interrupted" after two trials
    # a third trial killed mid-run: RUNNING in the storage, a .partial run on disk
    study = tune.open_study(setup, tune.search_config(setup))
    trial = study.ask()
    cfg = tune.with_overrides(tune.search_config(setup), tune.suggest(
        trial, tune.SearchSpace.model_validate(setup.space)))

    def die(rec):
        if rec["epoch"] == 2:
            raise KeyboardInterrupt

    from recbench.runner import train_run

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tiny_paths, tmp_path / "runs", progress=die)
    partial = runs.find_partial(tmp_path / "runs", cfg.name, tune.run_hash(cfg))
    assert partial is not None

    study = tune.search(setup, 4, LocalExecutor())
    assert tune.counted(study) == 4
    assert runs.find_partial(tmp_path / "runs", cfg.name, tune.run_hash(cfg)) is None  # resumed
    hashes = {t.user_attrs["config_hash"] for t in study.get_trials(
        states=(TrialState.COMPLETE, TrialState.PRUNED))}
    assert len(_run_dirs(tmp_path)) == len(hashes)  # one run directory per distinct config
    again = tune.search(setup, 4, LocalExecutor())  # nothing left to do
    assert len(again.get_trials()) == len(study.get_trials())


def test_a_bad_trial_is_pruned_and_marked(tmp_path, tiny_paths):
    space = {**SPACE, "params": {"train.lr": {"type": "categorical", "choices": [0.05, 0.0]}},
             "startup_trials": 1}
    setup = _setup(tmp_path, tiny_paths, space, name="p")
    study = tune.open_study(setup, tune.search_config(setup))
    # on this tiny graph the frozen initial embeddings (lr 0) score 0.375 at every evaluation
    # and lr 0.05 starts at 0.17: the second trial is below the median from its first one
    study.enqueue_trial({"train.lr": 0.0})
    study.enqueue_trial({"train.lr": 0.05})
    study = tune.search(setup, 2, LocalExecutor())
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED]
    pruned = study.get_trials()[1]
    assert runs.find_partial(tmp_path / "runs", "tiny-bpr", pruned.user_attrs["config_hash"])
    summary = tune.summary(study, setup, tune.best_patch(study), "recall@5")
    assert [r["state"] for r in summary.rows] == ["complete", "pruned"]
    assert (summary.complete, summary.pruned, summary.failed) == (1, 1, 0)
    assert "| 1 | pruned |" in search.trials_markdown(summary)
    assert "trial-epochs run over 2 trials (1 pruned)" in search.compute_line(summary.rows)


def test_report_writes_best_yaml_that_loads(tmp_path, tiny_paths):
    setup = _setup(tmp_path, tiny_paths, name="r")
    study = tune.search(setup, 3, LocalExecutor())
    patch = tune.best_patch(study)
    folder = tmp_path / "results" / "tune-r"
    folder.mkdir(parents=True)
    written = report.write_search(tune.summary(study, setup, patch, "recall@5"), folder, 0.1, "—")
    assert {"search.md", "trials.md", "trials.csv", "best.yaml", "history.png"} <= set(written)
    best = tune.load_experiment(folder / "best.yaml")
    assert best.train.lr == pytest.approx(patch["train.lr"])
    assert best.model.emb_dim == patch["model.emb_dim"]
    assert "beats" in (folder / "search.md").read_text()


def test_trials_share_run_directories_with_studies(tmp_path, tiny_paths):
    """The final study's 'tuned' run at the search seed is the best trial's run, not a rerun."""
    from recbench import studies

    setup = _setup(tmp_path, tiny_paths, name="f")
    study = tune.search(setup, 2, LocalExecutor())
    final = tune.final_study(setup, tune.best_patch(study), [0], "recall@5")
    tuned = next(p for p in studies.plan(final, tmp_path / "runs") if p.variant == "tuned")
    assert tuned.cached is not None
    assert str(tuned.cached) == study.best_trial.user_attrs["run_dir"]


def test_space_errors_are_one_line(tmp_path, tiny_paths):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"params": {"train.lr": {"type": "float", "low": 1}}}))
    with pytest.raises(ConfigError, match="low < high"):
        tune.read_space(bad)
    bad.write_text(yaml.safe_dump({"params": {"train.lr": {"type": "float", "low": 0,
                                                           "high": 1, "log": True}}}))
    with pytest.raises(ConfigError, match="log: true needs low > 0"):
        tune.read_space(bad)
    setup = _setup(tmp_path, tiny_paths, {"params": {"model.nope": {
        "type": "categorical", "choices": [1]}}}, name="e")
    with pytest.raises(ConfigError, match="model.nope"):
        tune.search(setup, 1, LocalExecutor())


def test_storage_is_an_ordinary_optuna_sqlite_file(tmp_path, tiny_paths):
    setup = _setup(tmp_path, tiny_paths, name="db")
    tune.search(setup, 1, LocalExecutor())
    path = setup.storage.removeprefix("sqlite:///")
    with sqlite3.connect(path) as con:
        assert con.execute("select count(*) from trials").fetchone()[0] == 1
    assert asdict(setup)["name"] == "db"


def test_cli_tune_end_to_end_then_cached(tmp_path, tiny_paths):
    from typer.testing import CliRunner

    from recbench.cli import app

    exp = write_experiment(tmp_path, "tiny-bpr", train={"epochs": 6, "patience": None})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    args = ["tune", str(exp), "--space", str(space), "--trials", "3", "--seeds", "0,1",
            "--name", "cli", "--threads", "1", "--data-dir", str(tiny_paths.root),
            "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "results" / "tune-cli"
    for name in ("table.md", "search.md", "trials.md", "trials.csv", "best.yaml", "history.png"):
        assert (folder / name).is_file(), name
    table = (folder / "table.md").read_text()
    assert "| tuned |" in table and "| hand-picked |" in table
    # the final study is served by the study session: its runs are recorded in the ledger,
    # runs.txt names those records, and search.md compares with the hand-picked record
    assert len(list((folder / "ledger" / "tiny-bpr").iterdir())) >= 3
    assert "ledger/tiny-bpr/" in (folder / "runs.txt").read_text()
    text = (folder / "search.md").read_text()
    assert "hand-picked at the same seed: " in text and "tuned " in text.splitlines()[-1]
    n_dirs = len(_run_dirs(tmp_path))
    again = CliRunner().invoke(app, args)  # everything cached: no new trial, no new run
    assert again.exit_code == 0, again.output
    assert len(_run_dirs(tmp_path)) == n_dirs


def test_search_record_round_trips_every_trial(tmp_path, tiny_paths):
    """Issue 34: the record rebuilds an Optuna study with the same trials, best trial and
    pages; runs are named relative to the runs folder, with the epochs they trained."""
    setup = _setup(tmp_path, tiny_paths, name="rec")
    study = tune.search(setup, 3, LocalExecutor())
    record = tune.search_record(study, setup, [0, 1])
    assert [t["number"] for t in record["trials"]] == [t.number for t in study.trials]
    assert all(not Path(t["user_attrs"]["run_dir"]).is_absolute() for t in record["trials"])
    assert all(t["epochs"] > 0 for t in record["trials"])
    # as the ledger writes it: sorted keys (the space lists train.lr before model.emb_dim)
    again = tune.study_from_record(json.loads(json.dumps(record, sort_keys=True)),
                                   list(setup.space["params"]))
    assert tune.best_patch(again) == tune.best_patch(study)
    assert again.best_trial.number == study.best_trial.number
    assert [t.intermediate_values for t in again.trials] == \
        [t.intermediate_values for t in study.trials]
    live = tune.summary(study, setup, tune.best_patch(study), "recall@5")
    recorded = tune.summary(again, setup, tune.best_patch(again), "recall@5")
    assert search.compute_line(recorded.rows) == search.compute_line(live.rows)
    assert recorded.best_yaml == live.best_yaml
    path = tmp_path / "ledger" / tune.SEARCH_RECORD
    tune.write_search_record(path, record)
    fewer = {**record, "trials": record["trials"][:1]}
    with pytest.raises(RunError, match="records 3 trials and this search only 1"):
        tune.write_search_record(path, fewer)


def test_cli_tune_report_only_rebuilds_the_folder_on_a_fresh_clone(tmp_path, tiny_paths):
    """Issue 34: with the runs and the Optuna storage gone (a fresh clone), ``tune
    --report-only`` writes every committed file of results/tune-NAME/ byte for byte from the
    ledger (the search's record, the final study's run records), and records nothing new."""
    from typer.testing import CliRunner

    from recbench.cli import app

    exp = write_experiment(tmp_path, "tiny-bpr", train={"epochs": 6, "patience": None})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    common = [str(exp), "--space", str(space), "--seeds", "0,1", "--name", "fresh",
              "--threads", "1", "--data-dir", str(tiny_paths.root),
              "--results-dir", str(tmp_path / "results")]
    out = CliRunner().invoke(app, ["tune", *common, "--trials", "3",
                                   "--runs-dir", str(tmp_path / "runs")])
    assert out.exit_code == 0, out.output
    folder = tmp_path / "results" / "tune-fresh"
    record = json.loads((folder / "ledger" / tune.SEARCH_RECORD).read_text())
    assert record["space_file"] == str(space) and record["seeds"] == [0, 1]
    committed = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for path in committed:
        if "ledger" not in path.parts:
            (folder / path).unlink()
    empty = tmp_path / "fresh-runs"
    out = CliRunner().invoke(app, ["tune", *common, "--report-only", "--runs-dir", str(empty)])
    assert out.exit_code == 0, out.output
    rebuilt = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert sorted(rebuilt) == sorted(committed)
    assert [str(p) for p in committed if rebuilt[p] != committed[p]] == []
    assert not (empty / "tune").exists()  # no Optuna storage made for a report
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**SPACE, "seed": 4}))
    bad = CliRunner().invoke(app, ["tune", str(exp), "--space", str(other), "--name", "fresh",
                                   "--report-only", "--results-dir", str(tmp_path / "results"),
                                   "--runs-dir", str(empty), "--data-dir", str(tiny_paths.root)])
    assert bad.exit_code != 0
    assert "records search 'fresh' with another space" in bad.output
    assert "Traceback" not in bad.output


def test_cli_tune_bad_space_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from recbench.cli import app

    exp = write_experiment(tmp_path, "tiny-bpr")
    result = CliRunner().invoke(app, ["tune", str(exp), "--space", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no such search space file" in result.output


def test_parallel_workers_never_train_one_config_twice(tmp_path, tiny_paths):
    """Two local worker processes on one SQLite storage: distinct start-up draws per worker,
    and a config reached by both is trained once (the second waits on its lock)."""
    setup = _setup(tmp_path, tiny_paths, {**SPACE, "params": {"model.emb_dim": {
        "type": "categorical", "choices": [4, 8]}}}, name="par")
    study = tune.search(setup, 4, LocalExecutor(jobs=2), workers=2)
    assert tune.counted(study) == 4
    names = [p.name for p in _run_dirs(tmp_path)]
    hashes = [n.rsplit("-", 1)[1].removesuffix(".partial") for n in names]
    assert len(hashes) == len(set(hashes)) <= 2  # two possible configs, each trained once


def test_a_second_driver_does_not_recover_a_live_drivers_trials(tmp_path):
    """Only a driver that is alone on a local search fails and re-queues RUNNING trials; one
    joining a live search (a second `recbench tune` on the same name) leaves them alone."""
    from recbench.tune import driver_lock

    url = f"sqlite:///{tmp_path / 'search.db'}"
    with driver_lock(url) as first:
        assert first
        with driver_lock(url) as second:
            assert not second
    with driver_lock(url) as again:  # the first driver is gone: recovery is safe again
        assert again


def test_a_resumed_search_does_not_replay_its_first_draws(tmp_path, tiny_paths):
    """A seeded sampler started again must not draw the finished trials' parameters again
    (they would be cache hits counted as new trials): 2 + 2 trials are 4 distinct configs."""
    space = {**SPACE, "params": {"train.lr": SPACE["params"]["train.lr"]},
             "startup_trials": 4}  # all four from the seeded random start-up draws
    setup = _setup(tmp_path, tiny_paths, space, name="r")
    tune.search(setup, 2, LocalExecutor())
    study = tune.search(setup, 4, LocalExecutor())
    lrs = [t.params["train.lr"] for t in study.get_trials(states=(TrialState.COMPLETE,
                                                                   TrialState.PRUNED))]
    assert len(lrs) == 4 and len(set(lrs)) == 4


def test_the_warm_up_counts_evaluations_not_epochs():
    """warmup_evaluations: 2 with an evaluation every 5 epochs (the steps Optuna sees are
    epochs 5, 10, 15, ...): a trial far below the median is first pruned at its third
    evaluation, epoch 15."""
    import optuna

    space = tune.SearchSpace.model_validate({**SPACE, "startup_trials": 1,
                                             "warmup_evaluations": 2})
    study = optuna.create_study(direction="maximize", pruner=tune._pruner(space, eval_every=5))
    good = study.ask()
    for epoch in (5, 10, 15, 20):
        good.report(0.5, epoch)
    study.tell(good, 0.5)
    bad = study.ask()
    decisions = []
    for epoch in (5, 10, 15):
        bad.report(0.1, epoch)
        decisions.append(bad.should_prune())
    assert decisions == [False, False, True]


def test_halving_and_hyperband_start_at_the_warm_up_in_epochs():
    """warmup_evaluations: 2 at an evaluation every 5 epochs is a smallest resource of 10
    epochs: successive halving prunes a trial worse than the first at epoch 10, never at its
    first evaluation (epoch 5); Hyperband's brackets never prune before epoch 10 either."""
    import optuna

    def trial_decisions(pruner_name: str, values: list[float]) -> list[list[bool]]:
        space = tune.SearchSpace.model_validate({**SPACE, "pruner": pruner_name,
                                                 "warmup_evaluations": 2})
        study = optuna.create_study(direction="maximize",
                                    pruner=tune._pruner(space, eval_every=5, max_epochs=600))
        out = []
        for value in values:
            trial, decisions = study.ask(), []
            for epoch in (5, 10):
                trial.report(value, epoch)
                decisions.append(trial.should_prune())
                if decisions[-1]:
                    break
            if decisions[-1]:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, value)
            out.append(decisions)
        return out

    assert trial_decisions("halving", [0.5, 0.1]) == [[False, False], [False, True]]
    for decisions in trial_decisions("hyperband", [0.5 - 0.01 * i for i in range(12)]):
        assert decisions[0] is False  # epoch 5: below every bracket's smallest resource


def _interrupting_train_run(monkeypatch, at_epoch: int = 2):
    """recbench.runner.train_run whose first run is interrupted (Ctrl-C) at ``at_epoch``."""
    from recbench import runner

    real, calls = runner.train_run, {"n": 0}

    def train_run(cfg, paths, root, device="cpu", resume=None, progress=None, threads=None):
        calls["n"] += 1
        if calls["n"] > 1:
            return real(cfg, paths, root, device, resume, progress, threads=threads)

        def hit(rec):
            if progress:
                progress(rec)
            if rec["epoch"] == at_epoch:
                raise KeyboardInterrupt

        return real(cfg, paths, root, device, resume, hit, threads=threads)

    monkeypatch.setattr(runner, "train_run", train_run)


def test_ctrl_c_leaves_the_running_trial_retriable_not_failed(tmp_path, tiny_paths, monkeypatch):
    """Issue 31 item 8: Ctrl-C in a trial left it FAIL, never retried, its .partial orphaned.
    Now the trial goes back to WAITING (same number, same parameters) and the next search
    resumes its run folder."""
    setup = _setup(tmp_path, tiny_paths, {**SPACE, "pruner": "none"}, name="int")
    tune.search(setup, 1, LocalExecutor())
    _interrupting_train_run(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tune.search(setup, 3, LocalExecutor())
    study = tune.open_study(setup, tune.search_config(setup))
    states = [t.state for t in study.get_trials()]
    assert TrialState.FAIL not in states and states.count(TrialState.WAITING) == 1
    waiting = study.get_trials(states=(TrialState.WAITING,))[0]
    partials = [p for p in _run_dirs(tmp_path) if p.name.endswith(runs.PARTIAL)]
    assert len(partials) == 1 and (partials[0] / "last.pt").is_file()
    study = tune.search(setup, 3, LocalExecutor())
    assert tune.counted(study) == 3
    assert TrialState.FAIL not in [t.state for t in study.get_trials()]
    assert study.trials[waiting.number].state == TrialState.COMPLETE
    assert study.trials[waiting.number].params == waiting.params
    assert not partials[0].exists()  # resumed and finished under its own name
    assert partials[0].with_name(partials[0].name.removesuffix(runs.PARTIAL)).is_dir()


def test_ctrl_c_before_the_first_checkpoint_leaves_no_partial(tmp_path, tiny_paths, monkeypatch):
    """A run interrupted before its first last.pt has nothing to resume: no orphan .partial."""
    setup = _setup(tmp_path, tiny_paths, name="int0")
    from recbench import runner

    def no_epoch(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_checkpoint", no_epoch)
    with pytest.raises(KeyboardInterrupt):
        tune.search(setup, 1, LocalExecutor())
    assert not (tmp_path / "runs" / "tiny-bpr").exists() or not _run_dirs(tmp_path)


def test_cli_ctrl_c_in_tune_is_one_line(tmp_path, tiny_paths, monkeypatch, capfd, caplog):
    """Issue 31 items 8/16: Ctrl-C in `recbench tune` printed Optuna's 25-line traceback."""
    from typer.testing import CliRunner

    from recbench.cli import app

    exp = write_experiment(tmp_path, "tiny-bpr", train={"epochs": 6, "patience": None})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    _interrupting_train_run(monkeypatch)
    result = CliRunner().invoke(app, [
        "tune", str(exp), "--space", str(space), "--trials", "2", "--name", "cc",
        "--threads", "1", "--data-dir", str(tiny_paths.root), "--runs-dir",
        str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")])
    captured = capfd.readouterr()
    everything = result.output + captured.out + captured.err
    assert result.exit_code == 130, everything
    assert "Traceback" not in everything and "failed" not in everything
    assert not [r for r in caplog.records if "failed" in r.getMessage() or r.exc_info]
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0]


@pytest.mark.parametrize(("url", "expected"), [
    ("nonsense", "not a storage URL"),
    ("postgresql://user@localhost/optuna", "pip install psycopg2-binary"),
    ("mysql://user@localhost/optuna", "pip install mysqlclient"),
    ("sqlite:////nonexistent-recbench/dir/x.db", "cannot be opened"),
    ("redis://localhost", "not a storage URL"),
])
def test_cli_bad_storage_url_is_one_line(tmp_path, url, expected):
    """Issue 31 item 16: a bad --storage gave SQLAlchemy/ImportError tracebacks, and the
    postgresql:// the docs show needs a driver they did not name."""
    from typer.testing import CliRunner

    from recbench.cli import app

    try:
        import psycopg2  # noqa: F401
        if url.startswith("postgresql"):
            pytest.skip("psycopg2 is installed here: the missing-driver message cannot show")
    except ImportError:
        pass
    exp = write_experiment(tmp_path, "tiny-bpr")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    result = CliRunner().invoke(app, ["tune", str(exp), "--space", str(space), "--storage", url,
                                      "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = " ".join(ln for ln in result.output.splitlines() if not ln.startswith("search "))
    assert errors.startswith("error:") and expected in errors, result.output


def test_docs_name_the_postgresql_driver():
    from pathlib import Path

    usage = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text()
    assert "psycopg2-binary" in usage


def test_a_full_disk_in_a_trial_leaves_it_retriable(tmp_path, tiny_paths, caplog):
    """A file-system error in a trial is the machine's state, not the trial's result: the
    trial goes back to WAITING (no FAIL, no Optuna traceback) and the error reaches the caller."""
    import errno

    from recbench import runner

    setup = _setup(tmp_path, tiny_paths, {**SPACE, "pruner": "none"}, name="disk")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "last.pt")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "_checkpoint", full)
        errors = []
        tune.search(setup, 2, LocalExecutor(), on_result=lambda i, v, e: errors.append(e))
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    study = tune.open_study(setup, tune.search_config(setup))
    assert [t.state for t in study.get_trials()] == [TrialState.WAITING]
    assert not [r for r in caplog.records if r.exc_info]
    study = tune.search(setup, 2, LocalExecutor())
    assert tune.counted(study) == 2 and study.trials[0].state == TrialState.COMPLETE


def test_a_trial_never_reads_back_a_run_of_other_data(tmp_path, tiny_paths):
    """Issue 31.5's gap in tune: a trial whose config hash matched a run trained before the
    split was rebuilt from other data took that run's validation figure as its own."""
    from optuna.trial import FixedTrial

    from recbench.data.prepare import preprocess, register_custom
    from tests.conftest import make_interactions

    setup = _setup(tmp_path, tiny_paths)
    base = tune.search_config(setup)
    params = {"train.lr": 0.01, "model.emb_dim": 4}
    tune.run_trial(FixedTrial(params), setup, base, tiny_paths)
    first = _run_dirs(tmp_path)
    tune.run_trial(FixedTrial(params), setup, base, tiny_paths)  # same data: read back
    assert _run_dirs(tmp_path) == first
    csv = tmp_path / "new.csv"
    make_interactions(seed=1).to_csv(csv, index=False)
    register_custom(csv, "tiny", tiny_paths, None, None, "rating", "timestamp", force=True)
    preprocess(base.dataset, tiny_paths)
    tune.run_trial(FixedTrial(params), setup, base, tiny_paths)
    assert len(_run_dirs(tmp_path)) == 2  # trained again on the new split


def test_search_plots_leave_the_study_plot_style_alone(tmp_path, tiny_paths):
    """Optuna's plots set matplotlib's "ggplot" style process-wide; a study plot drawn after
    them (tune's final study, or a report-only rebuild later in the process) changed bytes."""
    import matplotlib

    setup = _setup(tmp_path, tiny_paths, name="style")
    study = tune.search(setup, 2, LocalExecutor())
    before = {k: matplotlib.rcParams[k] for k in ("axes.facecolor", "axes.grid", "axes.prop_cycle")}
    assert "history.png" in tune.plots(study)
    assert {k: matplotlib.rcParams[k] for k in before} == before


def test_cli_tune_bad_final_seeds_are_one_line_before_any_trial(tmp_path):
    """--seeds was parsed after the whole search, and a typo ended it in a ValueError
    traceback; now it is one line before the first trial (no storage, no run)."""
    from typer.testing import CliRunner

    from recbench.cli import app

    exp = write_experiment(tmp_path, "tiny-bpr")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    result = CliRunner().invoke(app, ["tune", str(exp), "--space", str(space), "--seeds", "0,x",
                                      "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--seeds '0,x': give comma-separated integers" in result.output
    assert not (tmp_path / "runs").exists()
