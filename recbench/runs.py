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
_STAMP = re.compile(r"(\d{8}-\d{6})(?:-(\d+))?-")


def _age(run_dir: Path) -> tuple[str, int, str]:
    """Sort key, oldest first: the UTC stamp, then create_run_dir's same-second suffix (a
    plain name sort put ``STAMP-1-5abc`` before ``STAMP-5abc``, so the older run won)."""
    m = _STAMP.match(run_dir.name)
    return (m.group(1), int(m.group(2) or 0), run_dir.name) if m else ("", 0, run_dir.name)


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


def trained_on(run_dir: Path) -> str | None:
    """The data hash in a finished run's (or ledger record's) metrics.json; None for runs
    made before it was recorded."""
    try:
        value = json.loads((run_dir / "metrics.json").read_bytes()).get("data_hash")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def started_on(run_dir: Path) -> str | None:
    """The data hash a (partial) run recorded in env.json when it started; None before."""
    try:
        value = json.loads((run_dir / "env.json").read_bytes()).get("data_hash")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def same_data(run_dir: Path, data_hash: str | None) -> bool:
    """Whether a finished run may stand for a config trained on ``data_hash`` today. Why
    beside the config hash and not in it: committed ledgers are keyed by config hash, and
    adding the data would rename every record; a run that recorded other data is stale, one
    that recorded none (made before) or an unknown current split cannot be compared."""
    if data_hash is None:
        return True
    recorded = trained_on(run_dir)
    return recorded is None or recorded == data_hash


def find_finished(runs_root: Path, experiment: str, config_hash: str,
                  rehash: Rehash | None = None, data_hash: str | None = None) -> Path | None:
    """The newest finished run of this exact resolved config, if any (study cache). A run
    folder named with the legacy hash (before config.HASH_EXCLUDED) counts when the hash of
    its config.yaml matches."""
    parent = runs_root / experiment
    if not parent.is_dir():
        return None
    hits = sorted((p for p in parent.glob(f"*-{config_hash}") if is_finished(p)
                   and same_data(p, data_hash)), key=_age)
    if not hits:
        hits = sorted(_rehashed(parent, config_hash,
                                lambda p: not p.name.endswith(PARTIAL) and is_finished(p)
                                and same_data(p, data_hash), rehash), key=_age)
    return hits[-1] if hits else None


def find_record(folder: Path, config_hash: str, rehash: Rehash | None = None,
                data_hash: str | None = None) -> Path | None:
    """A study ledger record (``folder/<hash>/``) of this config: named with its hash, or a
    record named with the legacy hash whose config.yaml has this hash today."""
    exact = folder / config_hash
    if is_finished(exact) and same_data(exact, data_hash):
        return exact
    if not folder.is_dir():
        return None
    hits = sorted(_rehashed(folder, config_hash,
                            lambda p: is_finished(p) and same_data(p, data_hash), rehash))
    return hits[-1] if hits else None


def find_partial(runs_root: Path, experiment: str, config_hash: str,
                 rehash: Rehash | None = None, data_hash: str | None = None) -> Path | None:
    """The newest resumable partial run of the config; with ``data_hash``, None when that run
    began on other data (a new run is started; the old folder is kept)."""
    parent = runs_root / experiment
    if not parent.is_dir():
        return None
    hits = sorted((p for p in parent.glob(f"*-{config_hash}{PARTIAL}")
                   if (p / "last.pt").is_file()), key=_age)
    if not hits:
        hits = sorted(_rehashed(parent, config_hash, lambda p: p.name.endswith(PARTIAL)
                                and (p / "last.pt").is_file(), rehash), key=_age)
    if not hits:
        return None
    if data_hash is not None and started_on(hits[-1]) not in (None, data_hash):
        return None
    return hits[-1]


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


# pickle opcodes that import or call something: a checkpoint of tensors and plain containers
# needs only torch's tensor rebuilders among them, which weights_only allows
_CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD",
             "EXT1", "EXT2", "EXT4"}


def _pickle_bytes(path: Path) -> bytes:
    """The pickle stream of a checkpoint: ``data.pkl`` of torch's zip format, else the file."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"), None)
            return archive.read(name) if name else b""
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError):
        return path.read_bytes()


def _foreign_objects(path: Path) -> str | None:
    """What the checkpoint would import or call beyond torch's tensors (e.g. 'builtins.exec'),
    read with pickletools, which never executes; None when it asks for nothing of the kind
    (then a refused load means a damaged file). Why scan: torch 2.2's restricted unpickler
    gives the same error for an unsupported opcode in garbage and in a crafted file."""
    import pickletools

    allowed = ("torch.", "collections.OrderedDict")
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(_pickle_bytes(path)):
            if isinstance(arg, str):
                strings.append(arg)
            if op.name in ("GLOBAL", "INST"):
                name = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL":
                name = ".".join(strings[-2:])
            elif op.name in _CODE_OPS:
                name = None
            else:
                continue
            if name is None or not name.startswith(allowed):
                return name or f"the pickle opcode {op.name}"
    except Exception:  # noqa: BLE001 - a parse error ends the scan: what came before counts
        pass
    return None


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive: torch.load hands these to torch.jit.load even with
    ``weights_only``, so they are refused before torch sees them."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.rsplit("/", 1)[-1] == "constants.pkl" for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def load_checkpoint(path: Path, device: Any = "cpu") -> dict:
    """A checkpoint recbench wrote (best.pt / last.pt), or one clear RunError.

    Why ``weights_only``: run folders are exchanged between researchers, and a full unpickle
    runs whatever a crafted file asks (issue #31 ran a shell command through ``eval``). Our
    checkpoints hold only tensors and plain containers (dict, list, str, numbers, None;
    tests/test_contract.py loads every model's), so a file asking for anything else is
    refused by name, apart from a file that is merely damaged."""
    import pickle
    import zipfile

    import torch

    if not path.is_file():
        raise RunError(f"{path.parent} has no {path.name}; the run did not get that far — "
                       "train it again" if path.name == "best.pt" else
                       f"{path.parent} has no {path.name} to resume from; train it again")
    unsafe = (f"{path} holds more than tensors and plain containers ({{}}); recbench refuses "
              "to unpickle it, because a crafted checkpoint runs code when loaded — use run "
              "folders only from sources you trust, or train the run again")
    if _is_torchscript(path):
        raise RunError(unsafe.format("a TorchScript archive"))
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            OSError, AttributeError, ImportError, KeyError, IndexError, TypeError) as exc:
        foreign = _foreign_objects(path) if isinstance(exc, pickle.UnpicklingError) else None
        if foreign is not None:
            raise RunError(unsafe.format(f"it asks for {foreign}")) from None
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
