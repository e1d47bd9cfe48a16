"""bench/bench_peers.py's --dataset gowalla mode (issue 36) without RecBole: the command line,
the export of the split to RecBole benchmark files, the RecBole config and our command at the
common batch size, the estimate, the table's verdicts, and one whole run with --skip-peers on
a tiny dataset (the peers venv is never built here)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import bench_peers as bp
from recbench.data.atomic import parse_atomic
from recbench.data.protocols import TEST, TRAIN, VALID
from tests.conftest import write_experiment

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_mode(folder: Path) -> bp.Mode:
    """The gowalla mode on three tiny experiments sharing one split of dataset 'tiny'."""
    models = {
        "bpr_mf": {"name": "bpr_mf", "emb_dim": 8},
        "lightgcn": {"name": "lightgcn", "emb_dim": 8, "num_layers": 2},
        "ngcf": {"name": "ngcf", "emb_dim": 8, "num_layers": 2, "message_dropout": 0.1},
    }
    experiments = {m: str(write_experiment(folder, f"tiny_{m}", model=spec,
                                           train={"batch_size": 16}, eval={"k": [20]}))
                   for m, spec in models.items()}
    return dataclasses.replace(bp.MODES["gowalla"], dataset="tiny", recbole_name="tiny-recbench",
                               experiments=experiments)


def test_help_names_the_gowalla_mode():
    out = subprocess.run([sys.executable, "-m", "bench.bench_peers", "--help"], cwd=bp.ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "--dataset {gowalla,ml100k}" in out
    assert "--batch-size" in out and "--estimate-only" in out


def test_gowalla_defaults_and_the_ml100k_ones_unchanged():
    go = bp.parse_args(["--dataset", "gowalla"])
    assert (go.epochs, go.rounds, go.thread_set, go.batch_size) == (1, 1, [1, 2], 2048)
    ml = bp.parse_args([])
    assert (ml.dataset, ml.epochs, ml.rounds, ml.thread_set, ml.batch_size) == \
        ("ml100k", 30, 3, [1, None], None)
    assert bp.parse_args(["--dataset", "gowalla", "--batch-size", "1024"]).batch_size == 1024
    with pytest.raises(SystemExit):
        bp.parse_args(["--dataset", "gowalla", "--rounds", "0"])


def test_gowalla_experiments_share_one_split_and_the_common_batch_reaches_recbole(tmp_path):
    """The real Gowalla YAMLs (no data read): NGCF's own batch 1024 is replaced by the common
    2048, its lr and L2 stay the YAML's; the RecBole job skips the test by default."""
    from recbench.data.prepare import resolve
    from recbench.experiment import load_experiment

    mode = bp.MODES["gowalla"]
    keys = {resolve(load_experiment(bp.ROOT / p).dataset).key() for p in mode.experiments.values()}
    assert len(keys) == 1
    split = bp.Split(tmp_path, tmp_path / "x.npz", {}, keys.pop(), mode)
    ngcf = bp.recbole_config("ngcf", 2, split, tmp_path, 2048)
    assert ngcf["train_batch_size"] == 2048 and ngcf["learning_rate"] == 1e-4
    assert ngcf["hidden_size_list"] == [64, 64, 64] and ngcf["reg_weight"] == 1e-5
    assert ngcf["epochs"] == 2 and ngcf["eval_step"] > 2  # no validation inside the timing
    assert bp.recbole_config("ngcf", 2, split, tmp_path)["train_batch_size"] == 1024
    lightgcn = bp.recbole_config("lightgcn", 2, split, tmp_path, 2048)
    assert lightgcn["n_layers"] == 3 and lightgcn["train_batch_size"] == 2048
    job = bp.recbole_job("lightgcn", lightgcn, 1, tmp_path, mode, evaluate=False)
    assert (job["dataset"], job["model"], job["evaluate"]) == ("gowalla-recbench", "LightGCN",
                                                                False)
    cmd = bp.ours_command("ngcf", 2, 2, tmp_path, tmp_path / "runs", mode, 2048)
    assert str(bp.ROOT / "experiments/gowalla_ngcf.yaml") in cmd
    assert "train.batch_size=2048" in cmd and cmd[-2:] == ["--threads", "2"]


