"""Run directories: create, write atomically, resume, find finished runs by config hash.

A run trains in ``runs/<experiment>/<UTC stamp>-<hash>.partial/`` and is renamed to drop the
suffix once ``metrics.json`` is written, so a finished run is exactly a folder without the
suffix that holds ``metrics.json``; an interrupted one keeps ``last.pt`` for ``--resume``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from recbench.errors import RunError

PARTIAL = ".partial"
DATA_ENV, RUNS_ENV = "RECBENCH_DATA", "RECBENCH_RUNS"


def data_dir(given: Path | None = None) -> Path:
    """The data folder: ``given`` (--data-dir), else $RECBENCH_DATA, else ./data. The one
    place this default is spelled (CLI, bench and scripts all ask here)."""
    return Path(given) if given else Path(os.environ.get(DATA_ENV) or "data")


def runs_dir(given: Path | None = None) -> Path:
    """The runs folder: ``given`` (--runs-dir), else $RECBENCH_RUNS, else ./runs."""
    return Path(given) if given else Path(os.environ.get(RUNS_ENV) or "runs")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temp file beside it, flushed, then renamed. On
    any failure (a full disk, a read-only folder, Ctrl-C) the temp file is removed, so a
    failed write leaves the folder exactly as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def save_torch(path: Path, obj: Any) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def create_run_dir(runs_root: Path, experiment: str, config_hash: str, config: dict) -> Path:
    """A fresh partial run folder; never reuses an existing name."""
    parent = runs_root / experiment
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for attempt in range(1000):
        suffix = "" if attempt == 0 else f"-{attempt}"
        name = f"{stamp}{suffix}-{config_hash}"
        final, partial = parent / name, parent / f"{name}{PARTIAL}"
        if not final.exists() and not partial.exists():
            partial.mkdir()
            try:
                atomic_write_text(partial / "config.yaml", yaml.safe_dump(config, sort_keys=False))
            except BaseException:  # a full disk, Ctrl-C: no empty run folder left behind
                import shutil

                shutil.rmtree(partial, ignore_errors=True)
                raise
            return partial
    raise RunError(f"could not create a run folder under {parent}")


def finalize(run_dir: Path) -> Path:
    """Rename a partial run to its final name (never over an existing folder)."""
    if not run_dir.name.endswith(PARTIAL):
        return run_dir
    final = run_dir.with_name(run_dir.name[: -len(PARTIAL)])
    if final.exists():
        raise RunError(f"{final} already exists; refusing to overwrite a finished run")
    os.replace(run_dir, final)
    return final


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file() and not run_dir.name.endswith(PARTIAL)


_NAMED = re.compile(r"([0-9a-f]{10})(\.partial)?$")


Rehash = Callable[[Path], "str | None"]  # experiment.stored_hash


def _rehashed(parent: Path, config_hash: str, keep: Callable[[Path], bool],
              rehash: Rehash | None) -> list[Path]:
    """Folders of ``parent`` named with another (legacy) hash whose config.yaml has
    ``config_hash`` today. Why not rename them: ledger records are committed files and run
    folders may be in use by a running study; a lookup that reads the config is safe for both.
    ``rehash`` (experiment.stored_hash) recomputes a folder's hash; this module cannot, since
    the schema that validates a config sits above it. Without it only exact names match."""
    if rehash is None:
        return []
    out = []
    for p in parent.iterdir():
        m = _NAMED.search(p.name)
        if m and m.group(1) != config_hash and keep(p) and rehash(p) == config_hash:
            out.append(p)
    return out


def find_finished(runs_root: Path, experiment: str, config_hash: str,
                  rehash: Rehash | None = None) -> Path | None:
    """The newest finished run of this exact resolved config, if any (study cache). A run
    folder named with the legacy hash (before config.HASH_EXCLUDED) counts when the hash of
    its config.yaml matches."""
    parent = runs_root / experiment
    if not parent.is_dir():
        return None
    hits = sorted(p for p in parent.glob(f"*-{config_hash}") if is_finished(p))
    if not hits:
        hits = sorted(_rehashed(parent, config_hash,
                                lambda p: not p.name.endswith(PARTIAL) and is_finished(p),
                                rehash))
    return hits[-1] if hits else None


def find_record(folder: Path, config_hash: str, rehash: Rehash | None = None) -> Path | None:
    """A study ledger record (``folder/<hash>/``) of this config: named with its hash, or a
    record named with the legacy hash whose config.yaml has this hash today."""
    exact = folder / config_hash
    if is_finished(exact):
        return exact
    if not folder.is_dir():
        return None
    hits = sorted(_rehashed(folder, config_hash, is_finished, rehash))
    return hits[-1] if hits else None


def find_partial(runs_root: Path, experiment: str, config_hash: str,
                 rehash: Rehash | None = None) -> Path | None:
    parent = runs_root / experiment
    if not parent.is_dir():
        return None
    hits = sorted(p for p in parent.glob(f"*-{config_hash}{PARTIAL}") if (p / "last.pt").is_file())
    if not hits:
        hits = sorted(_rehashed(parent, config_hash, lambda p: p.name.endswith(PARTIAL)
                                and (p / "last.pt").is_file(), rehash))
    return hits[-1] if hits else None


@contextlib.contextmanager
def claim(runs_root: Path, experiment: str, config_hash: str) -> Iterator[None]:
    """Hold the config's lock while checking the cache and training, so two workers that
    reach the same config at once (parallel tuning trials, two studies on one runs folder)
    train it once: the second waits, then finds the finished run. An flock dies with its
    process, so a killed worker leaves no stale lock (on a cluster, the runs folder's file
    system must support flock across nodes)."""
    import fcntl

    parent = runs_root / experiment
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / f".{config_hash}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_config(run_dir: Path) -> dict:
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a run directory; list runs with `ls runs/<experiment>/`")
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise RunError(f"{run_dir} has no config.yaml; it is not a recbench run directory")
    from recbench.config import MAX_YAML_BYTES, parse_yaml, read_bounded
    from recbench.errors import ConfigError

    try:  # bounded: a downloaded run folder's config.yaml may be hostile (billion laughs)
        raw = parse_yaml(read_bounded(path, MAX_YAML_BYTES, "config.yaml"), str(path))
    except ConfigError as exc:
        if "expand" in str(exc) or "refers to itself" in str(exc):
            raise RunError(str(exc)) from None
        raw = None
    if not isinstance(raw, dict):
        raise RunError(f"{path} is damaged (not the mapping recbench wrote); the run cannot be "
                       "resumed or evaluated — train it again")
    return raw


def read_metrics(run_dir: Path) -> dict:
    read_config(run_dir)  # a clear error when the folder is not a run directory at all
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise RunError(f"{run_dir} has no metrics.json: the run did not finish; "
                       f"resume it with `recbench train --resume {run_dir}`")
    try:
        metrics = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        metrics = None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test"), dict):
        raise RunError(f"{path} is damaged (truncated or not recbench's); evaluate the run's "
                       f"checkpoint again by re-training, or restore the file")
    for key, value in metrics["test"].items():  # tables and `eval` format each as a number
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RunError(f"{path}: test metric '{key}' is not a number ({value!r:.40}); the "
                           "file was edited or damaged — restore it or train the run again")
    return metrics


def load_checkpoint(path: Path, device: Any = "cpu") -> dict:
    """A checkpoint recbench wrote (best.pt / last.pt), or one clear RunError."""
    import pickle
    import zipfile

    import torch

    if not path.is_file():
        raise RunError(f"{path.parent} has no {path.name}; the run did not get that far — "
                       "train it again" if path.name == "best.pt" else
                       f"{path.parent} has no {path.name} to resume from; train it again")
    try:
        state = torch.load(path, map_location=device)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            OSError, AttributeError, ImportError) as exc:
        raise RunError(f"{path} is damaged ({type(exc).__name__}); it cannot be loaded — "
                       "train the run again") from None
    if not isinstance(state, dict) or "model" not in state:
        raise RunError(f"{path} is not a recbench checkpoint (no model weights); train the run again")
    return state


def trim_history(run_dir: Path, last_epoch: int) -> None:
    """Before a resume: keep only complete history records up to the restored epoch, so a line
    cut by the interruption (or epochs past the checkpoint) is not extended or repeated."""
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return
    kept = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("epoch"), int) and rec["epoch"] <= last_epoch:
            kept.append(json.dumps(rec, sort_keys=True, default=float) + "\n")
    atomic_write_text(path, "".join(kept))


def append_jsonl(path: Path, obj: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(obj, sort_keys=True, default=float) + "\n")
        fh.flush()
