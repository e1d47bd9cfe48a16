"""Experiment files: every shipped YAML validates; overrides keep types; hashes are stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from recbench.config import expand_seeds, run_hash
from recbench.errors import ConfigError
from recbench.experiment import load_experiment, with_overrides
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


# -- bounds: every numeric field states them, and a bad value is one line with key, value, range


def _numeric_leaves(annotation) -> list[tuple[object, list]]:
    """(type, bounds metadata) of every int/float a field's annotation can hold."""
    from typing import Annotated, get_args, get_origin

    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        found = _numeric_leaves(base)
        extra = [m for info in meta for m in getattr(info, "metadata", [info])]
        return [(t, m + extra) for t, m in found]
    if annotation in (int, float):
        return [(annotation, [])]
    return [leaf for arg in get_args(annotation) for leaf in _numeric_leaves(arg)]


def _config_classes() -> list[type]:
    from pydantic import BaseModel

    from recbench.config import DatasetConfig, EvalConfig, TrainConfig
    from recbench.models import MODELS

    todo = [DatasetConfig, TrainConfig, EvalConfig, *(s.config for s in MODELS.values())]
    seen: list[type] = []
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        todo += [f.annotation for f in cls.model_fields.values()
                 if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)]
    return seen


# signed on purpose: a LeakyReLU slope, LightGCN's layer weights, a rating threshold, paper figures
UNBOUNDED = {"negative_slope", "alpha", "min_rating"}


def test_every_numeric_config_field_states_its_bounds():
    missing = []
    for cls in _config_classes():
        for name, info in cls.model_fields.items():
            if name in UNBOUNDED:
                continue
            for _, meta in _numeric_leaves(info.annotation):
                bounds = [m for m in [*meta, *info.metadata]
                          if any(getattr(m, b, None) is not None for b in ("gt", "ge", "lt", "le"))]
                if not bounds:
                    missing.append(f"{cls.__name__}.{name}")
    assert not missing, f"numeric fields without bounds (use PosInt, Share, ...): {missing}"


@pytest.mark.parametrize(("override", "expected"), [
    ("train.epochs=-3", "train.epochs: -3 is out of range; allowed: at least 1"),
    ("train.lr=-0.1", "train.lr: -0.1 is out of range; allowed: at least 0"),
    ("dataset.test_ratio=1.5", "dataset.test_ratio: 1.5 is out of range; allowed: a number in (0, 1)"),
    ("dataset.valid_ratio=1", "dataset.valid_ratio: 1 is out of range; allowed: a number in [0, 1)"),
    ("eval.k=[0]", "eval.k.0: 0 is out of range; allowed: at least 1"),
    ("model.emb_dim=0", "model.emb_dim: 0 is out of range; allowed: at least 1"),
    ("model.num_negatives=0", "model.num_negatives: 0 is out of range; allowed: at least 1"),
])
def test_out_of_range_names_key_value_and_range(tmp_path, override, expected):
    exp = write_experiment(tmp_path, "e")
    with pytest.raises(ConfigError) as err:
        load_experiment(exp, [override])
    assert str(err.value) == f"{exp}: {expected}"


@pytest.mark.parametrize(("model", "expected"), [
    ({"name": "lightgcn", "edge_dropout": 1.0}, "model.edge_dropout: 1.0 is out of range; "
                                                "allowed: a number in [0, 1)"),
    ({"name": "pinsage", "temperature": 0}, "model.temperature: 0 is out of range; allowed: "
                                            "greater than 0"),
    ({"name": "glocal_k", "global_kernel": {"layers": 0}},
     "model.global_kernel.layers: 0 is out of range; allowed: at least 1"),
    ({"name": "lightgcn", "training": "neighbor", "num_layers": 2, "fanouts": [10, 10, 10]},
     "model.fanouts: fanouts has 3 entries for num_layers 2"),
    ({"name": "lightgcn", "fanouts": [10, 0, 10]}, "model.fanouts: fanouts [10, 0, 10]: 0 samples"),
    ({"name": "glocal_k", "pretrain_epochs": 0, "finetune_epochs": 0},
     "model.pretrain_epochs: pretrain_epochs and finetune_epochs are both 0"),
    ({"name": "gl_attention", "global_epochs": 0, "local_epochs": 0, "attention_epochs": 0},
     "model.global_epochs: global_epochs, local_epochs and attention_epochs are all 0"),
    ({"name": "gconv_transform", "hidden": 10, "num_heads": 4},
     "model.hidden: hidden (10) must be divisible by num_heads (4)"),
])
def test_model_settings_are_checked_at_load(tmp_path, model, expected):
    exp = _with_model(tmp_path, model)
    with pytest.raises(ConfigError) as err:
        load_experiment(exp)
    assert str(err.value).startswith(f"{exp}: {expected}") and "\n" not in str(err.value)


def _with_model(folder: Path, model: dict) -> Path:
    """The test experiment with ``model`` as its whole model section (no bpr_mf keys left)."""
    import yaml

    exp = write_experiment(folder, "e")
    raw = yaml.safe_load(exp.read_text())
    exp.write_text(yaml.safe_dump({**raw, "model": model}))
    return exp


def test_fanouts_of_another_length_are_fine_outside_neighbour_sampling(tmp_path):
    exp = _with_model(tmp_path, {"name": "pinsage"})  # 2 layers, 3 fanouts
    assert load_experiment(exp).model.num_layers == 2


def test_keys_added_at_their_old_behaviour_keep_the_hash():
    """item-kNN's recency keys at their defaults (the plain sum, before they existed) leave the
    hash of a seq_baseline run as it was — finished runs stay cached — and any other value
    makes a new run."""
    from recbench.config import hash_plain, to_plain

    cfg = with_overrides(load_experiment(ROOT / "experiments" / "gconv_baseline.yaml"),
                         {"model.kind": "itemknn"})
    plain = to_plain(cfg)
    assert plain["model"]["knn_windows"] == [0] and plain["model"]["knn_decays"] == [1.0]
    before = {**plain, "model": {k: v for k, v in plain["model"].items()
                                 if k not in ("knn_windows", "knn_decays")}}
    assert run_hash(cfg) == hash_plain(before)
    assert run_hash(with_overrides(cfg, {"model.knn_windows": [5]})) != run_hash(cfg)
    assert run_hash(with_overrides(cfg, {"model.knn_decays": [0.7]})) != run_hash(cfg)


@pytest.mark.parametrize("track", ["none", "tensorboard", ["mlflow", "tensorboard"]])
def test_track_is_out_of_the_run_hash(track):
    """Tracking records numbers and changes none: every shipped experiment keeps the hash it
    had before the key existed (its finished runs stay cached) whatever ``track`` says."""
    from recbench.config import hash_plain, to_plain

    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        cfg = expand_seeds(load_experiment(path))[0]
        before = {k: v for k, v in to_plain(cfg).items() if k != "track"}
        tracked = with_overrides(cfg, {"track": track})
        assert run_hash(tracked) == run_hash(cfg) == hash_plain(before), path.name


def test_track_takes_one_name_or_a_list(tmp_path):
    exp = write_experiment(tmp_path, "e")
    assert load_experiment(exp).track == []
    assert load_experiment(exp, ["track=none"]).track == []
    assert load_experiment(exp, ["track=mlflow"]).track == ["mlflow"]
    assert load_experiment(exp, ["track=[tensorboard, mlflow, tensorboard]"]).track == \
        ["tensorboard", "mlflow"]
    with pytest.raises(ConfigError, match=r"track\.0: .*'tensorboard' or 'mlflow'"):
        load_experiment(exp, ["track=wandb"])
