"""``recbench tune``: an Optuna search over any config key, each trial an ordinary run.

Why built this way:
- A trial is a run directory found again by its config hash, exactly like a study's runs, so a
  trial that already ran (in this search, an earlier one, or a study) is read back, never run
  twice, and a trial lost mid-run resumes its ``.partial`` folder.
- The objective is the run's best *validation* value of its monitor (``metrics.json`` →
  ``best_valid``), reported every evaluation so Optuna's pruner can stop bad trials early.
  Test metrics are never read during the search.
- The search lives in an Optuna storage (SQLite under ``runs/tune/`` by default, any Optuna
  storage URL by ``--storage``), so an interrupted search continues where it stopped and several
  machines can work on one search.
- After the search, the best configuration and the hand-picked one are trained for every final
  seed as an ordinary study (``results/tune-NAME/``), tested once each, with the paired test:
  :mod:`recbench.study_session` opens, runs, records and reports it as it does ablate's, and
  the one report writer (:mod:`recbench.studies.report`) adds the search's pages from
  :func:`summary`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from recbench import runs
from recbench.config import (
    ExperimentConfig,
    Strict,
    load_yaml_file,
    parse_override,
    read_yaml,
    run_hash,
    set_path,
    validate_file,
)
from recbench.errors import ConfigError, RecbenchError, RunError
from recbench.executors import Executor
from recbench.experiment import load_experiment, stored_hash, with_overrides
from recbench.studies.search import SearchSummary, epochs_run, fmt
from recbench.train.api import lower_is_better


class ParamSpace(Strict):
    """One searched key: ``{type: float, low: 1e-4, high: 1e-1, log: true}`` and the like."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} parameter needs low < high")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log: true and step exclude each other")
        return self


class SearchSpace(Strict):
    """A search space file (experiments/spaces/*.yaml)."""

    description: str = ""
    params: dict[str, ParamSpace] = Field(min_length=1)  # dotted config keys, as in --set
    sampler: Literal["tpe", "random"] = "tpe"
    # median: Optuna's median pruner; halving: successive halving; hyperband: Hyperband over
    # successive-halving brackets (Optuna's advice beside TPE). The last two start at
    # ``warmup_evaluations`` evaluations and stop at the experiment's train.epochs.
    pruner: Literal["median", "halving", "hyperband", "none"] = "median"
    startup_trials: int = Field(default=5, ge=0)  # trials before TPE models / the pruner prunes
    warmup_evaluations: int = Field(default=2, ge=0)  # evaluations a trial runs unpruned
    seed: int = Field(default=0, ge=0)  # the sampler's seed
    # the validation metric to optimise; default the run's monitor (its best_valid). Another
    # name is read from the run's final validation metrics (metrics.json extra.valid), e.g. one
    # representation type of the GLA model such as recall@15|AD
    objective: str | None = None


def read_space(path: Path) -> SearchSpace:
    """The space file, validated; every problem is one line naming the file and the key."""
    raw = load_yaml_file(path, "search space file (see experiments/spaces/)")
    return validate_file(SearchSpace, raw, path)


def check_space(space: SearchSpace, base: ExperimentConfig) -> None:
    """Every key must exist in the experiment and accept its extreme values: found before
    the first trial, not as a failed trial an hour in."""
    for key, p in space.params.items():
        values = p.choices if p.type == "categorical" else [p.low, p.high]
        for value in values:
            if p.type == "int":
                value = int(value)
            try:
                with_overrides(base, {key: value})
            except RecbenchError as exc:
                raise ConfigError(f"search space key {key} = {value!r}: {exc}") from None


@dataclass(frozen=True)
class TuneSetup:
    """What a tuning worker needs, as plain picklable values (workers may be other machines)."""

    experiment: str
    overrides: tuple[str, ...]
    space: dict
    name: str
    storage: str
    data_root: str
    runs_root: str
    device: str = "cpu"
    threads: int | None = None
    space_file: str = ""  # the --space path as given (the record names it for a rebuild)


def default_storage(runs_root: Path, name: str) -> str:
    folder = runs_root.resolve() / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / name}.db"


# the Python driver SQLAlchemy loads for a URL without "+driver", and its pip package
_DRIVERS = {"postgresql": "psycopg2-binary", "mysql": "mysqlclient (or a mysql+pymysql:// URL "
            "with PyMySQL)"}
