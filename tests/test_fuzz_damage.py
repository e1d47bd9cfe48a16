"""Property-based tests (issue 31): processed caches and checkpoints damaged at random bytes.

Properties:
- a processed cache (graph.bin, meta.json) truncated, bit-flipped, zeroed or deleted anywhere
  is either still sound (a change DGL never reads) or one line naming it damaged and the fix;
  never a traceback, a DGL C++ backtrace, a crash, or a train↔preprocess loop; and the fix it
  names (`preprocess NAME --force`) restores training;
- a checkpoint (best.pt, last.pt) bit-flipped or truncated anywhere gives `eval` exit 0 (the
  recomputed metrics match), 1 (they differ: eval's own finding) or 2 with one line; `train
  --resume` finishes or refuses in one line. Never a traceback, never a changed run folder on
  refusal.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import write_experiment
from tests.test_cli import _invoke
from tests.test_fuzz_runs import snapshot, trained  # noqa: F401 - the fixture, reused

HOW = ["truncate", "flip", "zero", "delete"]
SPLIT = ["--protocol", "random", "--test-ratio", "0.2", "--valid-ratio", "0.2"]


def corrupt(path: Path, how: str, at: float, bit: int) -> bool:
    """Damage ``path`` at the relative position ``at``; False when nothing changed."""
    if not path.exists():
        return False
    data = path.read_bytes()
    pos = min(int(len(data) * at), max(len(data) - 1, 0))
    if how == "delete":
        path.unlink()
        return True
    if how == "truncate":
        new = data[:pos]
    elif how == "flip":
        new = data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1:] if data else data
    else:  # a block of zeros, as a torn write leaves
        new = data[:pos] + b"\0" * min(512, len(data) - pos) + data[pos + 512:]
    path.write_bytes(new)
    return new != data


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from recbench.data.prepare import DataPaths, register_custom
    from tests.conftest import make_interactions

    root = tmp_path_factory.mktemp("cache_fuzz")
    make_interactions().to_csv(root / "tiny.csv", index=False)
    paths = DataPaths(root / "data")
    register_custom(root / "tiny.csv", "tiny", paths, None, None, "rating", "timestamp")
    exp = write_experiment(root, "e", train={"epochs": 1, "patience": None})
    result, out = _invoke("preprocess", "tiny", *SPLIT, "--data-dir", str(paths.root))
    assert result.exit_code == 0, out
    return paths.root, exp


@settings(max_examples=max(8, settings.default.max_examples // 3))
@given(file=st.sampled_from(["graph.bin", "meta.json"]), how=st.sampled_from(HOW),
       at=st.floats(0, 1), bit=st.integers(0, 7))
@example(file="graph.bin", how="flip", at=0.5, bit=4)  # crashed DGL before the checksum
@example(file="meta.json", how="delete", at=0, bit=0)  # the train↔preprocess loop
def test_a_damaged_processed_cache_is_sound_or_one_line_and_repairable(cache, file, how, at, bit):
    data_root, exp = cache
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        shutil.copytree(data_root, data)
        folder = next((data / "processed" / "tiny").iterdir())
        changed = corrupt(folder / file, how, at, bit)
        train = ["train", str(exp), "--data-dir", str(data), "--runs-dir", f"{d}/runs",
                 "--threads", "1"]
        result, out = _invoke(*train)
        assert result.exception is None or isinstance(result.exception, SystemExit), out
        assert "Stack trace" not in out and "[bt]" not in out
        if result.exit_code == 0:
            assert not changed or file == "meta.json", out  # graph.bin is checksummed
            return
        assert result.exit_code == 2, out
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        assert lines[0].startswith("error:") and "damaged" in out and "--force" in out, out
        fixed = _invoke("preprocess", "tiny", *SPLIT, "--data-dir", str(data), "--force")
        assert fixed[0].exit_code == 0, fixed[1]
        again = _invoke(*train)
        assert again[0].exit_code == 0, again[1]


@settings(max_examples=max(8, settings.default.max_examples // 3))
@given(file=st.sampled_from(["best.pt", "last.pt"]), how=st.sampled_from(["truncate", "flip",
                                                                           "zero"]),
       at=st.floats(0, 1), bit=st.integers(0, 7), command=st.sampled_from(["eval", "resume"]))
@example(file="best.pt", how="flip", at=0.6, bit=7, command="eval")
@example(file="last.pt", how="zero", at=0.3, bit=0, command="resume")
def test_a_checkpoint_damaged_at_any_byte_is_checked_or_one_line(trained, file, how, at, bit,  # noqa: F811
                                                                 command):
    paths, runs = trained
    with tempfile.TemporaryDirectory() as d:
        name = runs["a"][1].name + (".partial" if command == "resume" else "")
        run = Path(d) / "a" / name
        shutil.copytree(runs["a"][1], run)
        if command == "resume":
            (run / "metrics.json").unlink()
        corrupt(run / file, how, at, bit)
        before = snapshot(run)
        if command == "eval":
            result, out = _invoke("eval", str(run), "--data-dir", str(paths.root))
        else:
            result, out = _invoke("train", "--resume", str(run), "--data-dir", str(paths.root),
                                  "--runs-dir", d, "--threads", "1")
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{type(result.exception).__name__}: {result.exception}\n{out}")
        allowed = (0, 1, 2) if command == "eval" else (0, 2)
        assert result.exit_code in allowed, out
        if result.exit_code == 1:
            assert "recomputed metrics differ" in out, out
        if result.exit_code == 2:
            lines = [ln for ln in out.strip().splitlines() if ln.strip()]
            assert lines[0].startswith("error:") and len(lines) <= 3, out
            if run.exists():
                assert snapshot(run) == before  # a refusal changes nothing
