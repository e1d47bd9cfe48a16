"""The study file (experiments/studies/NAME.yaml, or a sweep built from the command line):
its schema, how it is found and loaded, and the variants it expands into.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from recbench.config import (
    Strict,
    check_acyclic,
    load_yaml_file,
    parse_override,
    unique_seeds,
    validate_file,
)
from recbench.errors import ConfigError
from recbench.eval.metrics import METRICS
from recbench.experiment import load_experiment


class TableColumn(Strict):
    """One column of an extra table: a figure of each run's metrics.json."""

    key: str  # a test metric ('ndcg@10'), 'extra.KEY', a top-level key ('seconds_per_epoch'),
    # or 'A - B' of two of those; in a ``rows`` study a run's figure is KEY|ROW
    format: str = ".4f"  # Python format spec of the value (mean over seeds in a cell table)
    paper: dict[str, dict[str, float]] = Field(default_factory=dict)  # as the study's `paper:`


class ExtraTable(Strict):
    """A table beside table.md, written to results/STUDY/FILE: per-seed rows, figures of a
    run's ``extra`` metrics, several metric keys of one run (e.g. every list length N).
    Tables naming the same file are written to it one after the other."""

    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.md$")  # in results/STUDY/
    title: str
    note: str = ""
    per: Literal["cell", "run"] = "cell"  # cell: one row per (experiment, variant[, row]) with
    # the mean over seeds; run: one row per finished run (seed)
    spread: bool = False  # cell tables: mean ± sample std over seeds instead of the mean
    columns: Annotated[dict[str, str | TableColumn], Field(min_length=1)]

    @field_validator("file")
    @classmethod
    def _not_the_study_table(cls, name: str) -> str:
        if name in ("table.md", "extra.md"):
            raise ValueError(f"{name} is the study's own table; name the extra table otherwise")
        return name

    def column_specs(self) -> dict[str, TableColumn]:
        return {label: TableColumn(key=c) if isinstance(c, str) else c
                for label, c in self.columns.items()}


