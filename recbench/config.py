"""Typed configuration: an experiment file's sections, their bounds, overrides, the run hash.

This module sits at the bottom of the package (models, data and the loop import it), so it
knows no model: the experiment schema that joins every model's config into one validated
object lives in :mod:`recbench.experiment`, one layer above the models. Config is data. It
stops at the builders: models get plain constructor arguments, the loop gets
:class:`TrainConfig`, evaluators get ``k``. Errors name the file, the key path and the allowed
values, and are raised as :class:`ConfigError` so the CLI prints one line.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recbench.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(),
                              allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        """`epochs: true` is a mistake, not 1: a boolean only fills a field that takes one."""
        if isinstance(data, dict):
            for key, value in data.items():
                info = cls.model_fields.get(key) if isinstance(key, str) else None
                if isinstance(value, bool) and info is not None and not _takes_bool(info.annotation):
                    raise ValueError(f"'{key}' takes a number or text, not {str(value).lower()}")
        return data


def _takes_bool(annotation: Any) -> bool:
    from typing import get_args

    if annotation is bool or annotation is Any:
        return True
    return any(_takes_bool(a) for a in get_args(annotation))


# Constrained scalars: a value that would make a run meaningless (no epochs, a zero learning rate,
# an empty test split) is rejected when the file is read, not discovered after training nothing.
# Every numeric field of every config (the model configs included) uses one of these, or states
# its own bounds with Field(...); tests/test_config.py checks that none is left unbounded.
PosInt = Annotated[int, Field(ge=1)]  # sizes, counts, epochs of a loop that must run
NonNegInt = Annotated[int, Field(ge=0)]  # counts where 0 means "none" (warm-up epochs, ...)
PosFloat = Annotated[float, Field(gt=0)]  # scales a division or a softmax depends on
NonNegFloat = Annotated[float, Field(ge=0)]  # regularisers, weights, margins
Share = Annotated[float, Field(ge=0, lt=1)]  # dropout, a share left out (0: none; 1: everything)
Factor = Annotated[float, Field(gt=0, lt=1)]  # a multiplier that shrinks and never zeroes
Probability = Annotated[float, Field(gt=0, lt=1)]  # a split both sides of which must be non-empty
FolderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


class DatasetConfig(Strict):
    """Which data and which split protocol. Everything here determines the processed graph."""

    name: FolderName
    protocol: Literal["fixed", "random", "holdout", "loo"] | None = None
    split: str | None = None  # fixed protocol: u1..u5/ua/ub (ML-100K), default (Douban), published (Yelp)
    test_ratio: Probability = 0.2  # random protocol
    per_user: bool = True  # random protocol: per user or over all rows
    legacy_shuffle: bool = False  # random, global: NumPy RandomState(split_seed) as GLocal-K's ML-1M split
    holdout_k: PosInt = 3  # holdout protocol: test items per user
    num_negatives: PosInt = 99  # loo protocol: sampled negatives per user
    loo_by_time: bool = True  # loo: latest interaction (False: a random one, e.g. Yelp)
    # share of training rows carved out for validation
    valid_ratio: Share = 0.0
    valid_per_user: bool = True
    # keep this share of training rows (cold-start curves)
    train_ratio: Annotated[float, Field(gt=0, le=1)] = 1.0
    min_rating: float | None = None  # keep rows with rating >= this (e.g. Douban positives >= 4)
    split_seed: NonNegInt = 0  # the data split's seed, separate from the run seed

    def key(self) -> str:
        """Folder name under data/processed/NAME/: the protocol and a hash of its parameters."""
        body = json.dumps(self.model_dump(exclude={"name"}), sort_keys=True)
        return f"{self.protocol or 'default'}-{hashlib.sha256(body.encode()).hexdigest()[:8]}"


class TrainConfig(Strict):
    """The loop's settings; model-specific schedules live in the model's config."""

    epochs: PosInt = 100
    lr: NonNegFloat = 1e-3  # 0 freezes the weights (a baseline of the initialisation)
    batch_size: PosInt = 2048
    weight_decay: NonNegFloat = 0.0
    optimizer: Literal["adam", "adamw", "sgd", "adagrad", "lbfgs"] = "adam"
    # Adam/AdamW's (β1, β2): torch's default; SASRec's reference code uses (0.9, 0.98)
    betas: tuple[Share, Share] = (0.9, 0.999)
    patience: PosInt | None = 10  # early stopping on `monitor` (None: run the fixed schedule)
    # learning-rate decay on a validation plateau: every `plateau_patience` validations without
    # improving on `monitor`, every learning rate is multiplied by `plateau_decay` (None: a
    # constant rate). Large-batch schedules climb fast and then stall at a noise floor; a decay
    # chosen on validation lets one session's budget finish the climb (issue 36).
    plateau_decay: Factor | None = None
    plateau_patience: PosInt = 3
    # a fixed step schedule: after each epoch listed (0-based, as history.jsonl counts), every
    # learning rate is multiplied by `lr_gamma`. It replays, on data without a validation split
    # (a refit on all training pairs), the decays a plateau-decayed run chose on validation.
    lr_milestones: list[NonNegInt] = Field(default_factory=list)
    lr_gamma: Factor = 0.5
    monitor: str | None = None  # validation metric for best.pt; default: the task's headline
    eval_every: PosInt = 1
    num_threads: PosInt | None = None
    # the numeric path of BPR-MF / LightGCN / NGCF's step (recbench/native/choice.py): auto =
    # the native kernels on the CPU where they build and the graph is below the large-graph
    # size, never decided by the thread count or the load; native where they cannot run is an
    # error. In the run hash (the floats differ in the last bits between the two paths).
    # LightGCN / NGCF with k > 1 negatives a positive: autograd under auto and torch (the floats
    # such runs were recorded with), the written-out native step under native.
    kernels: Literal["auto", "native", "torch"] = "auto"
    # the published protocol of NGCF/LightGCN's official code: also score TEST at every
    # validation point and record the best test evaluation in metrics.json's extra
    # (test_selected_*). A labelled diagnosis only: it never selects weights or stops a run.
    track_test: bool = False
    # how a pairwise (BPR) epoch draws its positive pairs: `interactions` = every training pair
    # once, shuffled; `users` = as many draws as training pairs, each a user uniformly at random
    # (among users with a training pair) and then one of its pairs uniformly — the sampler of the
    # official NGCF and LightGCN code (LightGCN-PyTorch's UniformSample_original), which weighs
    # each user equally, as a per-user metric (Recall@20) does
    pair_sampling: Literal["interactions", "users"] = "interactions"


class EvalConfig(Strict):
    metrics: list[str] = Field(default_factory=list)  # empty: the task's defaults
    k: list[PosInt] = Field(default_factory=lambda: [20], min_length=1)
    batch_size: PosInt = 1024  # users scored at once in full ranking


class ExperimentConfig(Strict):
    """One experiment file. ``model`` is replaced by the registry's discriminated union."""

    name: FolderName  # the run folder runs/<name>/: one path component
    dataset: DatasetConfig
    model: Any
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    seeds: list[NonNegInt] = Field(default_factory=lambda: [0], min_length=1)
    seed: NonNegInt | None = None  # set when the experiment is expanded into one run per seed
    paper: dict[str, float] = Field(default_factory=dict)
    # where the run's curves are also streamed (recbench/tracking.py, docs/tracking.md): none,
    # tensorboard, mlflow or a list of them. Out of the run hash: it records numbers, never
    # changes one.
    track: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=list)

    @field_validator("track", mode="before")
    @classmethod
    def _track_list(cls, value: Any) -> Any:
        """``track: none`` / ``track: mlflow`` as well as a list; each tracker once."""
        if value is None or value == "none":
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(dict.fromkeys(value))
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, seeds: list[int]) -> list[int]:
        return unique_seeds(seeds)