_URL = r"(sqlite|postgresql|mysql)(\+\w+)?://"


def open_storage(url: str):
    """The Optuna RDB storage at ``url``; a URL it cannot use, a missing database driver or a
    database that does not answer is one ConfigError line, not a SQLAlchemy traceback."""
    import re

    match = re.match(_URL, url)
    if match is None:
        raise ConfigError(f"--storage {url!r} is not a storage URL recbench can use; give "
                          "sqlite:///PATH.db, postgresql://USER@HOST/DB or mysql://USER@HOST/DB")
    try:
        return _rdb_storage(url)
    except ImportError as exc:
        scheme = match.group(1)
        package = _DRIVERS.get(scheme) if match.group(2) is None else None
        what = f"pip install {package}" if package else f"install the driver ({exc})"
        raise ConfigError(f"--storage {scheme}:// needs its database driver: {what}") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors: bad URL, no server, ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"--storage {url} cannot be opened ({type(exc).__name__}: "
                          f"{first[:160]})") from None


def _rdb_storage(url: str):
    # heartbeats: a trial whose process died is failed after the grace period and retried
    # with the same parameters, so its run resumes from the .partial folder
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats are marked experimental in Optuna
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # Optuna >= 4.9
            retry = {"heartbeat_stale_trial_callback":
                     optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)}
        else:
            retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=2)}
        return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120, **retry)


def _sampler(space: SearchSpace):
    import optuna

    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=space.seed)
    return optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=space.startup_trials)


def _pruner(space: SearchSpace, eval_every: int = 1, max_epochs: int | None = None):
    """Trials report their validation value at each evaluation with the *epoch* as the step,
    so the warm-up of ``warmup_evaluations`` evaluations is that many times ``eval_every``
    epochs, and Optuna prunes from step ``n_warmup_steps`` on, hence the + 1. (Counted in
    evaluations, the warm-up let a trial evaluated every 5 epochs be pruned at its first
    evaluation.) Halving and Hyperband take the same warm-up, in epochs, as their smallest
    resource, and the experiment's epoch budget as Hyperband's largest."""
    import optuna

    warmup_epochs = space.warmup_evaluations * eval_every
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=space.startup_trials,
                                           n_warmup_steps=warmup_epochs + 1)
    min_resource = max(1, warmup_epochs)
    if space.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource)
    if space.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=min_resource,
            max_resource=max(min_resource + 1, max_epochs) if max_epochs else "auto")
    return optuna.pruners.NopPruner()


def search_config(setup: TuneSetup) -> ExperimentConfig:
    """The experiment every trial starts from: the file plus ``--set``, at its first seed
    (the search seed; the final seeds come after the search)."""
    threads = [f"train.num_threads={setup.threads}"] if setup.threads else []  # not hashed
    cfg = load_experiment(Path(setup.experiment), list(setup.overrides) + threads)
    return cfg.model_copy(update={"seed": cfg.seeds[0]})


def direction(cfg: ExperimentConfig, objective: str | None = None
              ) -> Literal["minimize", "maximize"]:
    """Minimise error monitors (rmse, mse, mae), maximise ranking/accuracy ones."""
    from recbench.models import registry

    monitor = objective or cfg.train.monitor or {"rating": "rmse"}.get(
        registry()[cfg.model.name].task, "")
    return "minimize" if lower_is_better(monitor) else "maximize"


def open_study(setup: TuneSetup, cfg: ExperimentConfig, worker: int = 0):
    """The search's Optuna study; ``worker`` offsets the sampler's seed so parallel workers
    do not draw the same random start-up configurations."""
    import optuna

    space = SearchSpace.model_validate(setup.space)
    space = space.model_copy(update={"seed": space.seed + worker})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=setup.name, storage=open_storage(setup.storage),
                               sampler=_sampler(space),
                               pruner=_pruner(space, max(1, cfg.train.eval_every),
                                              cfg.train.epochs),
                               direction=direction(cfg, space.objective), load_if_exists=True)


