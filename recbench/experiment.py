"""The experiment schema: an experiment file validated against every registered model.

It joins the config sections of :mod:`recbench.config` with the model registry
(:func:`recbench.models.registry`: the built-in models and the installed plug-ins) into one
discriminated union, and turns pydantic's errors into one line naming the key, the bad value
and what is allowed. It lives above the models (and below the runner) so that the models can
import their config base classes from :mod:`recbench.config` without an import circle.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, create_model

from recbench.config import (
    DatasetConfig,
    EvalConfig,
    ExperimentConfig,
    TrainConfig,
    check_ranges,
    parse_override,
    read_yaml,
    run_hash,
    set_path,
    to_plain,
)
from recbench.errors import ConfigError, RecbenchError
from recbench.eval.metrics import unknown_metric
from recbench.models import registry
from recbench.runs import read_config


def experiment_schema() -> type[ExperimentConfig]:
    """ExperimentConfig whose ``model`` is the union of every registered model config."""
    return _schema(tuple(spec.config for spec in registry().values()))


@functools.cache
def _schema(configs: tuple[type[BaseModel], ...]) -> type[ExperimentConfig]:
    """Built once per set of model configs (a plug-in installed later gets its own)."""
    from typing import Annotated, Union

    union = Annotated[Union[configs], Field(discriminator="name")]  # noqa: UP007
    return create_model("Experiment", __base__=ExperimentConfig, model=(union, ...))


def validate(raw: dict, origin: str) -> ExperimentConfig:
    try:
        cfg = experiment_schema().model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {explain(exc, raw)}") from None
    problem = check_ranges(cfg, "") or unknown_metric(
        cfg.eval.metrics, registry()[cfg.model.name].task)
    if problem:
        raise ConfigError(f"{origin}: {problem}")
    return cfg


def explain(exc: ValidationError, raw: dict) -> str:
    """The first validation error as ``path: message (allowed: ...)``."""
    err = exc.errors()[0]
    parts = list(err["loc"])
    models = registry()
    if len(parts) > 1 and parts[0] == "model" and parts[1] in models:
        del parts[1]  # the union's tag, not a key (a field may share a model's name: social)
    loc = [str(p) for p in parts]
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(exc.title, loc[:-1], raw)
        return f"unknown key '{path}'" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if err["type"] == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag", "?")
        return f"unknown model '{tag}'; valid models: " + ", ".join(sorted(models))
    if err["type"] == "union_tag_not_found":
        return "model.name is required; valid models: " + ", ".join(sorted(models))
    if err["type"] in _BOUND_ERRORS:  # the key, the bad value and the whole allowed range
        bounds = {**(err.get("ctx") or {}), **_declared_bounds(loc, raw)}
        return f"{path}: {_show(err['input'])} is out of range; allowed: {_describe(bounds)}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] != "value_error" and isinstance(err.get("input"), int | float | str) and \
            not isinstance(err.get("input"), bool):
        msg = f"{msg} (got {_show(err['input'])})"
    if err["type"] == "value_error" and msg.startswith("'"):  # a before-validator named the key
        key, _, rest = msg[1:].partition("' ")
        return f"{'.'.join([*loc, key])}: {rest}"
    if err["type"] == "value_error":  # a model's own check: name the field it talks about
        word = re.split(r"[^A-Za-z0-9_]", msg, maxsplit=1)[0]
        if word in _allowed_keys(exc.title, loc, raw):
            return f"{'.'.join([*loc, word])}: {msg}"
    return f"{path}: {msg}"


_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _declared_bounds(loc: list[str], raw: dict) -> dict[str, Any]:
    """The bounds the field at ``loc`` declares (both ends), so a message gives the range."""
    names = [p for p in loc if not p.isdigit()]  # eval.k.0: the list field eval.k
    cls = _section_class(names[:-1], raw)
    info = cls.model_fields.get(names[-1]) if cls and names else None
    out: dict[str, Any] = {}
    for item in info.metadata if info else []:
        out.update({b: getattr(item, b) for b in ("gt", "ge", "lt", "le")
                    if getattr(item, b, None) is not None})
    return out


def _describe(bounds: dict[str, Any]) -> str:
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = (bounds["le"], "]") if "le" in bounds else (bounds["lt"], ")") if "lt" in bounds \
        else None
    if low and high:
        return f"a number in {low[0]}{low[1]}, {high[0]}{high[1]}"
    if low:
        return f"{'at least' if low[0] == '[' else 'greater than'} {low[1]}"
    if high:
        return f"{'at most' if high[1] == ']' else 'less than'} {high[0]}"
    return "see the field's comment"


def _allowed_keys(_title: str, parent: list[str], raw: dict) -> list[str]:
    cls = _section_class(parent, raw)
    return sorted(cls.model_fields) if cls else []


def _section_class(parent: list[str], raw: dict) -> type[BaseModel] | None:
    """The config class at the dotted path ``parent`` (the experiment's model config for
    ``model``), or None where the path does not lead to one."""
    sections: dict[str, type[BaseModel]] = {
        "dataset": DatasetConfig, "train": TrainConfig, "eval": EvalConfig}
    if not parent:
        return ExperimentConfig
    if parent[0] == "model":
        model = raw.get("model")
        name = model.get("name") if isinstance(model, dict) else None
        models = registry()
        cls: type[BaseModel] | None = models[name].config \
            if isinstance(name, str) and name in models else None
    else:
        cls = sections.get(parent[0])
    for part in parent[1:]:
        if cls is None:
            return None
        ann = cls.model_fields.get(part)
        cls = ann.annotation if ann and isinstance(ann.annotation, type) else None
        if cls is not None and not issubclass(cls, BaseModel):
            cls = None
    return cls


def load_experiment(path: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    raw = read_yaml(path)
    for text in overrides or []:
        key, value = parse_override(text)
        set_path(raw, key, value)
    return validate(raw, str(path))


def with_overrides(cfg: ExperimentConfig, patch: dict[str, Any]) -> ExperimentConfig:
    """A copy of ``cfg`` with dotted-key overrides applied and the result re-validated."""
    raw = copy.deepcopy(to_plain(cfg))
    for key, value in patch.items():
        set_path(raw, key, value)
    return validate(raw, cfg.name)


_HASHES: dict[tuple[str, int], str | None] = {}


def stored_hash(run_dir: Path) -> str | None:
    """The current run hash recomputed from a run folder's or ledger record's config.yaml
    (validated, so defaults added since it was written are filled in); None when it is
    unreadable or no longer a valid config. Cached per file and modification time: config.yaml
    is written once, before training. The lookups of :mod:`recbench.runs` take it as their
    ``rehash`` argument, because run folders sit below the schema in the layers."""
    path = run_dir / "config.yaml"
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _HASHES:
        try:
            _HASHES[key] = run_hash(validate(read_config(run_dir), str(path)))
        except (RecbenchError, TypeError, ValueError):
            _HASHES[key] = None
    return _HASHES[key]
