"""What every command of ``recbench`` shares: the Typer app, the consoles, ``_guard`` (errors
become one red line and an exit code: 2 for bad input, 1 for a failed check), the folder
checks and the option declarations several commands reuse."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from recbench.errors import RecbenchError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Experiment runner for graph and kernel recommender systems.")
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _guard(fn):
    """Run a command body; user-fixable errors become one line, never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RecbenchError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted; finished runs are kept and an unfinished one can be resumed "
                  "(`recbench train CONFIG --resume RUN_DIR`, or run the study again)", 130)
        except OSError as exc:  # the machine's state, not a bug: full disk, read-only, ...
            _fail(_os_error_line(exc))

    return wrapper


_OS_HINT = {
    "ENOSPC": "free some space, or point --runs-dir / --data-dir at another disk",
    "EDQUOT": "free some space, or point --runs-dir / --data-dir at another disk",
    "EROFS": "that file system is read-only; point --runs-dir / --data-dir at a writable folder",
    "EACCES": "no permission there; point --runs-dir / --data-dir at a folder you can write",
    "EPERM": "no permission there; point --runs-dir / --data-dir at a folder you can write",
    "ENOTDIR": "a part of that path is a file, not a folder",
    "EEXIST": "a file or a broken link is in the way of a folder",
}


def _os_error_line(exc: OSError) -> str:
    """One line for an error of the file system: where, what, and what to do."""
    import errno as errnos

    where = exc.filename if exc.filename is not None else "a file"
    hint = _OS_HINT.get(errnos.errorcode.get(exc.errno or 0, ""), "")
    return f"{where}: {exc.strerror or exc}" + (f"; {hint}" if hint else "")


def _paths(data_dir: Path | None):
    from recbench.data.prepare import DataPaths
    from recbench.runs import data_dir as default_data_dir

    return DataPaths(_a_folder(default_data_dir(data_dir), "--data-dir", "RECBENCH_DATA"))


def _runs_root(runs_dir: Path | None) -> Path:
    from recbench.runs import runs_dir as default_runs_dir

    return _a_folder(default_runs_dir(runs_dir), "--runs-dir", "RECBENCH_RUNS")


def _a_folder(path: Path, option: str, env: str) -> Path:
    """A folder recbench may create things in: a file or a link to nothing is refused in one
    line before any write, instead of an OSError deep inside a run."""
    if path.is_symlink() and not path.exists():
        _fail(f"{option} / ${env} {path} is a symbolic link to a missing folder "
              f"({os.readlink(path)}); create that folder or give another one")
    if path.exists() and not path.is_dir():
        _fail(f"{option} / ${env} {path} is a file, not a folder; give a folder")
    return path


Threads = typer.Option(None, "--threads",
                       help="CPU threads for torch (default: chosen per run from the usable "
                            "CPUs, how busy they are and the model family; env.json says why)")
Track = typer.Option([], "--track", help="also stream the curves to tensorboard | mlflow "
                      "(repeatable; none: off; docs/tracking.md)")
DataDir = typer.Option(None, "--data-dir", help="data folder (default $RECBENCH_DATA or ./data)")
RunsDir = typer.Option(None, "--runs-dir", help="run folder (default $RECBENCH_RUNS or ./runs)")
ResultsDir = typer.Option(Path("results"), "--results-dir")


def _with_track(cfg, track: list[str]):
    """``cfg`` tracked by ``--track`` (repeatable or comma-separated; ``none``: off)."""
    from recbench.experiment import with_overrides

    names = [n.strip() for t in track for n in t.split(",") if n.strip()]
    return with_overrides(cfg, {"track": [] if names == ["none"] else names})



def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)