def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, p in space.params.items():
        if p.type == "categorical":
            out[key] = trial.suggest_categorical(key, p.choices)
        elif p.type == "int":
            out[key] = trial.suggest_int(key, int(p.low), int(p.high), log=p.log,
                                         step=int(p.step or 1))
        else:
            out[key] = trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
    return out


def _valid_history(run_dir: Path, monitor: str) -> list[tuple[int, float]]:
    """(epoch, validation value) of every evaluation a run made (history.jsonl)."""
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        value = rec.get(f"valid_{monitor}")
        if value is not None:
            out.append((int(rec["epoch"]) + 1, float(value)))
    return out


def run_trial(trial, setup: TuneSetup, base: ExperimentConfig, paths) -> float:
    """Train (or read back) the trial's run; its best validation value is the objective."""
    space = SearchSpace.model_validate(setup.space)
    cfg = with_overrides(base, suggest(trial, space))
    h = run_hash(cfg)
    trial.set_user_attr("config_hash", h)
    root = Path(setup.runs_root)
    try:
        with runs.claim(root, cfg.name, h):  # a parallel worker may have sampled the same config
            return _train_or_read(trial, cfg, h, root, space, setup, paths)
    except KeyboardInterrupt:
        _requeue(trial)
        raise TrialInterrupted(KeyboardInterrupt()) from None
    except OSError as exc:  # a full disk, a read-only runs folder: the machine's, not the trial's
        _requeue(trial)
        raise TrialInterrupted(exc) from None


class TrialInterrupted(BaseException):
    """Ctrl-C (or a file-system error) inside a trial, after the trial went back to WAITING.
    Optuna catches Exception and KeyboardInterrupt around the objective and records the trial
    as FAIL (never retried, with a long traceback in its log); a BaseException of our own
    passes through untouched, and :func:`tune_worker` raises the original again."""


def _requeue(trial) -> None:
    """Put an interrupted trial back to WAITING: the next worker asks it again (same number,
    same parameters, as Optuna reuses a trial's suggested values) and resumes its .partial
    run, the way a killed worker's trial is retried, but without a FAIL in the record."""
    from optuna.trial import TrialState

    try:
        trial.study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
    except Exception:  # noqa: BLE001 - the storage itself is unreachable: recovery will do it
        pass


def _train_or_read(trial, cfg: ExperimentConfig, h: str, root: Path, space: SearchSpace,
                   setup: TuneSetup, paths) -> float:
    import optuna

    from recbench import process
    from recbench.data.prepare import data_hash
    from recbench.runner import train_run

    now = data_hash(cfg.dataset, paths)  # a run on other data is no answer for this trial
    finished = runs.find_finished(root, cfg.name, h, rehash=stored_hash, data_hash=now)
    if finished is None:
        partial = runs.find_partial(root, cfg.name, h, rehash=stored_hash, data_hash=now)

        def progress(rec: dict) -> None:
            name = space.objective or rec["monitor"]
            value = rec.get(f"valid_{name}")
            if value is None:
                return
            trial.report(float(value), rec["epoch"])
            if trial.should_prune():
                trial.set_user_attr("run_dir", str(runs.find_partial(root, cfg.name, h, rehash=stored_hash)))
                raise optuna.TrialPruned(f"validation {name} {value:.4f} at epoch {rec['epoch']}")

        settings = process.start(cfg, paths)  # the trial's start, as an executor call's
        finished = train_run(cfg, paths, root, setup.device, partial, progress,
                             threads=settings.threads)
    else:  # read back: its evaluations still inform the pruner about later trials
        name = space.objective or runs.read_metrics(finished)["monitor"]
        for step, value in _valid_history(finished, name):
            trial.report(value, step)
    metrics = runs.read_metrics(finished)
    trial.set_user_attr("run_dir", str(finished))
    return objective_value(metrics, space.objective, trial)


def objective_value(metrics: dict, objective: str | None, trial=None) -> float:
    """The run's validation figure the search optimises (never a test metric)."""
    monitor = metrics["monitor"]
    name = objective or monitor
    if trial is not None:
        trial.set_user_attr("monitor", name)
    if metrics.get("best_valid") is None:
        raise ConfigError("the run has no validation split; tuning needs one "
                          "(dataset.valid_ratio, or the protocol's validation items)")
    if name == monitor:
        return float(metrics["best_valid"])
    final = (metrics.get("extra") or {}).get("valid") or {}
    if name not in final:
        raise ConfigError(
            f"validation metric '{name}' is not reported by this model (its monitor is "
            f"'{monitor}'); set `objective:` in the space file to one of: "
            f"{', '.join(sorted(k for k in final if '|' not in k)) or 'none reported'}")
    return float(final[name])