def unique_seeds(seeds: list[int]) -> list[int]:
    """A seed list with no repeats. Why refuse rather than drop: a repeated seed is the same
    run, and a study counted it once per mention ("± 0.0000, seeds 2/4", issue 31.6)."""
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ValueError(f"seed(s) {', '.join(map(str, twice))} listed more than once; each seed "
                         "is one run, list it once")
    return seeds


def check_heads_divide(width: int, num_heads: int, field: str) -> None:
    """Multi-head attention splits ``field`` (its width) across the heads: a config validator
    calls this so an indivisible pair is a one-line error at load, not a failure at build."""
    if width % num_heads:
        raise ValueError(f"{field} ({width}) must be divisible by num_heads ({num_heads})")


def set_path(raw: dict, dotted: str, value: Any) -> None:
    """Apply one ``a.b.c=value`` override to a raw dict (creating missing sub-dicts)."""
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


# Bounds on a YAML document the user (or a downloaded run folder) hands us. Experiment, study
# and space files are a few KB; a document past these is a mistake or an attack (anchors that
# double at every level expand 30 lines into 2**30 values: "billion laughs").
MAX_YAML_BYTES = 4 * 1024**2
MAX_YAML_VALUES = 200_000  # values after every alias is expanded


def check_acyclic(value: Any, where: str, limit: int = MAX_YAML_VALUES) -> Any:
    """A YAML anchor can make a list or mapping contain itself (``&a [*a]``), or expand
    exponentially (``&b [*a, *a]``, level after level): refuse both here, before validation,
    a hash or a JSON writer walks the expanded document. The walk visits each *distinct*
    node once (aliases share their node), so it is linear in the file, whatever it expands to."""
    size = _expanded_size(value, limit)
    if size is None:
        raise ConfigError(f"{where}: a value refers to itself (a YAML anchor inside its own "
                          "alias); write the value out")
    if size > limit:
        raise ConfigError(f"{where}: the YAML anchors/aliases expand to more than {limit:,} "
                          "values; write the values out instead of nesting aliases")
    return value


