"""Bad input gets one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recbench.cli import app
from tests.conftest import write_experiment

runner = CliRunner()


def _invoke(*args: str, env: dict | None = None):
    result = runner.invoke(app, list(args), env=env or {})
    out = result.output
    assert "Traceback" not in out, out
    return result, out


def _one_error_line(out: str) -> str:
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), out
    return " ".join(lines)  # rich may wrap one long line


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {name: bpr_mf\ntrain: [1, 2\n")
    result, out = _invoke("train", str(bad))
    assert result.exit_code == 2
    msg = _one_error_line(out)
    assert "bad.yaml" in msg and "line" in msg and "malformed YAML" in msg


def test_unknown_key_lists_allowed_keys(tmp_path):
    exp = write_experiment(tmp_path, "e", model={"name": "bpr_mf", "emb_dimm": 8})
    result, out = _invoke("train", str(exp))
    assert result.exit_code == 2
    msg = _one_error_line(out)
    assert "model.emb_dimm" in msg and "emb_dim" in msg and "allowed" in msg


def test_unknown_model_lists_valid_models(tmp_path):
    exp = write_experiment(tmp_path, "e", model={"name": "deepfm"})
    result, out = _invoke("train", str(exp))
    assert result.exit_code == 2
    msg = _one_error_line(out)
    assert "unknown model 'deepfm'" in msg and "bpr_mf" in msg


def test_unknown_dataset_lists_valid_names(tmp_path):
    result, out = _invoke("fetch", "movielens-5m", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "unknown dataset 'movielens-5m'" in _one_error_line(out) and "ml-100k" in out


def test_dataset_not_fetched_says_which_command(tmp_path):
    exp = write_experiment(tmp_path, "e", dataset={"name": "yelp-madison"})
    result, out = _invoke("train", str(exp), "--data-dir", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "recbench fetch yelp-madison" in _one_error_line(out)


def test_missing_run_directory(tmp_path):
    result, out = _invoke("eval", str(tmp_path / "runs" / "nope"))
    assert result.exit_code == 2
    assert "not a run directory" in _one_error_line(out)


def test_unknown_study(tmp_path):
    (tmp_path / "studies").mkdir()
    result, out = _invoke("ablate", "--study", "nope", "--studies-dir", str(tmp_path / "studies"))
    assert result.exit_code == 2
    assert "unknown study 'nope'" in _one_error_line(out)


def test_ablate_unknown_seed_subset_is_one_line():
    result, out = _invoke("ablate", "--study", "gconv-table1", "--only-seeds", "7", "--dry-run")
    assert result.exit_code == 2
    msg = _one_error_line(out)
    assert "--only-seeds" in msg and "[7]" in msg and "[0, 1, 2]" in msg


def test_bad_override_syntax(tmp_path):
    exp = write_experiment(tmp_path, "e")
    result, out = _invoke("train", str(exp), "--set", "model.emb_dim")
    assert result.exit_code == 2
    assert "key=value" in _one_error_line(out)


@pytest.mark.parametrize("args", [["--help"], ["fetch", "--help"], ["ablate", "--help"]])
def test_help_works(args):
    result, _ = _invoke(*args)
    assert result.exit_code == 0


def test_the_study_commands_share_one_declaration_of_their_options():
    """ablate, sweep and tune take every option of RunOptions, ablate and sweep every one of
    StudyModes too, from the one declaration (same help everywhere); the commands' own
    options stay theirs, and the grouped dataclass is not an option itself."""
    import dataclasses

    from typer.main import get_command

    from recbench.cli import RunOptions, StudyModes

    commands = get_command(app).commands
    params = {name: {p.name: p for p in commands[name].params}
              for name in ("ablate", "sweep", "tune")}
    for group, names in ((RunOptions, ("ablate", "sweep", "tune")),
                         (StudyModes, ("ablate", "sweep"))):
        for field in dataclasses.fields(group):
            declared = [params[n].get(field.name) for n in names]
            assert all(declared), (field.name, names)
            assert len({(p.opts[0], p.help, p.default) for p in declared}) == 1, field.name
    # tune takes --report-only alone (a search has no dry run or rerun), the same declaration
    report = {(p.opts[0], p.help, p.default) for p in
              (params[n]["report_only"] for n in ("ablate", "sweep", "tune"))}
    assert len(report) == 1 and "dry_run" not in params["tune"] and "rerun" not in params["tune"]
    assert "only_seeds" in params["ablate"]
    assert not {"opts", "modes"} & set().union(*params.values())


def test_a_setting_the_model_builder_rejects_is_one_line_and_leaves_no_run(tmp_path, tiny_paths):
    """optimizer: lbfgs on a model without its own L-BFGS epoch used to end in a traceback."""
    exp = write_experiment(tmp_path, "e", train={"optimizer": "lbfgs"})
    runs_dir = tmp_path / "runs"
    result, out = _invoke("train", str(exp), "--data-dir", str(tiny_paths.root),
                          "--runs-dir", str(runs_dir))
    assert result.exit_code == 2
    msg = _one_error_line(out)
    assert "train.optimizer: lbfgs" in msg and "adam" in msg
    assert not runs_dir.exists() or not any(runs_dir.rglob("*.partial"))


def test_report_only_without_any_run_keeps_the_committed_table(tmp_path):
    """A fresh clone without runs or ledger must not overwrite a study's table with nothing."""
    results = tmp_path / "results"
    (results / "gconv-table1").mkdir(parents=True)
    (results / "gconv-table1" / "table.md").write_text("committed")
    result, out = _invoke("ablate", "--study", "gconv-table1", "--report-only",
                          "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(results))
    assert result.exit_code == 1
    assert "left as it is" in _one_error_line(out)
    assert (results / "gconv-table1" / "table.md").read_text() == "committed"


def test_ablate_writes_the_study_tables_and_report_only_rewrites_them_from_the_ledger(
        tmp_path, tiny_paths):
    """The study use case lives in recbench.studies; the command trains, writes table.md and
    the study's extra tables, records the ledger, and --report-only rebuilds them from it."""
    import shutil

    import yaml

    exp = write_experiment(tmp_path, "tiny-bpr")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "s.yaml").write_text(yaml.safe_dump({
        "study": "s", "base": [str(exp)], "metric": "recall@5",
        "tables": [{"file": "details.md", "title": "per run", "per": "run",
                    "columns": {"epochs": {"key": "epochs_run", "format": ".0f"}}}]}))
    common = ["--studies-dir", str(tmp_path / "studies"), "--data-dir", str(tiny_paths.root),
              "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    result, out = _invoke("ablate", "--study", "s", "--threads", "1", *common)
    assert result.exit_code == 0, out
    folder = tmp_path / "results" / "s"
    details = (folder / "details.md").read_text()
    assert details.splitlines()[-1] == "| tiny-bpr | base | 0 | 4 |"
    assert "1 new run record(s)" in " ".join(out.split())
    shutil.rmtree(tmp_path / "runs")
    (folder / "details.md").unlink()
    result, out = _invoke("ablate", "--study", "s", "--report-only", *common)
    assert result.exit_code == 0, out
    assert (folder / "details.md").read_text() == details


class _Payload:
    """Unpickling this runs code: exec writes the marker file (a crafted checkpoint)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.mark.parametrize("form", ["pickle", "torch.save"])
@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_crafted_checkpoint_is_refused_and_never_executed(tmp_path, tiny_paths, form, command):
    """Issue 31.1: best.pt / last.pt are loaded with weights_only; a checkpoint that holds
    anything but tensors and plain containers is one line naming the file, and its code
    never runs (it used to run, and the user was told the file was damaged)."""
    import pickle
    import shutil

    import torch

    exp = write_experiment(tmp_path, "e", train={"epochs": 2})
    runs_dir = tmp_path / "runs"
    result, out = _invoke("train", str(exp), "--data-dir", str(tiny_paths.root),
                          "--runs-dir", str(runs_dir), "--threads", "1")
    assert result.exit_code == 0, out
    run = next((runs_dir / "e").iterdir())
    if command == "resume":
        run = shutil.move(run, run.with_name(run.name + ".partial"))
        (run / "metrics.json").unlink()
    marker = tmp_path / "marker"
    name = "best.pt" if command == "eval" else "last.pt"
    payload = {"model": _Payload(marker)}
    if form == "pickle":
        (run / name).write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, run / name)
    args = (["eval", str(run)] if command == "eval" else
            ["train", "--resume", str(run), "--runs-dir", str(runs_dir), "--threads", "1"])
    result, out = _invoke(*args, "--data-dir", str(tiny_paths.root))
    assert not marker.exists(), "the checkpoint's code ran"
    assert result.exit_code == 2, out
    msg = " ".join(_one_error_line(out).split())
    assert str(run / name) in msg.replace(" ", ""), msg
    assert "refuses to unpickle" in msg and "damaged" not in msg, msg


@pytest.mark.parametrize("extra, differs", [
    (["--set", "train.epochs=6"], "train.epochs: 2 → 6"),
    (["--seed", "3"], "seed: 0 → 3"),
    (["--set", "model.emb_dim=16", "--seed", "0"], "model.emb_dim: 8 → 16"),
])
def test_resume_with_a_set_or_seed_that_changes_the_config_is_refused(tmp_path, tiny_paths,
                                                                       extra, differs):
    """Issue 31.7: `train --resume RUN --set …`/`--seed …` was silently ignored (asked 300
    epochs, ran 150, exit 0); now one line says what differs and nothing is trained."""
    import hashlib
    import shutil

    exp = write_experiment(tmp_path, "e", train={"epochs": 2})
    runs_dir = tmp_path / "runs"
    common = ["--data-dir", str(tiny_paths.root), "--runs-dir", str(runs_dir), "--threads", "1"]
    result, out = _invoke("train", str(exp), *common)
    assert result.exit_code == 0, out
    run = next((runs_dir / "e").iterdir())
    run = shutil.move(run, run.with_name(run.name + ".partial"))
    (run / "metrics.json").unlink()

    def snapshot():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()}

    before = snapshot()
    result, out = _invoke("train", "--resume", str(run), *extra, *common)
    assert result.exit_code == 2, out
    msg = " ".join(_one_error_line(out).split())
    assert differs in msg and "start a new run" in msg and "recbench train" in msg, msg
    assert snapshot() == before and run.is_dir()
    # what the hash leaves out, and the run's own values, are no difference
    result, out = _invoke("train", "--resume", str(run), "--seed", "0", "--set",
                          "train.num_threads=1", "--set", "train.epochs=2", *common)
    assert result.exit_code == 0, out


def test_eval_fails_when_metrics_json_has_no_or_too_few_test_metrics(tmp_path, tiny_paths):
    """Issue 31.9: `eval` passed with exit 0 when metrics.json's test was empty or thinned."""
    import json

    exp = write_experiment(tmp_path, "e", train={"epochs": 2})
    runs_dir = tmp_path / "runs"
    result, out = _invoke("train", str(exp), "--data-dir", str(tiny_paths.root),
                          "--runs-dir", str(runs_dir), "--threads", "1")
    assert result.exit_code == 0, out
    run = next((runs_dir / "e").iterdir())
    path = run / "metrics.json"
    metrics = json.loads(path.read_text())
    result, out = _invoke("eval", str(run), "--data-dir", str(tiny_paths.root))
    assert result.exit_code == 0, out
    dropped = sorted(metrics["test"])[0]
    for test, expected in (({}, "empty"), ({k: v for k, v in metrics["test"].items()
                                            if k != dropped}, f"lack {dropped}")):
        path.write_text(json.dumps({**metrics, "test": test}))
        result, out = _invoke("eval", str(run), "--data-dir", str(tiny_paths.root))
        assert result.exit_code == 1, out
        error = [ln for ln in out.splitlines() if ln.startswith("error:")]
        assert error and expected in " ".join(out[out.index("error:"):].split()), out


def test_sweep_never_takes_a_named_study_or_another_results_folder(tmp_path):
    """Issue 31.3: `sweep --name gnn-zoo` overwrote that study's committed results."""
    exp = write_experiment(tmp_path, "e")
    results = tmp_path / "results"
    (results / "mine").mkdir(parents=True)
    (results / "mine" / "table.md").write_text("committed")
    for name, expected in (("gnn-zoo", "named study"), ("mine", "not a sweep of")):
        result, out = _invoke("sweep", str(exp), "--set", "model.emb_dim=4,8", "--name", name,
                              "--results-dir", str(results), "--dry-run")
        assert result.exit_code == 2, out
        assert expected in " ".join(_one_error_line(out).split()), out
    assert (results / "mine" / "table.md").read_text() == "committed"


def test_a_partial_study_never_rewrites_its_committed_table(tmp_path, tiny_paths):
    """Issue 31.2: training one cell of a study without a ledger rewrote its committed table
    from the runs that were local (31 of 32 figures became "(not run)"). Now the table is
    left as it is, the error names the cells, and the finished run is still recorded."""
    import yaml

    exp = write_experiment(tmp_path, "tiny-bpr", train={"epochs": 1})
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "s.yaml").write_text(yaml.safe_dump({
        "study": "s", "base": [str(exp)], "metric": "recall@5",
        "vary": {"model.emb_dim": [4, 8]}, "seeds": [0]}))
    folder = tmp_path / "results" / "s"
    folder.mkdir(parents=True)
    committed = ("experiment,dataset,variant,metric,mean,std,seeds,paper,diff,p_value,values\n"
                 "tiny-bpr,tiny,4,recall@5,0.5,0,1,,,,0.5\ntiny-bpr,tiny,8,recall@5,0.6,0,1,,,,0.6\n")
    (folder / "table.csv").write_text(committed)
    (folder / "table.md").write_text("committed")
    common = ["--studies-dir", str(tmp_path / "studies"), "--data-dir", str(tiny_paths.root),
              "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
              "--threads", "1"]
    result, out = _invoke("ablate", "--study", "s", "--only-variants", "4", *common)
    assert result.exit_code == 2, out
    msg = " ".join(out[out.index("error:"):].split())
    assert "tiny-bpr | 8 (seeds 1 → 0)" in msg and "left as it is" in msg, msg
    assert (folder / "table.md").read_text() == "committed"
    assert (folder / "table.csv").read_text() == committed
    assert any((folder / "ledger" / "tiny-bpr").iterdir())  # the finished run is kept
    result, out = _invoke("ablate", "--study", "s", *common)  # complete: written
    assert result.exit_code == 0, out
    assert (folder / "table.md").read_text() != "committed"