def tune_worker(setup_plain: dict, n_trials: int, worker: int = 0,
                target: int | None = None) -> int:
    """One worker of a search: up to ``n_trials`` trials against the shared storage (the body
    of every executor call), stopping early once the search as a whole has ``target`` finished
    or pruned trials (other workers, other machines, or another driver count too). Returns how
    many trials the search gained while it ran."""
    import torch

    from recbench.data.prepare import DataPaths

    setup = TuneSetup(**setup_plain)
    if setup.threads:
        torch.set_num_threads(setup.threads)
    base = search_config(setup)
    study = open_study(setup, base, worker)
    paths = DataPaths(Path(setup.data_root))
    before = counted(study)
    callbacks = [_say]
    if target is not None:
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        if before >= target:
            return 0
        callbacks.append(MaxTrialsCallback(target, states=(TrialState.COMPLETE,
                                                           TrialState.PRUNED)))
    try:
        study.optimize(lambda t: run_trial(t, setup, base, paths), n_trials=n_trials,
                       catch=(RecbenchError, RuntimeError, ValueError), callbacks=callbacks,
                       gc_after_trial=False)
    except TrialInterrupted as stop:
        raise stop.args[0] from None
    return counted(study) - before


def _say(study, trial) -> None:
    """One line per finished trial (a local worker prints to the terminal; a Ray worker to
    its log)."""
    value = "" if trial.value is None else f" valid {trial.value:.4f}"
    params = ", ".join(f"{k}={fmt(v)}" for k, v in trial.params.items())
    print(f"trial {trial.number} {trial.state.name.lower()}{value} ({params})", flush=True)


def recover_interrupted(study) -> int:
    """Trials left RUNNING by a process that was killed: failed, and their parameters queued
    again so the next worker resumes the same run directory. Only for a storage this machine
    owns (the default SQLite file) and only while no other driver holds it
    (:func:`driver_lock`): a second ``recbench tune`` joining a live search must not fail the
    first one's running trials."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
    return len(stale)


def counted(study) -> int:
    """Trials that count towards ``--trials``: finished or pruned (failed ones do not)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


