"""Optional run tracking: a run's curves streamed to TensorBoard or MLflow as it trains.

The runner calls a :class:`Tracker` at four points (start, each epoch, the end, leaving) and
knows nothing of either tool. Both are imported only when a run asks for them (``track:`` in
the experiment, ``--track`` on ``recbench train``), so a run without tracking imports and
writes nothing new. A tracker is handed the numbers the run already writes (history.jsonl,
metrics.json, env.json); it never computes or changes one, which is why ``track`` stays out of
the run hash (:data:`recbench.config.HASH_EXCLUDED`).

Where (docs/tracking.md): TensorBoard event files inside the run folder (``<run>/tb/``, so they
move, are copied and are deleted with it); MLflow in one SQLite store per runs folder
(``<runs>/_mlflow/mlflow.db``, artifacts beside it), one MLflow experiment per recbench
experiment and one MLflow run per run folder, named by its config hash. SQLite, not MLflow's
file store: from MLflow 3 the file store refuses to open unless an environment variable is set,
and a run must not set process-wide state. ``_mlflow`` starts with an underscore so that no
experiment name (which must start with a letter or digit) can collide with it.

Resume: TensorBoard's writer reopens the folder with ``purge_step`` at the first epoch trained
again, so the epochs logged after the last checkpoint are hidden; MLflow reopens the same run
(found by its folder name) and appends — its metric history cannot be edited, so those epochs
appear twice at the same step, the later values being the ones history.jsonl keeps.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from recbench.errors import ConfigError, RunError

TRACKERS = ("tensorboard", "mlflow")
INSTALL = "pip install 'recbench[track]'"
MLFLOW_DIR = "_mlflow"  # under the runs folder; no experiment name can start with "_"
RUN_TAG = "recbench.run"  # MLflow tag: the run folder's name (without .partial)
FLUSH_SECONDS = 5.0  # MLflow: the longest a logged epoch waits in memory before it is written


class Tracker(Protocol):
    """What the runner tells a tracking backend, and when. Every method takes the run's own
    records, unchanged: ``record`` is one line of history.jsonl, ``metrics`` is metrics.json."""

    def start(self, params: dict[str, Any], env: dict[str, Any]) -> None:
        """The run begins (or resumes): its resolved config, flattened, and env.json."""

    def log_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """One trained epoch: losses, timings and (when validated) the ``valid_*`` metrics."""

    def finish(self, metrics: dict[str, Any]) -> None:
        """The run's final test metrics (of the reported weights) and its summary figures."""

    def close(self, error: BaseException | None) -> None:
        """Flush and release; ``error`` is what ended the run early, if anything did."""


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a history record worth a curve, by tag: ``valid_recall@20`` →
    ``valid/recall@20``, ``test_*`` (train.track_test) → ``test/*``, ``*_seconds`` →
    ``time/*``, anything else (losses, ``lr_scale``) → ``train/*``. The epoch is the step."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key.endswith("_seconds"):
            tag = f"time/{key}"
        elif key.startswith(("valid_", "test_")):
            tag = key.replace("_", "/", 1)
        else:
            tag = f"train/{key}"
        out[tag] = float(value)
    return out


def final_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """metrics.json's test metrics as ``final/<metric>``, plus the best validation score."""
    out = {f"final/{k}": float(v) for k, v in metrics.get("test", {}).items()
           if isinstance(v, int | float) and not isinstance(v, bool)}
    if isinstance(metrics.get("best_valid"), int | float):
        out[f"final/best_valid_{metrics.get('monitor', 'monitor')}"] = float(metrics["best_valid"])
    return out


def final_step(metrics: dict[str, Any]) -> int:
    """The step the final figures sit at: the epoch whose weights they were computed from."""
    return max(int(metrics.get("best_epoch", 0)), 0)


def flatten(plain: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"emb_dim": 64}}`` → ``{"model.emb_dim": 64}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in plain.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _require(module: str, tracker: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"track: {tracker} asked for, but {module.split('.')[0]} is not "
                          f"installed; {INSTALL}") from None


class TensorBoardTracker:
    """Event files in ``<run>/tb/``: one scalar curve per history key, the config and env.json
    as text. ``first_epoch`` > 0 (a resume) purges what was logged past the last checkpoint."""

    def __init__(self, run_dir: Path, first_epoch: int = 0) -> None:
        writer_cls = _require("torch.utils.tensorboard", "tensorboard").SummaryWriter
        self.writer = writer_cls(str(run_dir / "tb"),
                                 purge_step=first_epoch if first_epoch > 0 else None)
        self.first_epoch = first_epoch

    def start(self, params: dict[str, Any], env: dict[str, Any]) -> None:
        """At the epoch the run (re)starts from: a resume's env.json shows beside the first."""
        self.writer.add_text("config", _indented(json.dumps(params, indent=1, sort_keys=True)),
                             self.first_epoch)
        self.writer.add_text("env", _indented(json.dumps(env, indent=1, sort_keys=True,
                                                         default=str)), self.first_epoch)

    def log_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def finish(self, metrics: dict[str, Any]) -> None:
        for tag, value in final_scalars(metrics).items():
            self.writer.add_scalar(tag, value, final_step(metrics))

    def close(self, error: BaseException | None) -> None:
        self.writer.close()


def _indented(text: str) -> str:
    """Markdown code block (TensorBoard renders text summaries as Markdown)."""
    return "\n".join("    " + line for line in text.splitlines())


def mlflow_name(tag: str) -> str:
    """A tag as MLflow accepts it: ``@`` becomes ``_at_`` (recall@20 → recall_at_20), any
    other character outside letters, digits, ``_ - . / :`` and spaces becomes ``_``."""
    return re.sub(r"[^\w.\-/: ]", "_", tag.replace("@", "_at_"))


def mlflow_uri(runs_root: Path) -> str:
    """The SQLite store of a runs folder, as a tracking URI (absolute, four slashes)."""
    return f"sqlite:///{(runs_root / MLFLOW_DIR / 'mlflow.db').resolve()}"


class MlflowTracker:
    """One MLflow run per run folder in ``<runs>/_mlflow/mlflow.db``: params (the config,
    flattened), env.json as an artifact, every history key as a metric at its epoch, the
    final test metrics. The client is given the URI; no global MLflow state is set."""

    def __init__(self, run_dir: Path, experiment: str, config_hash: str) -> None:
        import time

        _require("mlflow", "mlflow")
        self.pending: list[Any] = []
        self.flushed = time.monotonic()
        root = run_dir.resolve().parent.parent / MLFLOW_DIR
        root.mkdir(parents=True, exist_ok=True)
        try:
            self._open(root, run_dir.name.removesuffix(".partial"), experiment, config_hash)
        except Exception as exc:  # MLflow's own failures (a damaged or foreign store): one line
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise RunError(f"track: the MLflow store {root / 'mlflow.db'} cannot be used "
                           f"({type(exc).__name__}: {first}); move it aside, or train without "
                           "mlflow tracking") from None

    def _open(self, root: Path, folder: str, experiment: str, config_hash: str) -> None:
        """The MLflow experiment, and the run of ``folder``: found again (a resume) or made."""
        from mlflow.tracking import MlflowClient

        with _locked(root / ".lock"):  # parallel study jobs share the store: one sets it up
            self.client = MlflowClient(tracking_uri=mlflow_uri(root.parent))
            found = self.client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found else self.client.create_experiment(
                experiment, artifact_location=(root / "artifacts" / experiment).as_uri())
            earlier = self.client.search_runs([exp_id], f"tags.`{RUN_TAG}` = '{folder}'",
                                              max_results=1)
            if earlier:  # a resume: the same MLflow run continues
                self.run_id = earlier[0].info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                self.run_id = self.client.create_run(
                    exp_id, run_name=config_hash, tags={RUN_TAG: folder}).info.run_id

    def start(self, params: dict[str, Any], env: dict[str, Any]) -> None:
        from mlflow.entities import Param

        have = self.client.get_run(self.run_id).data.params  # a resume logs only what is new
        todo = [Param(k, v if isinstance(v, str) else json.dumps(v))
                for k, v in params.items() if k not in have]
        for i in range(0, len(todo), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=todo[i:i + 100])
        self.client.log_dict(self.run_id, env, "env.json")

    def _log(self, values: dict[str, float], step: int, flush: bool = False) -> None:
        """Buffered: one SQLite commit costs ~20 ms (more than a short epoch), so metrics are
        written at most every FLUSH_SECONDS, and at the end."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(mlflow_name(tag), value, now, step)
                         for tag, value in values.items() if not math.isnan(value)]
        if flush or time.monotonic() - self.flushed >= FLUSH_SECONDS:
            for i in range(0, len(self.pending), 1000):  # at most 1000 metrics per batch
                self.client.log_batch(self.run_id, metrics=self.pending[i:i + 1000])
            self.pending, self.flushed = [], time.monotonic()

    def log_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        self._log(scalars(record), epoch)

    def finish(self, metrics: dict[str, Any]) -> None:
        self._log(final_scalars(metrics), final_step(metrics), flush=True)

    def close(self, error: BaseException | None) -> None:
        self._log({}, 0, flush=True)  # what an interrupted run logged is kept
        status = "FINISHED" if error is None else \
            "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self.client.set_terminated(self.run_id, status)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Tracking:
    """The chosen trackers as one, and a context manager: leaving it closes each, telling it
    whether the run ended with an error (MLflow marks the run FAILED or KILLED)."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def start(self, config: dict[str, Any], env: dict[str, Any]) -> None:
        """``config``: the resolved run config in plain form; each tracker gets it flattened
        (``model.emb_dim``), less ``track`` itself, which names the trackers, not the run."""
        if not self.trackers:
            return
        params = flatten({k: v for k, v in config.items() if k != "track"})
        for t in self.trackers:
            t.start(params, env)

    def log_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        for t in self.trackers:
            t.log_epoch(epoch, record)

    def finish(self, metrics: dict[str, Any]) -> None:
        for t in self.trackers:
            t.finish(metrics)

    def close(self, error: BaseException | None) -> None:
        for t in self.trackers:
            t.close(error)

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close(error)


def open_tracking(names: Sequence[str], run_dir: Path, experiment: str, config_hash: str,
                  first_epoch: int = 0) -> Tracking:
    """The trackers ``names`` asks for, opened on ``run_dir`` (none: nothing is imported or
    written). ``first_epoch``: the epoch the run (re)starts at, > 0 on a resume."""
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"track: unknown tracker {unknown[0]!r}; choose from none, "
                          f"{', '.join(TRACKERS)}")
    opened: list[Tracker] = []
    try:
        for name in dict.fromkeys(names):
            opened.append(TensorBoardTracker(run_dir, first_epoch) if name == "tensorboard"
                          else MlflowTracker(run_dir, experiment, config_hash))
    except BaseException as exc:
        Tracking(opened).close(exc)
        raise
    return Tracking(opened)
