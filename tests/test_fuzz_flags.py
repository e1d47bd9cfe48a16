"""Property-based tests (issue 31): every combination of the run flags.

`train` with or without EXP, --resume (a partial run, a finished one, another experiment's),
--seed, --set (a hashed key, a key left out of the hash, a value equal to the file's) and
--threads; `sweep` with --rerun, --seeds and a cached or empty runs folder.

Properties: the command finishes (exit 0) or refuses in one line (exit 2), never a traceback;
what finishes is what was asked (the runs hold the requested seed and values, a resume makes
no second run folder); a refusal changes nothing on disk. Two properties wait on the fixes of
items 4 and 7 of issue 31 (made beside this file): a resume with a changed hashed key or seed
is refused, and --rerun retrains every planned run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recbench import runs
from tests.conftest import interrupt_at, write_experiment
from tests.test_cli import _invoke

SETS = {"epochs": "train.epochs=4", "threads-key": "train.num_threads=1",
        "same": "model.emb_dim=8", "paper": "paper={recall@5: 0.1}"}
RESUME = [None, "partial", "finished", "other"]
FEW = settings(max_examples=max(8, settings.default.max_examples // 3))


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """Experiments a (seeds 0, 1) and b, a partial run of each (interrupted after epoch 1) and
    a finished run of a."""
    from recbench.config import expand_seeds
    from recbench.data.prepare import DataPaths, register_custom
    from recbench.experiment import load_experiment
    from recbench.runner import train_run
    from tests.conftest import make_interactions

    root = tmp_path_factory.mktemp("flags")
    make_interactions().to_csv(root / "tiny.csv", index=False)
    paths = DataPaths(root / "data")
    register_custom(root / "tiny.csv", "tiny", paths, None, None, "rating", "timestamp")
    exps, made = {}, {}
    for name, emb in (("a", 8), ("b", 4)):
        exps[name] = write_experiment(root, name, model={"emb_dim": emb}, seeds=[0, 1],
                                      train={"epochs": 3, "patience": None})
        # as `train EXP --threads 1` makes it: num_threads in config.yaml, not in the hash
        cfg = expand_seeds(load_experiment(exps[name], ["train.num_threads=1"]))[0]
        with pytest.raises(KeyboardInterrupt):
            train_run(cfg, paths, root / "runs", progress=interrupt_at(1))
        made[f"{name}-partial"] = next((root / "runs" / name).glob("*.partial"))
    made["a-finished"] = train_run(expand_seeds(load_experiment(exps["a"]))[0], paths,
                                   root / "runs")
    return paths, exps, made


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def _train(state, work: Path, exp: bool, resume, seed, sets, threads):
    paths, exps, made = state
    runs_root = work / "runs"
    shutil.copytree(made["a-partial"].parent.parent, runs_root)
    run = {"partial": "a-partial", "finished": "a-finished", "other": "b-partial"}.get(resume)
    run_dir = runs_root / made[run].relative_to(made[run].parent.parent) if run else None
    args = ["train"] + ([str(exps["a"])] if exp else [])
    args += ["--resume", str(run_dir)] if run_dir else []
    args += ["--seed", str(seed)] if seed is not None else []
    for key in sets:
        args += ["--set", SETS[key]]
    args += ["--threads", "1"] if threads else []
    args += ["--data-dir", str(paths.root), "--runs-dir", str(runs_root)]
    before = _tree(runs_root)
    result, out = _invoke(*args)
    return result, out, runs_root, run_dir, before


FLAGS = dict(exp=st.booleans(), resume=st.sampled_from(RESUME),
             seed=st.sampled_from([None, 0, 1]),
             sets=st.lists(st.sampled_from(sorted(SETS)), unique=True, max_size=2),
             threads=st.booleans())


@FEW
@given(**FLAGS)
@example(exp=True, resume="partial", seed=None, sets=[], threads=True)  # item 18
@example(exp=True, resume="other", seed=None, sets=[], threads=False)
def test_every_train_flag_combination_finishes_as_asked_or_is_one_line(state, exp, resume, seed,
                                                                       sets, threads):
    with tempfile.TemporaryDirectory() as d:
        result, out, runs_root, run_dir, before = _train(state, Path(d), exp, resume, seed,
                                                         sets, threads)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{type(result.exception).__name__}: {result.exception}\n{out}")
        assert result.exit_code in (0, 2), out
        if resume == "partial" and seed is None and not sets:  # the run's own command
            assert result.exit_code == 0, out  # (issue 31 item 18: --threads is not hashed)
        if result.exit_code == 2:
            lines = [ln for ln in out.strip().splitlines() if ln.strip()]
            assert lines[0].startswith("error:"), out
            assert _tree(runs_root) == before  # a refusal writes nothing
            return
        if not exp and resume is None:
            raise AssertionError(f"train without EXP or --resume succeeded: {out}")
        assert resume != "finished", out  # a finished run is never resumed (nor overwritten)
        assert not (exp and resume == "other"), out  # nor another experiment's run
        finished = [p for p in runs_root.rglob("metrics.json") if p.parent.name[-10:] and
                    not p.parent.name.endswith(runs.PARTIAL)]
        new = [p.parent for p in finished if str(p.relative_to(runs_root)) not in before]
        if resume is not None:
            assert [p.name for p in new] == [run_dir.name.removesuffix(runs.PARTIAL)], new
            return
        assert len(new) == (1 if seed is not None else 2), new
        for run in new:
            cfg = yaml.safe_load((run / "config.yaml").read_text())
            if seed is not None:
                assert cfg["seed"] == seed
            epochs = 4 if "epochs" in sets else 3
            assert cfg["train"]["epochs"] == epochs
            assert len((run / "history.jsonl").read_text().splitlines()) == epochs


@settings(max_examples=max(4, settings.default.max_examples // 6))
@given(seed=st.sampled_from([None, 1]), changed=st.booleans())
def test_resume_never_silently_drops_a_changed_setting(state, seed, changed):
    if seed is None and not changed:
        return
    with tempfile.TemporaryDirectory() as d:
        result, out, *_ = _train(state, Path(d), False, "partial", seed,
                                 ["epochs"] if changed else [], True)
        assert result.exit_code == 2, f"--resume with {seed=}, {changed=} was accepted:\n{out}"


@settings(max_examples=max(3, settings.default.max_examples // 8))
@given(rerun=st.booleans(), seeds=st.sampled_from(["0", "0,1"]), cached=st.booleans())
@example(rerun=True, seeds="0", cached=True)
def test_sweep_rerun_seeds_and_cache(state, rerun, seeds, cached):
    paths, exps, _ = state
    with tempfile.TemporaryDirectory() as d:
        args = ["sweep", str(exps["b"]), "--set", "model.emb_dim=4,8", "--seeds", seeds,
                "--name", "flags", "--threads", "1", "--data-dir", str(paths.root),
                "--runs-dir", f"{d}/runs", "--results-dir", f"{d}/results"]
        if cached:
            assert _invoke(*args)[0].exit_code == 0
        before = {p.parent for p in Path(d).glob("runs/*/*/metrics.json")}
        result, out = _invoke(*args, *(["--rerun"] if rerun else []))
        assert result.exit_code == 0, out
        after = {p.parent for p in Path(d).glob("runs/*/*/metrics.json")}
        planned = 2 * len(seeds.split(","))
        expected = planned if (rerun or not cached) else 0
        assert len(after - before) == expected, (rerun, cached, sorted(after - before))
        table = json.dumps(sorted(p.name for p in (Path(d) / "results" / "flags").iterdir()))
        assert "table.md" in table