@contextmanager
def driver_lock(storage_url: str) -> Iterator[bool]:
    """A shared flock held by every driver of a local SQLite search while it runs; yields
    whether this driver is the only one (it got the lock exclusively first, so trials left
    RUNNING can only be from a dead process). The lock dies with its process."""
    import fcntl

    path = Path(storage_url.removeprefix("sqlite:///") + ".drivers.lock")
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(handle, fcntl.LOCK_SH)  # downgrade (or wait for a recovering driver)
        try:
            yield alone
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def search(setup: TuneSetup, n_trials: int, executor: Executor, workers: int = 1,
           own_storage: bool = True,
           on_result: Callable[[int, Any, BaseException | None], None] | None = None):
    """Run the search until ``n_trials`` trials are finished or pruned; returns the study."""
    base = search_config(setup)
    check_space(SearchSpace.model_validate(setup.space), base)
    study = open_study(setup, base)
    with driver_lock(setup.storage) if own_storage else nullcontext(False) as alone:
        if alone:
            recover_interrupted(study)
        remaining = max(0, n_trials - counted(study))
        workers = max(1, min(workers, remaining or 1))
        shares = [remaining // workers + (i < remaining % workers) for i in range(workers)]
        # samplers are seeded past every trial the storage already holds: a resumed search
        # (or a driver joining a live one) must not replay the first driver's draws, which
        # would only find cached runs and count them twice
        offset = 1000 * len(study.trials)
        calls = [(asdict(setup), share, offset + i, n_trials)
                 for i, share in enumerate(shares) if share]
        executor.run(tune_worker, calls, on_result or (lambda i, v, e: None))
    return open_study(setup, base)


SEARCH_RECORD = "search.json"  # results/tune-NAME/ledger/search.json: the search's record
_RECORDED_STATES = ("complete", "pruned", "fail")


def search_record(study, setup: TuneSetup, seeds: list[int],
                  earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """The search as plain data: what was searched (experiment, --set, space, name, final
    seeds) and every finished, pruned or failed trial (parameters with their distributions,
    value, the validation values it reported, its run and the epochs that run trained).

    Why (issue 34): the Optuna storage lives under runs/ and is gone on a fresh clone, so
    the search's pages (trials, search.md, Optuna's plots, best.yaml) and its final study
    could not be rebuilt; results/tune-lightgcn/ was a transcription. Written into the
    folder's ledger beside the final study's run records, it lets ``recbench tune
    --report-only`` rebuild every page (:func:`study_from_record`). Runs are named relative
    to the runs folder (an absolute path names one machine). ``earlier`` (the committed
    record) lends the epoch count of trials whose run folder this machine lacks."""
    from optuna.distributions import distribution_to_json

    lent = {t["number"]: t.get("epochs", 0) for t in (earlier or {}).get("trials", [])}
    root = Path(setup.runs_root)
    trials = []
    for t in study.get_trials(deepcopy=False):
        state = t.state.name.lower()
        if state not in _RECORDED_STATES:
            continue  # running or waiting: not a result yet
        run = t.user_attrs.get("run_dir", "")
        named = Path(run).relative_to(root).as_posix() if run and Path(run).is_relative_to(
            root) else run
        attrs = {k: v for k, v in t.user_attrs.items() if k != "run_dir"}
        trials.append({
            "number": t.number, "state": state, "value": t.value, "params": dict(t.params),
            "distributions": {k: json.loads(distribution_to_json(d))
                              for k, d in t.distributions.items()},
            "intermediate": [[step, v] for step, v in sorted(t.intermediate_values.items())],
            "user_attrs": {**attrs, "run_dir": named},
            "epochs": max(epochs_run(run), lent.get(t.number, 0))})
    return {"name": setup.name, "experiment": setup.experiment, "space_file": setup.space_file,
            "overrides": list(setup.overrides), "space": setup.space, "seeds": list(seeds),
            "direction": study.direction.name.lower(), "trials": trials}


def study_from_record(record: dict[str, Any], order: list[str]):
    """An in-memory Optuna study holding the recorded trials, in their order: what
    :func:`summary` and :func:`best_patch` read, after a search as on a fresh clone.

    ``order`` is the space file's key order (required: the record is written with sorted
    keys, and the pages list a trial's parameters in its params' order, so without it a
    rebuild would write ``model.reg, train.lr`` where the search wrote ``train.lr, model.reg``)."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=record["name"], direction=record["direction"])
    rank = {key: i for i, key in enumerate(order)}

    def ordered(d: dict[str, Any]) -> dict[str, Any]:
        return dict(sorted(d.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    for t in record["trials"]:
        study.add_trial(create_trial(
            state=TrialState[t["state"].upper()],
            value=t["value"] if t["state"] == "complete" else None,
            params=ordered(t["params"]),
            distributions={k: json_to_distribution(json.dumps(d))
                           for k, d in ordered(t["distributions"]).items()},
            user_attrs={**t["user_attrs"], "epochs": t["epochs"]},
            intermediate_values={int(step): v for step, v in t["intermediate"]}))
    return study


def record_path(results_dir: Path, name: str) -> Path:
    from recbench.studies import LEDGER

    return results_dir / f"tune-{name}" / LEDGER / SEARCH_RECORD


def read_search_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a search record ({exc}); restore it from git") from None


def write_search_record(path: Path, record: dict[str, Any]) -> None:
    """Write the record, refusing one that knows fewer trials than the committed one (the
    ledger only grows: a search continued on a machine that lost its storage would start its
    count again)."""
    earlier = read_search_record(path)
    if earlier is not None and len(record["trials"]) < len(earlier["trials"]):
        raise RunError(f"search {record['name']}: {path} records {len(earlier['trials'])} "
                       f"trials and this search only {len(record['trials'])}; it is left as it "
                       "is (run the search to at least as many trials, or use another --name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def best_patch(study) -> dict[str, Any]:
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise RunError(f"search '{study.study_name}' has no finished trial yet; run more "
                               "trials (--trials) or look at the failures above")
    return dict(study.best_trial.params)


def final_study(setup: TuneSetup, patch: dict[str, Any], seeds: list[int], monitor: str):
    """The best configuration beside the hand-picked one, every final seed: an ordinary study."""
    from recbench.studies import StudyConfig

    return StudyConfig(
        study=f"tune-{setup.name}",
        description=(f"recbench tune {setup.experiment} --space: the best validation trial "
                     f"('tuned') beside the experiment file as written ('hand-picked'), trained "
                     f"for each seed and tested once. Search: trials.md; best config: best.yaml."),
        base=[setup.experiment], variants={"hand-picked": {}, "tuned": patch},
        set=dict(parse_override(o) for o in setup.overrides), seeds=seeds, metric=monitor,
        reference="hand-picked", columns=[monitor, "best_valid", "epochs_run", "train_seconds"])


def best_yaml(setup: TuneSetup, patch: dict[str, Any], value: float, monitor: str) -> str:
    """The experiment file with the tuned keys written in: ready for ``recbench train``."""
    raw = read_yaml(Path(setup.experiment))
    for text in setup.overrides:
        set_path(raw, *parse_override(text))
    for key, v in patch.items():
        set_path(raw, key, v)
    head = (f"# Tuned by `recbench tune {setup.experiment}` (search '{setup.name}'): best "
            f"validation {monitor} {value:.4f}.\n# Searched keys: {', '.join(patch)}.\n")
    return head + yaml.safe_dump(raw, sort_keys=False)


def trials_rows(study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        run = t.user_attrs.get("run_dir", "")
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     "valid": None if value is None or math.isnan(value) else value,
                     "evaluations": len(t.intermediate_values), **t.params, "run": run,
                     # a recorded trial carries its count; a live one's run folder has it
                     "epochs": t.user_attrs["epochs"] if "epochs" in t.user_attrs
                     else epochs_run(run)})
    return rows


def plots(study) -> dict[str, bytes]:
    """Optuna's own optimisation-history and parameter-importance plots, as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm
    from optuna.trial import TrialState

    out: dict[str, bytes] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    makers = {"history.png": ovm.plot_optimization_history}
    if len(complete) >= 2 and len(study.best_trial.params) >= 1:
        makers["importance.png"] = ovm.plot_param_importances
    import warnings

    # Optuna's plots switch matplotlib to its "ggplot" style for the whole process; without
    # the rc_context every study plot drawn later in the process (the final study's, or a
    # rebuild in the same test session) came out in that style and changed its bytes
    for name, make in makers.items():
        with matplotlib.rc_context():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                try:
                    ax = make(study)
                except (ValueError, RuntimeError):  # e.g. importances of a constant objective
                    continue
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(7, 4)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110)
            plt.close(fig)
            out[name] = buf.getvalue()
    return out


def default_name(experiment: Path, space: Path) -> str:
    """``bpr_mf.yaml`` + ``spaces/bpr_mf.yaml`` → ``bpr-mf``; other spaces add their name."""
    stem = experiment.stem if space.stem == experiment.stem else f"{experiment.stem}-{space.stem}"
    return stem.replace("_", "-")


def storage_is_local(url: str) -> bool:
    return url.startswith("sqlite:")


def summary(study, setup: TuneSetup, patch: dict[str, Any], monitor: str) -> SearchSummary:
    """The search as its pages show it, in plain values: the report
    (:mod:`recbench.studies.report`) writes them beside the final study's table."""
    from optuna.trial import TrialState

    space = SearchSpace.model_validate(setup.space)
    best = study.best_trial
    complete, pruned, failed = (len(study.get_trials(deepcopy=False, states=(s,)))
                                for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return SearchSummary(
        name=setup.name, experiment=setup.experiment, params=list(space.params),
        sampler=space.sampler, sampler_seed=space.seed, pruner=space.pruner, monitor=monitor,
        direction=study.direction.name.lower(), rows=trials_rows(study), complete=complete,
        pruned=pruned, failed=failed, best_number=best.number, best_value=best.value,
        patch=patch, best_yaml=best_yaml(setup, patch, best.value, monitor),
        search_seed=search_config(setup).seed, plots=plots(study))