def _children(node: Any) -> list:
    return [*node.keys(), *node.values()] if isinstance(node, dict) else list(node)


def _expanded_size(value: Any, limit: int) -> int | None:
    """How many values ``value`` holds once every shared node is counted at each place it is
    used (capped just past ``limit``), or None when a node contains itself. Iterative
    depth-first post-order, memoised by node identity: no recursion limit, no expansion."""
    containers = (dict, list, set, tuple)
    if not isinstance(value, containers):
        return 1
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] if isinstance(c, containers) else 1
                            for c in _children(node))
            sizes[key] = min(total, limit + 1)
            continue
        if key in sizes:
            continue
        if key in on_path:
            return None
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node)
                     if isinstance(c, containers) and id(c) not in sizes)
    return sizes[id(value)]


def parse_yaml(data: bytes, where: str) -> Any:
    """A YAML document from bytes, bounded: too large, not UTF-8 text (a binary file),
    malformed, self-referring or exponentially aliased is one ConfigError naming ``where``."""
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{where}: too large for a YAML config ({len(data):,} bytes; at most "
                          f"{MAX_YAML_BYTES:,})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{where}: line {line} is not UTF-8 text (a binary file?); give a "
                          "YAML file") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}:{at}: malformed YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config") from None
    return check_acyclic(raw, where)


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of a regular file (``what`` names it in the error): a device
    such as /dev/zero, a pipe or a huge file is refused instead of read until memory runs out."""
    import stat

    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file; give the path of a {what}")
        if info.st_size > limit:
            raise ConfigError(f"{path}: too large for a {what} ({info.st_size:,} bytes; at most "
                              f"{limit:,})")
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) > limit:
        raise ConfigError(f"{path}: too large for a {what} (more than {limit:,} bytes)")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as YAML, so 7, false and [3, 5] keep their types."""
    if "=" not in text:
        raise ConfigError(f"--set takes key=value (e.g. model.emb_dim=64), got '{text}'")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value
    return key.strip(), check_acyclic(parsed, f"--set {text!r}")


