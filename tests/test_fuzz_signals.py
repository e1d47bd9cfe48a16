"""Property-based tests (issue 31): Ctrl-C (or a failing write) at any point of preprocess,
fetch and tune.

Properties: the command ends with one line (exit 130 for Ctrl-C, 2 for a file-system error),
leaves no temp file and no half-made result that is later trusted: running it again gives
exactly what an uninterrupted run gives (the same processed split, the same verified files,
a search that reaches its trial count with no trial marked FAIL and no run trained twice).
Training runs are covered by test_fuzz_filesystem.py.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recbench.data import fetch as fetching
from recbench.data import graph, parsers, prepare
from tests.conftest import make_interactions, write_experiment
from tests.fuzz_faults import FAULTS, assert_one_line, fault_at, leftovers
from tests.test_cli import _invoke

FEW = settings(max_examples=max(6, settings.default.max_examples // 4))

PREPROCESS_POINTS = [(prepare, "load_raw"), (prepare, "split_codes"), (prepare, "build_graph"),
                     (prepare, "save_dataset"), (prepare, "_input_digests"),
                     (graph.os, "replace"), (parsers, "parse_table")]
SPLIT = ["--protocol", "random", "--test-ratio", "0.2", "--valid-ratio", "0.2"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sig")
    make_interactions().to_csv(folder / "tiny.csv", index=False)
    return folder / "tiny.csv"


def _meta_without_paths(folder: Path) -> dict:
    meta = json.loads(next(folder.rglob("meta.json")).read_text())
    return {k: v for k, v in meta.items() if k not in ("graph_sha256", "graph_bytes")}


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory) -> dict:
    data = tmp_path_factory.mktemp("ref") / "data"
    result, out = _invoke("preprocess", "mine", "--from", str(source), *SPLIT,
                          "--data-dir", str(data))
    assert result.exit_code == 0, out
    return _meta_without_paths(data / "processed" / "mine")


@FEW
@given(point=st.integers(0, len(PREPROCESS_POINTS) - 1), call=st.integers(0, 2),
       kind=st.sampled_from(FAULTS), after=st.booleans(), registered=st.booleans())
@example(point=3, call=0, kind="ctrl-c", after=False, registered=True)
@example(point=5, call=0, kind="ENOSPC", after=False, registered=False)
def test_preprocess_interrupted_anywhere_then_again_gives_the_same_split(
        source, reference, point, call, kind, after, registered):
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        args = ["preprocess", "mine", "--from", str(source), *SPLIT, "--data-dir", str(data)]
        if registered:  # the dataset exists already; only its split is being built
            assert _invoke(*args[:4], "--protocol", "holdout", "--data-dir", str(data))[
                0].exit_code == 0
        with fault_at(PREPROCESS_POINTS, point, call, kind, after) as hit:
            result, out = _invoke(*args)
        assert not leftovers(data), leftovers(data)
        if hit["fired"] and result.exit_code != 0:
            assert_one_line(result, out, kind)
        result, out = _invoke(*args)
        assert result.exit_code == 0, out
        assert _meta_without_paths(data / "processed" / "mine" /
                                   _key(data)) == reference


def _key(data: Path) -> str:
    folders = [p.name for p in (data / "processed" / "mine").iterdir() if p.name.startswith("random")]
    assert len(folders) == 1, folders
    return folders[0]


FETCH_POINTS = [(fetching.shutil, "copyfile"), (fetching, "_verify"), (fetching, "_install"),
                (fetching.os, "replace")]


@settings(max_examples=max(4, settings.default.max_examples // 6))
@given(point=st.integers(0, len(FETCH_POINTS) - 1), call=st.integers(0, 6),
       kind=st.sampled_from(FAULTS), after=st.booleans())
@example(point=2, call=3, kind="ctrl-c", after=False)
def test_fetch_interrupted_anywhere_then_again_is_complete_and_verified(mirror, point, call,
                                                                         kind, after):
    from recbench.data.datasets import get_dataset

    source = get_dataset("ml-100k")
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        args = ["fetch", "ml-100k", "--source", str(mirror), "--data-dir", str(data)]
        with fault_at(FETCH_POINTS, point, call, kind, after) as hit:
            result, out = _invoke(*args)
        if hit["fired"] and result.exit_code != 0:
            assert_one_line(result, out, kind)
            assert not fetching.is_fetched(source, data / "raw") or _verified(source, data)
        assert not [p for p in (data / "raw").glob(".ml-100k-*")]  # no staging folder left
        result, out = _invoke(*args)
        assert result.exit_code == 0, out
        assert fetching.is_fetched(source, data / "raw") and _verified(source, data)


def _verified(source, data: Path) -> bool:
    folder = data / "raw" / source.name
    return all(fetching.sha256_of(folder / f.name) == f.sha256 for f in source.files
               if f.sha256 and (folder / f.name).is_file())


@settings(max_examples=max(3, settings.default.max_examples // 8))
@given(trial=st.integers(0, 2), epoch=st.integers(1, 4), pruner=st.sampled_from(["none", "median"]))
@example(trial=1, epoch=2, pruner="none")
def test_tune_interrupted_at_any_epoch_of_any_trial(tmp_path_factory, tiny_paths_module, trial,
                                                    epoch, pruner):
    """Ctrl-C in any trial at any epoch: no trial FAIL, the search then reaches its count,
    every config is trained in one run folder, and no .partial is left without a trial."""
    pytest.importorskip("optuna")
    from optuna.trial import TrialState

    from recbench import runner, runs, tune
    from recbench.executors import LocalExecutor

    root = tmp_path_factory.mktemp("tune_sig")
    exp = write_experiment(root, "tb", train={"epochs": 4, "patience": None})
    space = {"params": {"train.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
                        "model.emb_dim": {"type": "categorical", "choices": [4, 8]}},
             "startup_trials": 1, "warmup_evaluations": 0, "seed": 1, "pruner": pruner}
    setup = tune.TuneSetup(experiment=str(exp), overrides=(),
                           space=tune.SearchSpace.model_validate(space).model_dump(), name="sig",
                           storage=tune.default_storage(root / "runs", "sig"),
                           data_root=str(tiny_paths_module.root), runs_root=str(root / "runs"),
                           threads=1)
    real, calls = runner.train_run, {"n": 0}

    def train_run(cfg, paths, runs_root, device="cpu", resume=None, progress=None, threads=None):
        calls["n"] += 1
        if calls["n"] - 1 != trial:
            return real(cfg, paths, runs_root, device, resume, progress, threads=threads)

        def hit(rec):
            if progress:
                progress(rec)
            if rec["epoch"] == epoch:
                raise KeyboardInterrupt

        return real(cfg, paths, runs_root, device, resume, hit, threads=threads)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "train_run", train_run)
        try:
            tune.search(setup, 3, LocalExecutor())
        except KeyboardInterrupt:
            pass
    study = tune.search(setup, 3, LocalExecutor())
    states = [t.state for t in study.get_trials()]
    assert TrialState.FAIL not in states and tune.counted(study) == 3
    folders = [p for p in (root / "runs" / "tb").iterdir() if p.is_dir()]
    hashes = [p.name.rsplit("-", 1)[1].removesuffix(runs.PARTIAL) for p in folders]
    assert len(hashes) == len(set(hashes))  # one run folder per config
    in_trials = {Path(t.user_attrs.get("run_dir", "")).name for t in study.get_trials()}
    assert all(p.name in in_trials for p in folders), (folders, in_trials)


@pytest.fixture(scope="module")
def tiny_paths_module(tmp_path_factory):
    from recbench.data.prepare import DataPaths, register_custom

    root = tmp_path_factory.mktemp("tiny_sig")
    make_interactions().to_csv(root / "tiny.csv", index=False)
    paths = DataPaths(root / "data")
    register_custom(root / "tiny.csv", "tiny", paths, None, None, "rating", "timestamp")
    return paths
