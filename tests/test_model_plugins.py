"""Model plug-ins (issue 35): a package outside recbench adds a model through the entry-point
group ``recbench.models`` and it runs through train, eval and ablate unchanged.

The package is tests/plugin_example/ (a model module and its hand-written dist-info); a fixture
puts that folder on sys.path, where importlib.metadata discovers it as it would an installed
package, and clears the registry's cache of plug-ins on both sides.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from recbench.cli import app
from recbench.config import expand_seeds, run_hash, to_plain
from recbench.errors import ConfigError
from recbench.experiment import stored_hash, validate
from recbench.models import MODELS, plugin_models, registry
from tests.conftest import write_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = Path(__file__).parent / "plugin_example"
ROOT = Path(__file__).resolve().parents[1]


def install(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """As if the package whose dist-info sits in ``folder`` were installed."""
    monkeypatch.syspath_prepend(str(folder))
    plugin_models.cache_clear()


@pytest.fixture
def example_plugin(monkeypatch):
    install(monkeypatch, EXAMPLE)
    yield EXAMPLE
    plugin_models.cache_clear()  # the next registry() reads sys.path as monkeypatch restores it


def fake_package(folder: Path, entries: str) -> Path:
    """A dist-info of one more package whose ``recbench.models`` entry points are ``entries``."""
    info = folder / "other_pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[recbench.models]\n{entries}\n")
    return folder


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), env={})
    assert "Traceback" not in result.output, result.output
    return result, " ".join(result.output.split())  # rich may wrap one long line


def raw_experiment(**model) -> dict:
    return {"name": "p", "dataset": {"name": "tiny", "protocol": "random", "test_ratio": 0.2,
                                     "valid_ratio": 0.2},
            "model": {"name": "projected_mf", "emb_dim": 8, **model},
            "train": {"epochs": 2, "lr": 0.05, "batch_size": 64, "patience": None},
            "eval": {"k": [5]}, "seeds": [0]}


def test_the_example_plugin_is_discovered_beside_the_built_ins(example_plugin):
    models = registry()
    assert set(models) == set(MODELS) | {"projected_mf"}
    assert models["projected_mf"].task == "ranking"
    assert "projected_mf" not in MODELS  # the built-in dict itself is untouched


def test_a_plugin_config_validates_and_hashes_like_a_built_in(monkeypatch):
    builtin = {**raw_experiment(), "model": {"name": "bpr_mf", "emb_dim": 8}}
    before = run_hash(validate(builtin, "builtin"))
    install(monkeypatch, EXAMPLE)
    try:
        assert run_hash(validate(builtin, "builtin")) == before  # built-in hashes unchanged
        cfg = validate(raw_experiment(), "p.yaml")
        assert to_plain(cfg)["model"] == {"name": "projected_mf", "emb_dim": 8, "project": True,
                                          "init_std": 0.1}  # defaults filled in, as built-ins
        assert run_hash(cfg) == run_hash(validate(raw_experiment(), "again"))
        assert run_hash(cfg) != run_hash(validate(raw_experiment(project=False), "p.yaml"))
        assert run_hash(cfg) != before
        with pytest.raises(ConfigError) as bad:  # the built-ins' one-line errors, for it too
            validate(raw_experiment(emb_dimm=8), "p.yaml")
        assert str(bad.value) == ("p.yaml: unknown key 'model.emb_dimm' (allowed: emb_dim, "
                                  "init_std, name, project)")
        with pytest.raises(ConfigError, match="out of range"):
            validate(raw_experiment(emb_dim=0), "p.yaml")
        with pytest.raises(ConfigError, match=r"unknown model 'nope'.*projected_mf"):
            validate(raw_experiment(name="nope"), "p.yaml")
    finally:
        plugin_models.cache_clear()


@pytest.mark.parametrize("entries, message", [
    ("bpr_mf = recbench_example:SPEC",
     "plug-in model 'bpr_mf' (entry point group recbench.models) clashes with the built-in "
     "model of that name"),
    ("other_name = recbench_example:SPEC",
     "must declare name: Literal['other_name']"),
    ("not_a_spec = recbench_example:make_trainer",
     "is a function, not a recbench.models.ModelSpec"),
    ("broken = recbench_example:NO_SUCH_THING",
     "plugin 'broken' (recbench_example:NO_SUCH_THING, group recbench.models) failed to load"),
])
def test_a_bad_plugin_is_one_line_naming_it(example_plugin, monkeypatch, tmp_path, entries,
                                            message, tiny_paths):
    install(monkeypatch, fake_package(tmp_path / "site", entries))
    with pytest.raises(ConfigError, match="^.*$") as bad:
        registry()
    assert message in str(bad.value) and "\n" not in str(bad.value)
    exp = write_experiment(tmp_path, "e")  # a built-in experiment: the CLI says the same line
    result, out = invoke("train", str(exp), "--data-dir", str(tiny_paths.root),
                         "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2 and out.startswith("error:") and message in out, out


def test_a_plugin_model_runs_through_train_eval_and_ablate(example_plugin, tiny_paths, tmp_path):
    exp = write_experiment(tmp_path, "tiny-projected", model={"name": "projected_mf"})
    data = ["--data-dir", str(tiny_paths.root)]
    runs = tmp_path / "runs"
    result, out = invoke("train", str(exp), *data, "--runs-dir", str(runs), "--threads", "1")
    assert result.exit_code == 0, out
    (run_dir,) = [p.parent for p in runs.rglob("metrics.json")]
    (seeded,) = expand_seeds(validate(yaml.safe_load(exp.read_text()), "e"))
    assert stored_hash(run_dir) == run_hash(seeded) and run_dir.name.endswith(run_hash(seeded))

    result, out = invoke("eval", str(run_dir), *data)
    assert result.exit_code == 0 and "recall@5" in out and " NO " not in out, out

    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "s.yaml").write_text(yaml.safe_dump({
        "study": "s", "base": [str(exp)], "vary": {"model.project": [True, False]},
        "metric": "recall@5"}))
    common = ["--study", "s", "--studies-dir", str(tmp_path / "studies"), *data,
              "--runs-dir", str(runs), "--results-dir", str(tmp_path / "results")]
    result, out = invoke("ablate", *common, "--threads", "1")
    assert result.exit_code == 0, out
    assert "2 runs, 1 cached" in out  # the run trained above has the project=True cell's hash
    table = (tmp_path / "results" / "s" / "table.md").read_text()
    assert "tiny-projected" in table and "True" in table and "False" in table, table
    (tmp_path / "results" / "s" / "table.md").unlink()
    result, out = invoke("ablate", *common, "--report-only", "--runs-dir", str(tmp_path / "none"))
    assert result.exit_code == 0, out
    assert (tmp_path / "results" / "s" / "table.md").read_text() == table  # from the ledger


def test_a_plugin_model_is_tuned_like_a_built_in(example_plugin, tiny_paths, tmp_path):
    exp = write_experiment(tmp_path, "tp", model={"name": "projected_mf"})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"description": "lr and width", "params": {
        "train.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
        "model.emb_dim": {"type": "categorical", "choices": [4, 8]}}}))
    result, out = invoke("tune", str(exp), "--space", str(space), "--trials", "2",
                         "--search-only", "--threads", "1", "--data-dir", str(tiny_paths.root),
                         "--runs-dir", str(tmp_path / "runs"),
                         "--results-dir", str(tmp_path / "results"))
    assert result.exit_code == 0, out
    assert "trial 1 complete" in out and "best trial" in out, out


def test_a_fresh_interpreter_finds_the_plugin_on_pythonpath(tiny_paths, tmp_path):
    """No fixture magic: a new process sees the package the way an installed one is seen."""
    exp = write_experiment(tmp_path, "fresh", model={"name": "projected_mf", "project": False},
                           train={"epochs": 1})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "recbench", "train", str(exp), "--data-dir",
                           str(tiny_paths.root), "--runs-dir", str(tmp_path / "runs"),
                           "--threads", "1"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list((tmp_path / "runs").rglob("metrics.json"))
