"""Property-based tests: damaged run directories given to `recbench eval` and `train --resume`.

Property: a damaged or foreign run directory gives one error line and a non-zero exit, never a
traceback, and the run directory is left exactly as it was (nothing overwritten); when the
damage does not matter (a log, a truncated history) the command succeeds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import write_experiment
from tests.test_cli import _invoke, _one_error_line

FILES = ["metrics.json", "config.yaml", "best.pt", "last.pt", "history.jsonl", "env.json"]
MUTATIONS = ["delete", "empty", "truncate", "garbage", "other_run"]
BUDGET = settings(max_examples=max(6, settings.default.max_examples // 3))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two finished tiny runs of different experiments (bpr_mf emb 8 and emb 4)."""
    from recbench.data.prepare import DataPaths, register_custom
    from tests.conftest import make_interactions

    root = tmp_path_factory.mktemp("runs_fuzz")
    csv = root / "tiny.csv"
    make_interactions().to_csv(csv, index=False)
    paths = DataPaths(root / "data")
    register_custom(csv, "tiny", paths, None, None, "rating", "timestamp")
    out = {}
    for name, emb in (("a", 8), ("b", 4)):
        exp = write_experiment(root, name, model={"emb_dim": emb}, train={"epochs": 2})
        result, text = _invoke("train", str(exp), "--data-dir", str(paths.root),
                               "--runs-dir", str(root / "runs"), "--threads", "1")
        assert result.exit_code == 0, text
        out[name] = (exp, next(p for p in (root / "runs" / name).iterdir() if p.is_dir()))
    return paths, out


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def damage(run: Path, other: Path, file: str, how: str, cut: float) -> bool:
    """Apply the damage; returns False when it changed nothing."""
    path = run / file
    before = path.read_bytes() if path.exists() else None
    if how == "delete":
        path.unlink(missing_ok=True)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncate" and before is not None:
        path.write_bytes(before[: int(len(before) * cut)])
    elif how == "garbage":
        path.write_bytes(b"\x80\x04garbage\xff\x00{[: " * 3)
    elif how == "other_run" and (other / file).exists():
        shutil.copyfile(other / file, path)
    after = path.read_bytes() if path.exists() else None
    return after != before


def check_eval(trained, file: str, how: str, cut: float) -> None:
    paths, runs = trained
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / runs["a"][1].name
        shutil.copytree(runs["a"][1], run)
        changed = damage(run, runs["b"][1], file, how, cut)
        before = snapshot(run)
        result, out = _invoke("eval", str(run), "--data-dir", str(paths.root))
        assert snapshot(run) == before, "eval changed the run directory"
        assert result.exception is None or isinstance(result.exception, SystemExit), out
        if result.exit_code == 0:  # only damage eval does not read may pass
            assert not changed or file in ("last.pt", "history.jsonl", "env.json"), out
            return
        if result.exit_code == 1:  # a readable metrics.json that does not match: the check's job
            assert file == "metrics.json" and "recomputed metrics differ" in out, out
            return
        assert result.exit_code == 2, out
        assert run.name in _one_error_line(out), out


def check_resume(trained, file: str, how: str, cut: float) -> None:
    paths, runs = trained
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "a" / (runs["a"][1].name + ".partial")
        shutil.copytree(runs["a"][1], run)
        (run / "metrics.json").unlink()  # interrupted before the end
        changed = damage(run, runs["b"][1], file, how, cut)
        before = snapshot(run)
        result, out = _invoke("train", "--resume", str(run), "--data-dir", str(paths.root),
                              "--runs-dir", d, "--threads", "1")
        assert result.exception is None or isinstance(result.exception, SystemExit), out
        if result.exit_code == 0:
            final = run.with_name(run.name[: -len(".partial")])
            assert (final / "metrics.json").is_file(), out
            history = final / "history.jsonl"
            epochs = [json.loads(line)["epoch"] for line in
                      (history.read_text().splitlines() if history.exists() else [])]
            assert epochs == sorted(set(epochs)), f"history repeats or disorders epochs: {epochs}"
            assert file in ("metrics.json", "history.jsonl", "env.json", "last.pt") or not changed
            return
        assert result.exit_code == 2, out
        assert run.name in _one_error_line(out), out
        assert snapshot(run) == before, "a failed resume changed the run directory"


@pytest.mark.parametrize("file", FILES)
@pytest.mark.parametrize("how", MUTATIONS)
def test_eval_of_every_damaged_file(trained, file, how):
    check_eval(trained, file, how, 0.5)


@pytest.mark.parametrize("file", FILES)
@pytest.mark.parametrize("how", MUTATIONS)
def test_resume_of_every_damaged_file(trained, file, how):
    check_resume(trained, file, how, 0.5)


@BUDGET
@given(file=st.sampled_from(FILES), cut=st.floats(0.0, 0.999), resume=st.booleans())
@example(file="history.jsonl", cut=0.7, resume=True)
def test_truncated_at_any_byte(trained, file, cut, resume):
    (check_resume if resume else check_eval)(trained, file, "truncate", cut)


def test_resume_refuses_a_finished_run(trained):
    paths, runs = trained
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / runs["a"][1].name
        shutil.copytree(runs["a"][1], run)
        before = snapshot(run)
        result, out = _invoke("train", "--resume", str(run), "--data-dir", str(paths.root),
                              "--runs-dir", d)
        assert result.exit_code == 2 and "finished run" in _one_error_line(out)
        assert snapshot(run) == before


def test_resume_with_another_experiments_file_is_refused(trained):
    paths, runs = trained
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / (runs["a"][1].name + ".partial")
        shutil.copytree(runs["a"][1], run)
        (run / "metrics.json").unlink()
        before = snapshot(run)
        result, out = _invoke("train", str(runs["b"][0]), "--resume", str(run),
                              "--data-dir", str(paths.root), "--runs-dir", d)
        assert result.exit_code == 2 and "another config" in _one_error_line(out)
        assert snapshot(run) == before


def test_eval_of_a_checkpoint_from_another_experiment_is_one_line(trained):
    paths, runs = trained
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / runs["a"][1].name
        shutil.copytree(runs["a"][1], run)
        shutil.copyfile(runs["b"][1] / "best.pt", run / "best.pt")
        result, out = _invoke("eval", str(run), "--data-dir", str(paths.root))
        assert result.exit_code == 2 and "different runs" in _one_error_line(out)