def load_yaml_file(path: Path, what: str = "experiment file") -> Any:
    """Any YAML file the user hands us (experiment, study, search space, summary): a missing
    file, malformed YAML or a self-referring anchor is one ConfigError line naming the place."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    return parse_yaml(read_bounded(path, MAX_YAML_BYTES, what), str(path))


def validate_file(cls: type[M], raw: Any, path: Path, hint_keys: bool = False) -> M:
    """``cls`` validated from a file's contents; the first error as one ConfigError line
    (``path: key: message``, with the allowed keys of ``cls`` for an unknown top-level key
    when ``hint_keys``)."""
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        hint = f" (allowed keys: {', '.join(cls.model_fields)})" \
            if hint_keys and err["type"] == "extra_forbidden" else ""
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {loc}: {msg}{hint}") from None


def read_yaml(path: Path) -> dict:
    raw = load_yaml_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an experiment file must be a mapping of sections")
    return check_acyclic(raw, str(path))


# Model configs belong to their model files; these name-based rules cover every field of every
# model (a new field included) without each config spelling its bounds: sizes are >= 1, shares
# of something lie in [0, 1), and a number whose default is non-negative stays non-negative.
_SIZE = re.compile(r"(^|_)(dim|dims|hidden|heads|channels|size|growth|k|maxiter|maxcor)$")
_SHARE = re.compile(r"(^|_)(dropout|ratio|prob)$")
_INT64_MAX = 2**63 - 1
# Widths of weight tensors (embedding sizes, hidden layers, heads, kernels): each multiplies
# an allocation, so an absurd value is refused at load, naming the key, instead of reaching the
# allocator (``emb_dim: 1e12`` asked for 96 TB). The largest width shipped is 500.
_WIDTH = re.compile(r"(^|_)(dim|dims|hidden|heads|channels|growth)$|^(kernel|gk)_size$")
MAX_WIDTH = 1 << 16
_SIGNED = re.compile(r"(^|_)(slope|bias|offset|shift)$")


def check_ranges(node: Any, path: str) -> str | None:
    """The first out-of-range value under a config model, as ``path: message``, or None."""
    if not isinstance(node, BaseModel):
        return None
    for name, info in type(node).model_fields.items():
        value, where = getattr(node, name), f"{path}.{name}".lstrip(".")
        if isinstance(value, BaseModel):
            problem = check_ranges(value, where)
            if problem:
                return problem
            continue
        default = info.get_default(call_default_factory=True)
        values = value if isinstance(value, list | tuple) else [value]
        defaults = default if isinstance(default, list | tuple) and default else [default]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                return f"{where}: must be a finite number, got {v}"
            if abs(v) > _INT64_MAX:
                return f"{where}: {v} is too large (at most {_INT64_MAX})"
            if _WIDTH.search(name) and v > MAX_WIDTH:
                return (f"{where}: {v} is too large for a layer size (at most {MAX_WIDTH:,}); "
                        "its weights would not fit in memory")
            if info.metadata:  # the field states its own bounds (and pydantic checked them)
                continue
            if _SHARE.search(name) and not 0 <= v < 1:
                return f"{where}: a share must lie in [0, 1), got {v}"
            numeric_default = [d for d in defaults if isinstance(d, int | float)
                               and not isinstance(d, bool)]
            if _SIZE.search(name) and isinstance(v, int) and v < 1 and \
                    all(d >= 1 for d in numeric_default):
                return f"{where}: must be at least 1, got {v}"
            if v < 0 and numeric_default and all(d >= 0 for d in numeric_default) and \
                    not _SIGNED.search(name) and name != "fanouts":
                return f"{where}: must not be negative, got {v}"
    return None


def expand_seeds(cfg: ExperimentConfig) -> list[ExperimentConfig]:
    """One resolved run config per seed (``seed`` set)."""
    if cfg.seed is not None:
        return [cfg]
    return [cfg.model_copy(update={"seed": s}) for s in cfg.seeds]


def to_plain(cfg: BaseModel) -> dict:
    return json.loads(cfg.model_dump_json())


# Keys of a resolved run config that cannot change its computed numbers, left out of the run
# hash so that changing them keeps every finished run cached (docs/scale-out.md, "The run hash"):
HASH_EXCLUDED: dict[tuple[str, ...], str] = {
    ("paper",): "the paper's figures are printed beside ours; correcting one changes no run",
    ("seeds",): "the list of seeds to expand; a run is one seed, and `seed` stays in the hash "
                "(the list stays in when `seed` is unset, the only case it could matter)",
    ("train", "num_threads"): "how fast, not what: runs stay shareable across machines",
    ("eval", "batch_size"): "how many users are scored at once; each user's scores and ranks "
                            "are computed row by row, so the metrics do not depend on it",
    ("track",): "where the curves are also written (TensorBoard, MLflow); it reads the run's "
                "numbers and changes none",
}

# Keys added after runs were cached, left out of the hash while they hold the value that
# reproduces the code from before they existed (so those runs stay cached; any other value
# is hashed like every key): path → that value.
HASH_DEFAULTS: dict[tuple[str, ...], object] = {
    ("model", "knn_windows"): [0],  # seq_baseline item-kNN: the whole history, unweighted
    ("model", "knn_decays"): [1.0],
    ("model", "next_item", "min_item_ratings"): 1,  # next-item task: every item kept
    ("train", "kernels"): "auto",  # issue 36: what every run before the key did
    ("model", "next_item", "loss"): "softmax",  # next-item task: full-softmax cross-entropy
    ("model", "next_item", "windows"): "every_target",
    ("train", "betas"): [0.9, 0.999],  # torch's Adam default
    ("train", "plateau_decay"): None,  # a constant learning rate, as every run before the key
    ("train", "plateau_patience"): 3,
    ("train", "lr_milestones"): [],  # a constant rate, as every run before the key
    ("train", "lr_gamma"): 0.5,
    ("model", "shift_similarity"): False,  # ItemKNN: the plain sum of kept similarities
    ("model", "normalize_neighbours"): False,
    ("model", "average_bias"): False,
    ("train", "pair_sampling"): "interactions",  # every training pair once an epoch
    ("model", "layout"): "pre_norm",  # GConv-Transform: our encoder, as before the key
    ("model", "cnn_path"): "conv2d",  # seq_baseline Caser: torch's Conv2d, as before the key
    ("model", "cheb_norm"): "random_walk",  # GConv-Transform: L̃ = -D⁻¹A, as before the key
}


def _digest(plain: dict) -> str:
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:10]


def hash_plain(plain: dict) -> str:
    """:func:`run_hash` of a config already in plain form (a run's config.yaml as written)."""
    body = copy.deepcopy(plain)
    for path in HASH_EXCLUDED:
        if path == ("seeds",) and body.get("seed") is None:
            continue
        parent = body
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    for path, value in HASH_DEFAULTS.items():
        parent = body
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and path[-1] in parent and parent[path[-1]] == value:
            del parent[path[-1]]
    return _digest(body)


def hashed_differences(old: dict, new: dict) -> list[str]:
    """``key: old → new`` for every key where two plain run configs differ and the run hash
    looks (the keys of HASH_EXCLUDED, e.g. ``train.num_threads``, are not differences)."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: tuple[str, ...]) -> None:
        if path in HASH_EXCLUDED and not (path == ("seeds",) and new.get("seed") is None):
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in dict.fromkeys([*a, *b]):
                walk(a.get(key), b.get(key), (*path, str(key)))
        elif a != b:
            out.append(f"{'.'.join(path)}: {json.dumps(a)} → {json.dumps(b)}")

    walk(old, new, ())
    return out


def legacy_hash_plain(plain: dict) -> str:
    """The hash run folders and ledger records were named with before HASH_EXCLUDED (only
    ``train.num_threads`` left out): old folders keep that name and are matched by the hash
    recomputed from their config.yaml (runs.find_finished), so nothing has to be renamed."""
    body = copy.deepcopy(plain)
    if isinstance(body.get("train"), dict):
        body["train"].pop("num_threads", None)
    return _digest(body)


def run_hash(cfg: ExperimentConfig) -> str:
    """sha256 of the canonical JSON of a resolved run config (seed included), 10 hex chars.

    It covers exactly what can change the computed result: every key except those of
    :data:`HASH_EXCLUDED` (the paper's figures, the ``seeds`` list of a one-seed run,
    ``train.num_threads``, ``eval.batch_size`` and ``track``), so correcting a paper figure or
    adding a seed to a study keeps its finished runs cached while any change to the data,
    model, training or metrics makes a new run. Anything that could change a number stays in: a key
    is excluded only when the code provably computes the same metrics whatever its value."""
    return hash_plain(to_plain(cfg))