def test_export_writes_the_benchmark_files_recbole_reads_with_our_counts(tmp_path, tiny_paths):
    mode = tiny_mode(tmp_path)
    split = bp.export_split(["lightgcn"], tmp_path / "unused", tmp_path / "scratch", mode,
                            paths=tiny_paths)
    folder = split.folder / "tiny-recbench"
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"tiny-recbench.{p}.inter" for p in ("test", "train", "valid")]
    back = parse_atomic(folder / "tiny-recbench.train.inter")
    codes = back.fixed_splits["benchmark"]
    assert [int((codes == c).sum()) for c in (TRAIN, VALID, TEST)] == \
        [split.counts["train"], split.counts["valid"], split.counts["test"]]
    assert split.counts["valid"] > 0 and split.counts["test_users"] > 0
    cfg = bp.recbole_config("ngcf", 2, split, tmp_path, 64)
    assert cfg["data_path"] == str(split.folder) and cfg["train_batch_size"] == 64


def test_estimate_counts_every_pair_of_both_libraries():
    one = bp.estimate_seconds(["lightgcn"], threads=1, epochs=2, rounds=1)
    cost = sum(bp.ESTIMATE_S[w]["lightgcn"]["epoch"] * 2 + bp.ESTIMATE_S[w]["lightgcn"]["fixed"]
               for w in ("ours", "recbole"))
    assert one == pytest.approx(30 + cost)
    assert bp.estimate_seconds(["lightgcn"], 2, 2, 2) == pytest.approx(30 + 4 * cost)


def test_table_verdict_is_the_median_pair_ratio_against_five():
    pair = lambda o, r: {"ours": o, "recbole": r, "ratio": r / o}  # noqa: E731
    run = {"seconds_per_epoch": 1.0, "threads": 1, "test": {}}
    rows = [{"model": "lightgcn", "threads": 1, "ours": run, "recbole": run,
             "pairs": [pair(1.0, 6.0), pair(1.0, 5.5)]},
            {"model": "ngcf", "threads": 2, "ours": run, "recbole": run,
             "pairs": [pair(1.0, 6.0), pair(1.0, 3.0)]}]
    lines = bp.gowalla_table(rows, bp.MODES["gowalla"], 2)
    assert "| 5.75 (5.50–6.00, 2 pairs) | ✓ |" in lines[2]
    assert "| 4.50 (3.00–6.00, 2 pairs) | ✗ |" in lines[3]
    assert [r["target_met"] for r in rows] == [True, False]


def test_gowalla_mode_runs_ours_at_the_common_batch_without_the_peer_venv(
        tmp_path, tiny_paths, monkeypatch):
    """A whole run (--skip-peers) writes peers_gowalla.{md,json}, never peers.*; our run trained
    at the batch given on the command line, and the md says the metrics are no quality figure."""
    monkeypatch.setitem(bp.MODES, "gowalla", tiny_mode(tmp_path))
    monkeypatch.setattr(bp, "ensure_venv", lambda *a: pytest.fail("the peer venv was built"))
    monkeypatch.setattr(bp, "data_paths", lambda *a: tiny_paths)  # 'tiny' is no mirror dataset
    out = tmp_path / "out"
    bp.main(["--dataset", "gowalla", "--skip-peers", "--models", "bpr_mf", "--threads", "1",
             "--rounds", "1", "--epochs", "1", "--batch-size", "32",
             "--data-dir", str(tiny_paths.root), "--out", str(out),
             "--scratch", str(tmp_path / "scratch")])  # kept: the run folder is read below
    assert sorted(p.name for p in out.iterdir()) == ["peers_gowalla.json", "peers_gowalla.md"]
    figures = json.loads((out / "peers_gowalla.json").read_text())
    assert (figures["dataset"], figures["batch_size"], figures["epochs"]) == ("gowalla", 32, 1)
    ours = figures["rows"][0]["ours"]
    assert len(ours["epoch_seconds"]) == 1 and ours["threads"] == 1
    config = yaml.safe_load((Path(ours["run_dir"]) / "config.yaml").read_text())
    assert config["train"]["batch_size"] == 32  # the YAML says 16
    md = (out / "peers_gowalla.md").read_text()
    assert "not a quality figure" in md and "RecBole's full-ranking test is skipped" in md
