"""Experiment files: every shipped YAML validates; overrides keep types; hashes are stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from recbench.config import expand_seeds, load_experiment, run_hash, with_overrides
from recbench.errors import ConfigError
from recbench.studies import list_studies, plan
from tests.conftest import write_experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_file_validates(path):
    cfg = load_experiment(path)
    assert cfg.name and expand_seeds(cfg)


def test_every_study_file_expands(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    for study in list_studies(ROOT / "experiments" / "studies"):
        assert plan(study, tmp_path / "runs"), study.study


def test_overrides_keep_yaml_types(tmp_path):
    exp = write_experiment(tmp_path, "e")
    cfg = load_experiment(exp, ["model.emb_dim=16", "train.patience=null", "eval.k=[5, 10]"])
    assert cfg.model.emb_dim == 16 and cfg.train.patience is None and cfg.eval.k == [5, 10]


def test_run_hash_covers_seed_and_values(tmp_path):
    cfg = load_experiment(write_experiment(tmp_path, "e", seeds=[0, 1]))
    a, b = expand_seeds(cfg)
    assert run_hash(a) != run_hash(b)
    assert run_hash(a) == run_hash(expand_seeds(load_experiment(tmp_path / "e.yaml"))[0])
    assert run_hash(with_overrides(a, {"model.emb_dim": 9})) != run_hash(a)


def test_override_into_a_value_is_an_error(tmp_path):
    exp = write_experiment(tmp_path, "e")
    with pytest.raises(ConfigError, match="is a value"):
        load_experiment(exp, ["name.x=1"])