class StudyConfig(Strict):
    """A named study file (experiments/studies/NAME.yaml)."""

    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # names results/STUDY/
    description: str = ""
    base: list[str] = Field(min_length=1)
    vary: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict)
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] | None = None
    metric: str | None = None
    reference: str | None = None
    x_label: str | None = None
    paper: dict[str, dict[str, float]] = Field(default_factory=dict)
    columns: list[str] = Field(default_factory=list)  # more figures per cell → extra.md: a test
    # metric ('hr@10'), an 'extra.' key of metrics.json ('extra.params_m') or a top-level one
    # one run reports several rows: row R's value is the run's ``metric|R`` (e.g. the ten GLA
    # representation types of one set of nets); rows repeat under every variant of the study
    rows: list[str] = Field(default_factory=list)
    # sanity guard: a row ranking below the best of its listed rows (same experiment and
    # variant) is marked in the table, e.g. {AD: [GD, GP, LD, LP]}
    guard: dict[str, list[str]] = Field(default_factory=dict)
    split: Literal["test", "valid"] = "test"  # valid: the trainer's final validation metrics
    tables: list[ExtraTable] = Field(default_factory=list)  # more files in results/STUDY/
    # secondary headline metrics: each gets table_<metric>.{md,csv} with the main table's
    # statistics (e.g. hr@10 where every model ties on the paper's accuracy@1); the `paper`
    # figures are the main metric's, so these tables quote none
    also: list[str] = Field(default_factory=list)
    # more reference rows: for each, table.md and every `also` table again with that row as
    # the paired test's reference (table_vs_<row>.{md,csv}, table_<metric>_vs_<row>.{md,csv}),
    # so two rows neither of which is `reference` get their paired test and Holm p (issue 33:
    # ours on SASRec's encoder against SASRec itself, beside the study's own reference)
    versus: list[str] = Field(default_factory=list)

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, seeds: list[int] | None) -> list[int] | None:
        return None if seeds is None else unique_seeds(seeds)

    @field_validator("vary")
    @classmethod
    def _values_once(cls, vary: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """A value listed twice is one variant whose runs the table counted twice."""
        for key, values in vary.items():
            labels = [_label(v) for v in values]
            twice = sorted({lab for lab in labels if labels.count(lab) > 1})
            if twice:
                raise ValueError(f"{key}: value(s) {', '.join(twice)} listed more than once; "
                                 "list each value once")
        return vary

    @field_validator("also")
    @classmethod
    def _known_metrics_once(cls, also: list[str]) -> list[str]:
        """A secondary metric must be a registered name (a cutoff where it takes one): a typo
        would fail only after the study ran, in the middle of writing its tables."""
        for name in also:
            problem = metric_name_problem(name)
            if problem:
                raise ValueError(f"also: {problem}")
        twice = sorted({m for m in also if also.count(m) > 1})
        if twice:
            raise ValueError(f"also: metric(s) {', '.join(twice)} listed more than once; "
                             "list each metric once")
        return also

    @model_validator(mode="after")
    def _labels_once(self) -> StudyConfig:
        labels = [label for label, _ in variant_patches(self)]
        twice = sorted({lab for lab in labels if labels.count(lab) > 1})
        if twice:
            raise ValueError(f"variant label(s) {', '.join(twice)} name both a vary value and a "
                             "variant; rename the variant")
        twice = sorted({r for r in self.versus if self.versus.count(r) > 1})
        if twice:
            raise ValueError(f"versus: row(s) {', '.join(twice)} listed more than once; "
                             "list each row once")
        if self.reference is not None and self.reference in self.versus:
            raise ValueError(f"versus: {self.reference} is the study's own reference "
                             "(table.csv); list only other rows")
        if self.metric is not None and self.metric in self.also:
            raise ValueError(f"also: {self.metric} is the study's own metric (table.csv); "
                             "list only other metrics")
        return self


def metric_name_problem(name: str) -> str | None:
    """Why ``name`` is no metric a run writes ('hr@10', 'mrr', 'accuracy@1'), or None."""
    if name in METRICS and not METRICS[name].at_k:
        return None
    base, at, k = name.partition("@")
    if base in METRICS and METRICS[base].at_k and at and k.isdigit() and int(k) > 0:
        return None
    known = ", ".join(m + ("@K" if METRICS[m].at_k else "") for m in METRICS)
    return f"unknown metric '{name}'; known: {known}"


def _file_safe(text: str) -> str:
    """``text`` with every character outside [A-Za-z0-9._-] replaced by '_' (a plain file name)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def table_stem(metric: str) -> str:
    """The file stem of a secondary metric's table in results/STUDY/: 'hr@10' → 'table_hr_at_10'
    (a plain file name on every system)."""
    return "table_" + _file_safe(metric.replace("@", "_at_"))


def versus_stem(stem: str, reference: str) -> str:
    """The file stem of a table read against another reference row (``versus:``):
    ('table', 'sasrec-ref') → 'table_vs_sasrec-ref', ('table_hr_at_10', …) →
    'table_hr_at_10_vs_sasrec-ref'."""
    return f"{stem}_vs_" + _file_safe(reference)


def load_study(studies_dir: Path, name: str, overrides: list[str] | None = None) -> StudyConfig:
    known = {s.study: s for s in list_studies(studies_dir)}
    if name not in known:
        raise ConfigError(f"unknown study '{name}'; known studies: {', '.join(sorted(known)) or 'none'}")
    study = known[name]
    if overrides:
        extra = dict(study.set)
        extra.update(dict(parse_override(o) for o in overrides))
        study = study.model_copy(update={"set": extra})
    return study


def read_study(path: Path) -> StudyConfig:
    return validate_file(StudyConfig, load_yaml_file(path, "study file"), path, hint_keys=True)


def list_studies(studies_dir: Path) -> list[StudyConfig]:
    """Every study file; names must be unique because they name results/NAME/."""
    found: dict[str, Path] = {}
    out = []
    for path in sorted(studies_dir.glob("*.yaml")):
        study = read_study(path)
        if study.study in found:
            raise ConfigError(f"study name '{study.study}' is used by both {found[study.study]} "
                              f"and {path}; study names must be unique")
        found[study.study] = path
        out.append(study)
    return out


def _label(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def variant_patches(study: StudyConfig) -> list[tuple[str, dict[str, Any]]]:
    """(label, dotted-key patch) for the grid of ``vary`` and the named ``variants``."""
    out: list[tuple[str, dict[str, Any]]] = []
    if study.vary:
        keys = list(study.vary)
        for combo in itertools.product(*(study.vary[k] for k in keys)):
            if len(keys) == 1:
                label = _label(combo[0])
            else:
                label = ", ".join(f"{k.split('.')[-1]}={_label(v)}" for k, v in zip(keys, combo))
            out.append((label, dict(zip(keys, combo))))
    out.extend((name, dict(patch)) for name, patch in study.variants.items())
    return out or [("base", {})]


def count_runs(study: StudyConfig) -> int:
    n_variants = len(variant_patches(study))
    n_seeds = len(study.seeds) if study.seeds is not None else 0
    return len(study.base) * n_variants * n_seeds if n_seeds else len(study.base) * n_variants


def parse_seeds(seeds: str | None) -> list[int] | None:
    """``--seeds 0,1`` as a list (None when not given); anything else is one line."""
    try:
        return [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError:
        raise ConfigError(f"--seeds {seeds!r}: give comma-separated integers, e.g. 0,1") from None


def adhoc(experiment: Path, sets: list[str], seeds: str | None, name: str | None,
          metric: str | None) -> StudyConfig:
    """A study built in memory from ``recbench sweep EXP --set key=v1,v2``."""
    vary: dict[str, list[Any]] = {}
    for text in sets:
        if "=" not in text:
            raise ConfigError(f"--set takes key=v1,v2 (e.g. model.emb_dim=32,64), got '{text}'")
        key, values = text.split("=", 1)
        try:
            parsed = yaml.safe_load(f"[{values}]")
        except yaml.YAMLError:
            parsed = values.split(",")
        check_acyclic(parsed, f"--set {text!r}")
        if not parsed or not key.strip():
            raise ConfigError(f"--set {text!r} names no key or no values; give key=v1,v2")
        vary[key.strip()] = parsed
    if not vary:
        raise ConfigError("sweep needs at least one --set key=v1,v2")
    base = load_experiment(experiment)
    stem = "-".join(k.split(".")[-1] for k in vary)
    seed_list = parse_seeds(seeds)
    study = name or f"sweep-{base.name}-{stem}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", study):
        raise ConfigError(f"--name {study!r}: the study's results folder needs a plain name "
                          "(letters, digits, '.', '_', '-')")
    try:
        return StudyConfig(study=study, description=f"ad-hoc sweep of {experiment}",
                           base=[str(experiment)], vary=vary, seeds=seed_list, metric=metric)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        option = "--seeds" if loc.startswith("seeds") else "--set" if loc.startswith("vary") else loc
        raise ConfigError(f"{option}: {loc}: {err['msg']}") from None
