"""Property-based tests (issue 31): the file system in any state, as input or as output.

Properties:
- any kind of path (missing, empty, a folder, a pipe, a device, a dangling or looping link,
  binary) given where a command expects a file or a folder is one error line and exit 2,
  within seconds (never a read that blocks or never ends), and registers or writes nothing;
- a write that fails at any point of a training run (full disk, read-only, no permission,
  quota, I/O error) or Ctrl-C there is one line (exit 2 / 130), leaves no temp file, and the run
  then resumes (or retrains) to exactly the metrics of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recbench import runner, runs
from recbench.cli import app
from tests.conftest import write_experiment
from tests.fuzz_faults import FAULTS, assert_one_line, deadline, fault_at, leftovers
from tests.test_cli import _invoke
from tests.test_cli import runner as cli

KINDS = ["missing", "empty", "folder", "fifo", "/dev/null", "/dev/zero", "dangling link",
         "link loop", "link to fifo", "binary", "under a file"]
COMMANDS = ["preprocess --from", "train EXP", "tune --space", "sweep EXP", "eval RUN",
            "train --resume RUN", "summary --check"]
FEW = settings(max_examples=max(8, settings.default.max_examples // 2))


def make_path(folder: Path, kind: str) -> Path:
    """A path of the given kind inside ``folder`` (devices are the system's own)."""
    if kind.startswith("/dev/"):
        if not Path(kind).exists():
            pytest.skip(f"no {kind}")
        return Path(kind)
    path = folder / "input.yaml"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling link":
        path.symlink_to(folder / "gone")
    elif kind == "link loop":
        path.symlink_to(folder / "loop")
        (folder / "loop").symlink_to(path)
    elif kind == "link to fifo":
        os.mkfifo(folder / "pipe")
        path.symlink_to(folder / "pipe")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "under a file":
        (folder / "plain").write_text("x")
        path = folder / "plain" / "input.yaml"
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny dataset, registered and preprocessed once, an experiment, and the metrics of
    its uninterrupted run (the reference every fault-and-recovery must reproduce)."""
    from recbench.data.prepare import DataPaths, register_custom
    from tests.conftest import make_interactions

    root = tmp_path_factory.mktemp("fs_fuzz")
    make_interactions().to_csv(root / "tiny.csv", index=False)
    paths = DataPaths(root / "data")
    register_custom(root / "tiny.csv", "tiny", paths, None, None, "rating", "timestamp")
    exp = write_experiment(root, "e", train={"epochs": 3, "patience": None})
    result, out = _invoke("train", str(exp), "--data-dir", str(paths.root), "--runs-dir",
                          str(root / "runs"), "--threads", "1")
    assert result.exit_code == 0, out
    run = next(p for p in (root / "runs" / "e").iterdir() if p.is_dir())
    return paths, exp, run, runs.read_metrics(run)["test"]


def _args(command: str, path: Path, tiny, work: Path) -> list[str]:
    paths, exp, run, _ = tiny
    data = ["--data-dir", str(paths.root)]
    out = ["--runs-dir", str(work / "runs"), "--results-dir", str(work / "results")]
    return {
        "preprocess --from": ["preprocess", "fuzzed", "--from", str(path),
                              "--data-dir", str(work / "data")],
        "train EXP": ["train", str(path), *data, "--runs-dir", str(work / "runs")],
        "tune --space": ["tune", str(exp), "--space", str(path), *data, *out],
        "sweep EXP": ["sweep", str(path), "--set", "model.emb_dim=4,8", *data, *out],
        "eval RUN": ["eval", str(path), *data],
        "train --resume RUN": ["train", "--resume", str(path), *data,
                               "--runs-dir", str(work / "runs")],
        "summary --check": ["summary", "--check", str(path)],
    }[command]


@FEW
@given(kind=st.sampled_from(KINDS), command=st.sampled_from(COMMANDS))
@example(kind="/dev/zero", command="preprocess --from")
@example(kind="fifo", command="train EXP")
@example(kind="link to fifo", command="preprocess --from")
@example(kind="binary", command="summary --check")  # found by the thorough profile
def test_any_kind_of_path_is_one_line_and_never_blocks(tiny, kind, command):
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        path = make_path(work, kind)
        with deadline(20):
            result = cli.invoke(app, _args(command, path, tiny, work))
        out = result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{type(result.exception).__name__}: {result.exception}\n{out}")
        assert result.exit_code in (1, 2), out
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        assert lines and lines[-1 if command == "tune --space" else 0].startswith("error:"), out
        assert not (work / "data" / "raw" / "fuzzed").exists()
        assert not (work / "runs").exists() or not any((work / "runs").rglob("metrics.json"))


FOLDER_KINDS = ["a file", "dangling link", "link to a file", "under a file", "fifo"]


@given(option=st.sampled_from(["--runs-dir", "--data-dir"]), kind=st.sampled_from(FOLDER_KINDS))
@settings(max_examples=10)
def test_a_runs_or_data_dir_in_any_state_is_one_line(tiny, option, kind):
    paths, exp, _, _ = tiny
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        target = work / "folder"
        if kind == "a file":
            target.write_text("x")
        elif kind == "dangling link":
            target.symlink_to(work / "gone")
        elif kind == "link to a file":
            (work / "plain").write_text("x")
            target.symlink_to(work / "plain")
        elif kind == "under a file":
            (work / "plain").write_text("x")
            target = work / "plain" / "folder"
        else:
            os.mkfifo(target)
        other = {"--runs-dir": str(work / "runs"), "--data-dir": str(paths.root)}
        other[option] = str(target)
        with deadline(30):
            result, out = _invoke("train", str(exp), "--threads", "1", "--data-dir",
                                  other["--data-dir"], "--runs-dir", other["--runs-dir"])
        assert result.exit_code == 2, out
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        assert lines[0].startswith("error:") and len(lines) <= 2, out  # rich may wrap
        named = str(target.parent) in " ".join(lines) or "unknown dataset" in lines[0]
        assert named, out  # names the folder, or (data) says the dataset is not there
        assert not (work / "gone").exists()


# the calls of a training run a fault can hit: every atomic write (config.yaml, env.json,
# last.pt, best.pt, metrics.json, per_unit.npz goes through numpy), history lines, checkpoint,
# finishing, and the rename that ends the run
TRAIN_POINTS = [(runs, "atomic_write_bytes"), (runs, "append_jsonl"), (runner, "_checkpoint"),
                (runner, "_finish"), (runs, "finalize"), (runner, "_save_per_unit")]


@settings(max_examples=max(6, settings.default.max_examples // 4))
@given(point=st.integers(0, len(TRAIN_POINTS) - 1), call=st.integers(0, 8),
       kind=st.sampled_from(FAULTS), after=st.booleans())
@example(point=0, call=4, kind="ENOSPC", after=False)  # last.pt on a full disk
@example(point=2, call=1, kind="ctrl-c", after=True)
def test_a_fault_at_any_write_of_a_run_is_one_line_then_recovers_exactly(tiny, point, call,
                                                                        kind, after):
    paths, exp, _, reference = tiny
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "runs"
        args = ["--data-dir", str(paths.root), "--runs-dir", str(root), "--threads", "1"]
        with fault_at(TRAIN_POINTS, point, call, kind, after) as hit:
            result, out = _invoke("train", str(exp), *args)
        assert not leftovers(root), leftovers(root)
        if not hit["fired"]:
            assert result.exit_code == 0, out
        else:
            assert_one_line(result, out, kind)
            partials = [p for p in (root / "e").glob(f"*{runs.PARTIAL}")] \
                if (root / "e").is_dir() else []
            assert all((p / "last.pt").is_file() for p in partials), partials  # no orphans
            partial = partials[0] if partials else None
            again = ["--resume", str(partial)] if partial else [str(exp)]
            result, out = _invoke("train", *again, *args)
            assert result.exit_code == 0, out
        finished = [p for p in (root / "e").iterdir() if runs.is_finished(p)]
        assert 1 <= len(finished) <= 2, finished  # 2: Ctrl-C right after the final rename
        for run in finished:  # bit-identical to the uninterrupted run
            assert json.loads((run / "metrics.json").read_text())["test"] == reference
