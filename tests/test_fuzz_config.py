"""Property-based tests: experiment YAML and `--set` overrides.

Every field of every config class (walked from the pydantic schemas, so a new field is covered
without a new test) gets out-of-range, wrong-type, null and extreme values. Property: loading
either accepts a value a run can use (finite, in range, and written back to config.yaml it loads
again to the same config) or raises ConfigError with one line naming the file and the key.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel

from recbench.config import DatasetConfig, EvalConfig, ExperimentConfig, TrainConfig, to_plain
from recbench.errors import ConfigError
from recbench.experiment import load_experiment, validate
from recbench.models import MODELS
from tests.conftest import write_experiment
from tests.test_cli import _invoke, _one_error_line

INT64_MAX = 2**63 - 1


def _leaves(cls: type[BaseModel], prefix: str) -> list[tuple[str, Any]]:
    """(dotted path, FieldInfo) of every field under ``cls``, nested config models included."""
    out = []
    for name, info in cls.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _leaves(ann, path)
        else:
            out.append((path, info))
    return out


def _targets() -> list[tuple[str, str, Any]]:
    """(model name, dotted path, FieldInfo) for every field an experiment file can set."""
    common = [(p, i) for p, i in _leaves(ExperimentConfig, "")
              if not p.startswith(("dataset", "train", "eval", "model"))]
    common += _leaves(DatasetConfig, "dataset") + _leaves(TrainConfig, "train") + \
        _leaves(EvalConfig, "eval")
    out = [("bpr_mf", p, i) for p, i in common]
    for name, spec in MODELS.items():
        out += [(name, p, i) for p, i in _leaves(spec.config, "model")]
    return out


TARGETS = _targets()
NASTY = [None, True, False, -3, -1, 0, 1, 2**31, 2**63, 2**70, -1e308, 1e308, float("nan"),
         float("inf"), float("-inf"), 0.5, 1.0, 1.5, -0.5, "", "abc", "3", "1e-3", "../x",
         [], [0], [-1], [1, 2], [None], {}, {"a": 1}]
VALUES = st.one_of(st.sampled_from(NASTY), st.integers(), st.floats(),
                   st.text(max_size=6), st.lists(st.integers(-3, 3), max_size=3))


def _base(model: str) -> dict:
    return {"name": "e", "dataset": {"name": "tiny"}, "model": {"name": model}}


def _set(raw: dict, path: str, value: Any) -> None:
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _get(cfg: BaseModel, path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        node = getattr(node, part)
    return node


def _numbers(value: Any) -> list[float]:
    items = value if isinstance(value, list | tuple) else [value]
    return [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]


def _takes_bool(info) -> bool:
    return "bool" in str(info.annotation) or info.annotation is Any


def _usable(path: str, info, raw_value: Any, value: Any) -> None:
    """What an accepted value must satisfy for a run to be meaningful."""
    leaf = path.split(".")[-1]
    assert not (isinstance(raw_value, bool) and not _takes_bool(info)), \
        f"{path}: a boolean was accepted as a number"
    for v in _numbers(value):
        assert math.isfinite(v) and abs(v) <= INT64_MAX, f"{path}: accepted {v}"
    default = info.get_default(call_default_factory=True)
    nums_default = _numbers(default)
    nums = _numbers(value)
    if nums_default and all(d >= 0 for d in nums_default) and leaf not in ("fanouts",) \
            and not re.search(r"(slope|bias|offset|shift)$", leaf):
        assert all(v >= 0 for v in nums), f"{path}: accepted a negative {value}"
    if re.search(r"(^|_)(dropout|ratio|prob)$", leaf):
        assert all(0 <= v <= 1 for v in nums), f"{path}: accepted share {value}"
    if path in ("train.epochs", "train.batch_size", "train.eval_every", "eval.batch_size",
                "eval.k", "dataset.holdout_k", "dataset.num_negatives") or \
            re.search(r"(^|_)(dim|dims|hidden|heads|channels|size|growth)$", leaf):
        assert all(v >= 1 for v in nums), f"{path}: accepted size {value}"
    if path in ("train.lr",):  # 0 is allowed: frozen weights (tests/test_gnn.py uses it)
        assert all(v >= 0 for v in nums), f"{path}: accepted {value}"
    if path in ("seeds", "eval.k"):
        assert value, f"{path}: accepted an empty list"
    if path in ("name", "dataset.name"):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value), f"{path}: accepted {value!r}"


@given(target=st.sampled_from(TARGETS), value=VALUES)
@example(target=("bpr_mf", "train.epochs", TrainConfig.model_fields["epochs"]), value=-3)
@example(target=("bpr_mf", "train.epochs", TrainConfig.model_fields["epochs"]), value=0)
@example(target=("bpr_mf", "train.lr", TrainConfig.model_fields["lr"]), value=-0.01)
@example(target=("bpr_mf", "seeds", ExperimentConfig.model_fields["seeds"]), value=[])
@example(target=("bpr_mf", "name", ExperimentConfig.model_fields["name"]), value="../x")
@example(target=("bpr_mf", "train.epochs", TrainConfig.model_fields["epochs"]), value=True)
@example(target=("bpr_mf", "seeds", ExperimentConfig.model_fields["seeds"]), value=[2**70])
@example(target=("gl_attention", "model.attention_data", None), value=[])  # was named local_data
def test_every_field_accepts_usable_values_or_names_the_key(tmp_path_factory, target, value):
    model, path, info = target
    raw = _base(model)
    _set(raw, path, value)
    file = tmp_path_factory.mktemp("cfg") / "exp.yaml"
    file.write_text(yaml.safe_dump(raw))
    try:
        cfg = load_experiment(file)
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith(f"{file}: "), msg
        named = path.split(".", 1)[1] if path.startswith("model.") else path
        assert path in msg or (path == "model.name" and "model" in msg) or \
            (path.startswith("model.") and f"model.{named.split('.')[0]}" in msg), msg
        return
    _usable(path, info, value, _get(cfg, path))
    again = validate(yaml.safe_load(yaml.safe_dump(to_plain(cfg))), "config.yaml")
    assert to_plain(again) == to_plain(cfg), "the resolved config does not load back from config.yaml"


def test_every_field_gets_every_nasty_value():
    """The exhaustive sweep behind the property: each field × each value in NASTY."""
    for model, path, info in TARGETS:
        for value in NASTY:
            raw = _base(model)
            _set(raw, path, value)
            try:
                cfg = validate(raw, "exp.yaml")
            except ConfigError as exc:
                assert "\n" not in str(exc) and path.split(".")[-1] in str(exc) or \
                    path == "model.name", (path, value, str(exc))
                continue
            _usable(path, info, value, _get(cfg, path))


# -- --set overrides -----------------------------------------------------------------------

KEYS = st.one_of(st.sampled_from([p for _, p, _ in TARGETS if not p.startswith("model.")]
                                 + ["model.emb_dim", "model.nope", "train", "train.epochs.x",
                                    "eval.k.0", "seeds.0", "", ".", "model..emb_dim", " train.lr ",
                                    "name.x", "a.b.c.d"]),
                 st.text(st.sampled_from("abc._= "), max_size=8))
RHS = st.one_of(st.sampled_from(["", "3", "-3", "0", "[3, 5]", "[1,2", "{a: 1}", "null", "true",
                                 "nan", ".inf", "1e-3", "'x'", ": bad", "!!python/object:os.system",
                                 "a=b", "[]", "&a [*a]"]),
                st.text(max_size=8))


@given(pairs=st.lists(st.tuples(KEYS, st.sampled_from(["=", "", "=="]), RHS), min_size=1,
                      max_size=3))
@example(pairs=[("model.emb_dim", "", "")])
@example(pairs=[("train.epochs", "=", "-3")])
@example(pairs=[("eval.k.0", "=", "5")])
def test_set_overrides_load_or_name_the_problem(tmp_path_factory, pairs):
    exp = write_experiment(tmp_path_factory.mktemp("set"), "e")
    texts = [f"{k}{eq}{v}" for k, eq, v in pairs]
    try:
        cfg = load_experiment(exp, texts)
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg, msg
        assert "--set" in msg or "key" in msg or str(exp) in msg or "cannot set" in msg, msg
        return
    again = validate(yaml.safe_load(yaml.safe_dump(to_plain(cfg))), "config.yaml")
    assert to_plain(again) == to_plain(cfg)


# -- the minimal failing examples through the CLI --------------------------------------------

@pytest.mark.parametrize("section,bad,key", [
    ({"train": {"epochs": -3}}, "-3", "train.epochs"),
    ({"train": {"epochs": 0}}, "0", "train.epochs"),
    ({"train": {"lr": -0.01}}, "-0.01", "train.lr"),
    ({"seeds": []}, "[]", "seeds"),
    ({"name_": "../escape"}, "../escape", "name"),
    ({"model": {"emb_dim": True}}, "true", "model.emb_dim"),
    ({"model": {"emb_dim": 0}}, "0", "model.emb_dim"),
    ({"dataset": {"valid_ratio": 1.0}}, "1.0", "dataset.valid_ratio"),
])
def test_meaningless_settings_are_refused_before_training(tmp_path, tiny_paths, section, bad, key):
    exp = write_experiment(tmp_path, "e", **{k: v for k, v in section.items() if k != "name_"})
    if "name_" in section:  # write_experiment names the file after the experiment
        body = yaml.safe_load(exp.read_text())
        exp.write_text(yaml.safe_dump({**body, "name": section["name_"]}))
    result, out = _invoke("train", str(exp), "--data-dir", str(tiny_paths.root),
                          "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2, out
    msg = _one_error_line(out)
    assert f"{key}:" in msg and "unknown key" not in msg, msg
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("metrics.json"))


def test_every_shipped_experiment_still_loads():
    for path in sorted(Path("experiments").glob("*.yaml")):
        load_experiment(path)


@given(sets=st.lists(st.tuples(KEYS, st.sampled_from(["=", ""]), RHS), max_size=2),
       seeds=st.one_of(st.none(), st.sampled_from(["a", "0,1", "", ",", "1.5", "-1"])),
       name=st.one_of(st.none(), st.sampled_from(["ok", "../x", "a/b", "", ".h"])))
@example(sets=[("model.emb_dim", "=", "8,16")], seeds="a", name=None)
@example(sets=[("model.emb_dim", "=", "8")], seeds=None, name="../x")
@example(sets=[("model.emb_dim", "=", "")], seeds=None, name=None)
def test_sweep_set_is_a_plan_or_one_line(tmp_path_factory, sets, seeds, name):
    tmp = tmp_path_factory.mktemp("sweep")
    exp = write_experiment(tmp, "e")
    args = ["sweep", str(exp), "--dry-run", "--runs-dir", str(tmp / "runs"),
            "--results-dir", str(tmp / "results")]
    for k, eq, v in sets:
        args += ["--set", f"{k}{eq}{v}"]
    if seeds is not None:
        args += ["--seeds", seeds]
    if name is not None:
        args += ["--name", name]
    result, out = _invoke(*args)
    if result.exit_code == 0:
        assert sets and all(eq == "=" and v.strip() for _, eq, v in sets), out
        assert name in (None, "ok", ""), out  # "" means the default name
        return
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), out
    _one_error_line(out)
    assert not (tmp / "results").exists() and not (tmp / "runs").exists()


def test_self_referencing_yaml_anchor_is_one_line(tmp_path):
    # found by the property: `--set name=&a [*a]` reached json.dumps as a circular list
    exp = write_experiment(tmp_path, "e")
    result, out = _invoke("sweep", str(exp), "--set", "name=3", "--set", "name=&a [*a]",
                          "--dry-run", "--runs-dir", str(tmp_path / "r"))
    assert result.exit_code == 2 and "refers to itself" in _one_error_line(out)
    with pytest.raises(ConfigError, match="refers to itself"):
        load_experiment(exp, ["paper=&a {x: *a}"])


# -- study YAML ----------------------------------------------------------------------------

STUDY_VALUES = st.one_of(VALUES, st.sampled_from([
    {"model.emb_dim": [4, 8]}, {"model.emb_dim": []}, {"model.nope": [1]}, {"": [1]},
    {"train.epochs": [-3]}, {"a": {"model.emb_dim": 4}}, {"a": None}, ["e.yaml"], ["missing.yaml"],
    {"rmse": {"a": 1.0}}, {"x": 1}, [0, 0], [-1]]))


@given(field=st.sampled_from(sorted(__import__("recbench.studies", fromlist=["StudyConfig"])
                                    .StudyConfig.model_fields)), value=STUDY_VALUES)
@example(field="study", value="../escape")
@example(field="vary", value={"model.emb_dim": []})
@example(field="seeds", value=[])
@example(field="base", value=[])
def test_study_file_plans_or_names_the_key(tmp_path_factory, field, value):
    tmp = tmp_path_factory.mktemp("study")
    write_experiment(tmp, "e")
    studies = tmp / "studies"
    studies.mkdir()
    body = {"study": "s", "base": [str(tmp / "e.yaml")], "vary": {"model.emb_dim": [4, 8]}}
    if field == "base" and isinstance(value, list):
        value = [str(tmp / v) if isinstance(v, str) else v for v in value]
    body[field] = value
    (studies / "s.yaml").write_text(yaml.safe_dump(body))
    name = body["study"] if isinstance(body["study"], str) and body["study"] else "s"
    result, out = _invoke("ablate", "--study", name, "--studies-dir", str(studies), "--dry-run",
                          "--runs-dir", str(tmp / "runs"), "--results-dir", str(tmp / "results"))
    assert not (tmp / "results").exists() and not (tmp / "runs").exists()
    if result.exit_code == 0:  # a plan that runs something and writes inside results/
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name), out
        assert body["base"] and all(v for v in (body.get("vary") or {}).values()), out
        assert body.get("seeds") is None or (body["seeds"] and min(body["seeds"]) >= 0), out
        return
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), out
    _one_error_line(out)
