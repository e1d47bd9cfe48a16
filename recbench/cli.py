"""The ``recbench`` command line: six thin commands over the library.

This is the one place where errors become a red line and an exit code (2 for bad input, 1 for a
failed check) and where progress is drawn. torch and DGL are imported inside the commands so
``recbench --help`` and config errors answer instantly.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys
import typing
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

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


@app.command()
@_guard
def fetch(
    name: str = typer.Argument(None, help="dataset name (see --list)"),
    source: Path = typer.Option(None, "--source", help="copy from a local mirror folder instead "
                                "of downloading (default $RECBENCH_MIRROR)"),
    force: bool = typer.Option(False, "--force", help="fetch again even if present"),
    list_: bool = typer.Option(False, "--list", help="list the datasets and exit"),
    all_: bool = typer.Option(False, "--all", help="fetch every dataset the source holds"),
    data_dir: Path = DataDir,
) -> None:
    """Download (or copy from a mirror) a dataset's raw files, verified by sha256."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from recbench.data.datasets import get_dataset, registry
    from recbench.data.fetch import fetch as do_fetch
    from recbench.data.fetch import is_fetched

    paths = _paths(data_dir)
    records = registry()
    if list_:
        table = Table("name", "description", "size", "fetched", "licence")
        for src in records.values():
            table.add_row(src.name, src.description, f"{src.size_mb:.1f} MB",
                          "yes" if is_fetched(src, paths.raw) else "no", src.licence)
        console.print(table)
        return
    mirror = source or (Path(os.environ["RECBENCH_MIRROR"]) if os.environ.get("RECBENCH_MIRROR")
                        else None)
    if all_:
        if mirror is None:
            _fail("--all needs --source DIR (or RECBENCH_MIRROR)")
        names = [n for n in records if (mirror / n).is_dir()]
    elif name is None:
        _fail("name a dataset (`recbench fetch --list` shows them)")
    else:
        names = [get_dataset(name).name]
    for dataset in names:
        src = records[dataset]
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), console=console, transient=True) as bar:
            tasks: dict[str, int] = {}

            def report(label: str, done: int, total: int | None, bar=bar, tasks=tasks) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=total)
                bar.update(tasks[label], completed=done, total=total)

            written = do_fetch(src, paths.raw, mirror, force, report)
        where = "mirror" if mirror else "official source"
        if written:
            console.print(f"[green]fetched[/] {dataset}: {len(written)} files from the {where} "
                          f"into {paths.raw / dataset}")
        else:
            console.print(f"{dataset} already fetched in {paths.raw / dataset} (--force refetches)")
        unpinned = paths.raw / dataset / "SHA256SUMS"
        if written and unpinned.is_file():
            console.print(f"[yellow]note:[/] no published checksum is pinned for some files of "
                          f"{dataset}; their sha256 are recorded in {unpinned}")


def _report_skipped(folder: Path) -> None:
    """--skip-bad-rows: how many rows were dropped, and where, so nothing is lost unnoticed."""
    import json

    spec = json.loads((folder / "custom.json").read_text())
    if spec.get("skipped_rows"):
        n, first = spec["skipped_rows"], ", ".join(map(str, spec["skipped_lines"]))
        console.print(f"[yellow]note:[/] skipped {n} bad row(s) (--skip-bad-rows; first at "
                      f"line(s) {first})")


@app.command()
@_guard
def preprocess(
    name: str = typer.Argument(None, help="dataset name, or a new name with --from"),
    protocol: str = typer.Option(None, "--protocol", help="fixed | random | holdout | loo"),
    split: str = typer.Option(None, "--split", help="fixed split (u1..u5, ua, ub; default; published)"),
    seed: int = typer.Option(0, "--seed", help="split seed"),
    test_ratio: float = typer.Option(0.2, "--test-ratio"),
    global_split: bool = typer.Option(False, "--global", help="random: split all rows, not per user"),
    holdout_k: int = typer.Option(3, "--holdout-k"),
    valid_ratio: float = typer.Option(0.0, "--valid-ratio"),
    train_ratio: float = typer.Option(1.0, "--train-ratio"),
    min_rating: float = typer.Option(None, "--min-rating"),
    from_file: Path = typer.Option(None, "--from", help="your own interactions file (CSV/TSV, or a "
                                   "RecBole atomic X.inter / X.train.inter); NAME defaults to X"),
    sep: str = typer.Option(None, "--sep", help="delimiter of --from (detected if omitted)"),
    header: bool = typer.Option(None, "--header/--no-header", help="--from has a header row"),
    rating_col: str = typer.Option("2", "--rating-col", help="column name or index; 'none'"),
    timestamp_col: str = typer.Option("3", "--timestamp-col", help="column name or index; 'none'"),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows",
                                       help="--from: drop ragged/non-numeric rows, say how many"),
    force: bool = typer.Option(False, "--force", help="rebuild even if present"),
    export_atomic: Path = typer.Option(None, "--export-atomic", help="also write the split as "
                                       "RecBole benchmark files DIR/NAME/NAME.{train,valid,test}"
                                       ".inter"),
    data_dir: Path = DataDir,
) -> None:
    """Build the DGL graph and split masks of a dataset (cached by protocol parameters)."""
    from recbench.data.atomic import dataset_stem
    from recbench.data.prepare import preprocess as do_preprocess
    from recbench.data.prepare import register_custom, resolve

    paths = _paths(data_dir)
    if name is None and from_file is not None:
        name = dataset_stem(from_file)
    if name is None:
        _fail("name a dataset (`recbench fetch --list`), or give --from FILE --name NAME")
    cfg = resolve(_dataset_config(
        name=name, protocol=protocol, split=split, split_seed=seed, test_ratio=test_ratio,
        per_user=not global_split, holdout_k=holdout_k, valid_ratio=valid_ratio,
        train_ratio=train_ratio, min_rating=min_rating))
    new_folder = None
    if from_file is not None:
        cols = [None if c.lower() == "none" else c for c in (rating_col, timestamp_col)]
        existed = (paths.raw / name).exists() or (paths.processed / name).exists()
        folder = register_custom(from_file, name, paths, sep, header, *cols, force=force,
                                 skip_bad_rows=skip_bad_rows)
        new_folder = None if existed else folder
    elif skip_bad_rows:
        _fail("--skip-bad-rows applies to --from FILE (a registered dataset was checked then)")
    try:
        with console.status(f"preprocessing {name} ({cfg.protocol})"):
            out = do_preprocess(cfg, paths, force=force)
    except BaseException:
        if new_folder is not None:  # a failed --from leaves data/ as it was
            import shutil

            shutil.rmtree(new_folder, ignore_errors=True)
            shutil.rmtree(paths.processed / name, ignore_errors=True)
        raise
    if from_file is not None:
        console.print(f"registered {from_file} as dataset '{name}' in {folder}")
        _report_skipped(folder)
    import json

    meta = json.loads((out / "meta.json").read_text())
    c = meta["counts"]
    console.print(f"[green]{name}[/] {cfg.protocol}{'/' + cfg.split if cfg.split else ''}: "
                  f"{meta['num_users']:,} users, {meta['num_items']:,} items, "
                  f"{meta['num_interactions']:,} interactions → train {c['train']:,}, "
                  f"valid {c['valid']:,}, test {c['test']:,}"
                  + (f", social edges {meta['social_edges']:,}" if meta["social_edges"] else "")
                  + f"\n  {out}")
    if export_atomic is not None:
        from recbench.data.atomic import export_atomic as write_atomic
        from recbench.data.graph import load_dataset

        written = write_atomic(load_dataset(out), export_atomic, name)
        console.print(f"wrote {', '.join(p.name for p in written.values())} to "
                      f"{export_atomic / name} (RecBole: data_path {export_atomic}, dataset "
                      f"{name}, benchmark_filename: train, valid, test)")


# preprocess's options, named as the user typed them, for validation errors
_OPTION = {"split_seed": "--seed", "test_ratio": "--test-ratio", "per_user": "--global",
           "holdout_k": "--holdout-k", "valid_ratio": "--valid-ratio",
           "train_ratio": "--train-ratio", "min_rating": "--min-rating", "protocol": "--protocol",
           "split": "--split", "name": "NAME"}


def _dataset_config(**fields):
    from pydantic import ValidationError

    from recbench.config import DatasetConfig
    from recbench.errors import ConfigError

    try:
        return DatasetConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(f"{_OPTION.get(key, key)} {fields.get(key)!r}: {err['msg']}") from None


def _metrics_table(title: str, rows: list[tuple[str, dict]]) -> Table:
    keys: list[str] = []
    for _, m in rows:
        keys += [k for k in m if k not in keys]
    table = Table(title=title)
    table.add_column("run")
    for k in keys:
        table.add_column(k, justify="right")
    for label, m in rows:
        table.add_row(label, *(f"{m[k]:.4f}" if k in m else "" for k in keys))
    return table


@app.command()
@_guard
def train(
    experiment: Path = typer.Argument(None, help="experiment YAML (experiments/*.yaml)"),
    set_: list[str] = typer.Option([], "--set", help="override a key: model.emb_dim=128"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N"),
    resume: Path = typer.Option(None, "--resume", help="continue an interrupted run directory"),
    seed: int = typer.Option(None, "--seed", help="run only this seed"),
    track: list[str] = Track,
    threads: int = Threads,
    data_dir: Path = DataDir,
    runs_dir: Path = RunsDir,
) -> None:
    """Train an experiment (one run per seed) and print its test metrics."""
    from recbench.config import expand_seeds
    from recbench.experiment import load_experiment

    _set_threads(threads)

    if resume is not None:
        from recbench.runner import load_run_config

        cfg = load_run_config(resume)
        _same_config_on_resume(cfg, resume, set_, seed)
        if experiment is not None:  # the run must belong to the experiment the user named
            from recbench.config import run_hash
            from recbench.errors import RunError

            # compared as the run hash does: keys of config.HASH_EXCLUDED (num_threads, the
            # paper's figures, ...) change no number, so `train EXP --threads N --resume RUN`
            # (the run's own start command) is the same config
            named = {run_hash(c) for c in expand_seeds(load_experiment(experiment, set_))}
            if run_hash(cfg) not in named:
                raise RunError(f"{resume} is a run of '{cfg.name}' with another config than "
                               f"{experiment}; resume it without the file (`recbench train "
                               f"--resume {resume}`) or pick a run of {experiment}")
        configs = [cfg]
    elif experiment is None:
        _fail("name an experiment file (e.g. experiments/bpr_mf.yaml) or --resume RUN_DIR")
    else:
        cfg = load_experiment(experiment, set_)
        configs = expand_seeds(cfg)
        if seed is not None:
            configs = [c.model_copy(update={"seed": seed}) for c in configs[:1]]
    if threads:  # the command line wins over the file's train.num_threads (not in the hash)
        configs = [c.model_copy(update={"train": c.train.model_copy(
            update={"num_threads": threads})}) for c in configs]
    if track:  # the command line wins over the file's track: (not in the hash either)
        configs = [_with_track(c, track) for c in configs]
    from recbench import process

    settings = process.start(configs[0], _paths(data_dir))  # one model, one thread setting
    rows = []
    for run_cfg in configs:
        run_dir = _train_one(run_cfg, _paths(data_dir), _runs_root(runs_dir), device, resume,
                             settings.threads)
        import json

        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows.append((f"seed {run_cfg.seed}", metrics["test"]))
        console.print(f"[green]done[/] {run_dir}  ({metrics['train_seconds']:.1f} s, "
                      f"best epoch {metrics['best_epoch']})")
    console.print(_metrics_table(f"{cfg.name}: test metrics", rows))
    if cfg.paper:
        console.print("paper: " + ", ".join(f"{k} {v}" for k, v in cfg.paper.items()))


def _with_track(cfg, track: list[str]):
    """``cfg`` tracked by ``--track`` (repeatable or comma-separated; ``none``: off)."""
    from recbench.experiment import with_overrides

    names = [n.strip() for t in track for n in t.split(",") if n.strip()]
    return with_overrides(cfg, {"track": [] if names == ["none"] else names})


def _same_config_on_resume(cfg, resume: Path, set_: list[str], seed: int | None) -> None:
    """``--resume RUN`` with ``--set``/``--seed``: a resumed run keeps its own config.yaml, so
    an override that changes what the run hash covers is refused (it was ignored: 300 epochs
    asked, 150 run, exit 0; issue 31.7). One that changes nothing hashed (the run's own seed,
    its own value, ``train.num_threads``) is allowed."""
    if not set_ and seed is None:
        return
    from recbench.config import hashed_differences, parse_override, to_plain
    from recbench.errors import RunError
    from recbench.experiment import with_overrides

    asked = with_overrides(cfg, dict(parse_override(o) for o in set_)) if set_ else cfg
    if seed is not None:
        asked = asked.model_copy(update={"seed": seed})
    diff = hashed_differences(to_plain(cfg), to_plain(asked))
    if diff:
        flags = " ".join([*(f"--set {o}" for o in set_), *([f"--seed {seed}"] if seed is not None
                                                            else [])])
        raise RunError(f"{flags} would change the config of {resume} ({'; '.join(diff)}); a "
                       "resumed run keeps its own config — resume it without them, or start a "
                       f"new run: `recbench train EXPERIMENT.yaml {flags}`")


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _train_one(cfg, paths, runs_root: Path, device: str, resume: Path | None,
               threads=None) -> Path:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from recbench.runner import train_run

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), "{task.fields[info]}", console=console,
                  transient=True) as bar:
        task = bar.add_task(f"{cfg.name} seed {cfg.seed}", total=None, info="loading data")

        def report(rec: dict) -> None:
            loss = ", ".join(f"{k} {v:.4f}" for k, v in rec.items()
                             if isinstance(v, float) and not k.startswith(("valid_", "train_s", "test_"))
                             and k not in ("best",))
            val = rec.get(f"valid_{rec['monitor']}")
            info = loss + (f" | valid {rec['monitor']} {val:.4f}" if val is not None else "")
            bar.update(task, completed=rec["epoch"], total=rec["epochs"], info=info)

        return train_run(cfg, paths, runs_root, device, resume, report, threads=threads)


@app.command("eval")
@_guard
def eval_(
    run_dir: Path = typer.Argument(..., help="a finished run directory"),
    device: str = typer.Option("cpu", "--device"),
    tolerance: float = typer.Option(1e-5, "--tol", help="allowed absolute difference"),
    data_dir: Path = DataDir,
) -> None:
    """Reload a run's best checkpoint and re-check its test metrics against metrics.json."""
    from recbench import process
    from recbench.runner import evaluate_run, load_run_config

    process.start(load_run_config(run_dir), _paths(data_dir))
    fresh, stored = evaluate_run(run_dir, _paths(data_dir), device)
    table = Table("metric", "metrics.json", "recomputed", "match", title=str(run_dir))
    ok = True
    for key, value in stored.items():
        new = fresh.get(key)
        same = new is not None and abs(new - value) <= tolerance
        ok &= same
        table.add_row(key, f"{value:.6f}", "—" if new is None else f"{new:.6f}",
                      "[green]yes[/]" if same else "[red]NO[/]")
    console.print(table)
    # an empty or thinned `test` used to pass: nothing compared is nothing wrong (issue 31.9)
    missing = [key for key in fresh if key not in stored]
    if not stored:
        _fail(f"{run_dir / 'metrics.json'}: its test metrics are empty; nothing to re-check "
              f"(the run's config gives {', '.join(fresh)}) — restore the file or train again", 1)
    if missing:
        _fail(f"{run_dir / 'metrics.json'}: its test metrics lack {', '.join(missing)}, which "
              "the run's config asks for — restore the file or train again", 1)
    if not ok:
        _fail(f"{run_dir}: recomputed metrics differ from metrics.json", 1)


def _options(command):
    """Declare shared options once: every parameter of ``command`` annotated with an options
    dataclass (:class:`RunOptions`, :class:`StudyModes`) is replaced on the command line by
    that dataclass's fields, and ``command`` receives one instance built from them.

    Why: ablate, sweep and tune each listed the same eight options (eleven for ablate and
    sweep), so one option meant three signatures to change; typer has no option groups, so a
    group is a dataclass whose fields are typer's Annotated declarations."""
    sig = inspect.signature(command, eval_str=True)
    groups = {p.name: p.annotation for p in sig.parameters.values()
              if dataclasses.is_dataclass(p.annotation)}
    shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                annotation=typing.get_type_hints(cls, include_extras=True)[f.name])
              for cls in groups.values() for f in dataclasses.fields(cls)]

    @functools.wraps(command)
    def with_groups(**kwargs):
        for name, cls in groups.items():
            kwargs[name] = cls(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(cls)})
        return command(**kwargs)

    own = [p for p in sig.parameters.values() if p.name not in groups]
    with_groups.__signature__ = sig.replace(parameters=own + shared)
    return with_groups


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Where and how a study's runs train: the options ablate, sweep and tune share."""

    jobs: Annotated[int, typer.Option(
        "--jobs", help="parallel processes (CPU threads are split)")] = 1
    executor: Annotated[str, typer.Option(
        "--executor", help="local (processes on this machine) | ray (a Ray instance; "
                           "docs/scale-out.md)")] = "local"
    address: Annotated[str | None, typer.Option(
        "--address", help="Ray cluster address for --executor ray (default: start a local "
                          "instance)")] = None
    threads: Annotated[int | None, typer.Option("--threads", help=Threads.help)] = None
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | cuda:N")] = "cpu"
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help=DataDir.help)] = None
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help=RunsDir.help)] = None
    results_dir: Annotated[Path, typer.Option("--results-dir", help=ResultsDir.help)] = Path(
        "results")
    track: Annotated[list[str], typer.Option("--track", help=Track.help)] = ()


@dataclasses.dataclass(frozen=True)
class StudyModes:
    """What ablate and sweep may do instead of (or besides) training what is missing."""

    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="print the plan and what is cached")] = False
    report_only: Annotated[bool, typer.Option(
        "--report-only", help="write the table from finished runs; train nothing")] = False
    rerun: Annotated[bool, typer.Option("--rerun", help="run again even if cached")] = False


def _executor(opts: RunOptions):
    from recbench.executors import make_executor

    executor = make_executor(opts.executor, opts.jobs, opts.address, opts.threads, opts.device)
    if opts.executor == "local":
        _set_threads(opts.threads)
    return executor


def _run_study(study, opts: RunOptions, modes: StudyModes, only_seeds: str | None = None,
               only_variants: str | None = None, only_experiments: str | None = None) -> None:
    """Options in, progress and tables out; the study itself is recbench.study_session's."""
    from recbench import study_session

    executor = _executor(opts)
    session = study_session.open_study(study, _runs_root(opts.runs_dir), opts.results_dir,
                                       only_seeds, only_variants, only_experiments,
                                       _paths(opts.data_dir))
    if modes.report_only and not session.any_finished:
        _fail(f"study {study.study}: no finished run in {session.runs_root}/ or "
              f"{session.ledger}/, so {session.folder}/ is left as it is; run the study "
              "without --report-only to train its runs", 1)
    _train_and_report(session, opts, executor, modes)


def _train_and_report(session, opts: RunOptions, executor,
                      modes: StudyModes = StudyModes()) -> None:
    """Print the plan, train what is missing with a progress bar, write and print the report
    (the one path of ablate, sweep and tune's final study)."""
    from recbench import study_session
    from recbench.studies import report

    study = session.study
    if opts.track:  # streamed curves change no number, so every cell keeps its hash and cache
        session.plan = [dataclasses.replace(p, cfg=_with_track(p.cfg, opts.track))
                        for p in session.plan]
    console.print(f"study [bold]{study.study}[/]: {len(session.plan)} runs, {session.cached} "
                  "cached" + (" (--rerun: all will run)" if modes.rerun else ""))
    stale = sum(p.stale for p in session.plan)
    if stale:
        console.print(f"[yellow]note:[/] {stale} finished run(s) of these configs were trained "
                      f"on other data than {session.data.processed}/ holds now; they will "
                      "run again")
    if modes.dry_run and not modes.report_only:
        table = Table("experiment", "variant", "seed", "hash", "status")
        for p in session.plan:
            table.add_row(p.base, p.variant, str(p.seed), p.hash,
                          "cached" if p.cached and not modes.rerun else "to run")
        console.print(table)
        return
    failures = []
    if not modes.report_only:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), "{task.fields[info]}",
                      console=console) as bar:
            task = bar.add_task(study.study, total=len(session.plan), info="")

            def on_done(p, outcome: str) -> None:
                bar.advance(task)
                bar.update(task, info=f"{p.base} {p.variant} seed {p.seed}: {outcome}")

            failures = study_session.run_study(session, executor, modes.rerun, opts.device,
                                               opts.threads, on_done)
        for p, message in failures:
            err_console.print(f"[red]failed[/] {p.base} {p.variant} seed {p.seed}: {message}")
    written = study_session.report_study(session)
    if written is None:
        _fail(f"study {study.study}: no run finished, so {session.folder}/ is left as it is", 1)
    result, recorded = written
    console.print(report.rich_table(result))
    files = ", ".join(report.study_files(result, session.search))
    if modes.report_only:
        console.print(f"wrote {session.folder}/ ({files}) from {session.cached} cached runs "
                      "(--report-only: nothing trained)")
    else:
        console.print(f"wrote {session.folder}/: {files}; {recorded} new run record(s) in "
                      f"{session.ledger}/")
    if failures:
        raise typer.Exit(1)


@app.command()
@_guard
@_options
def sweep(
    experiment: Path = typer.Argument(..., help="experiment YAML"),
    set_: list[str] = typer.Option([], "--set", help="key=v1,v2 (several --set form a grid)"),
    seeds: str = typer.Option(None, "--seeds", help="comma-separated seeds (default: the file's)"),
    name: str = typer.Option(None, "--name", help="study name (default derived)"),
    metric: str = typer.Option(None, "--metric", help="table metric (default: the task's)"),
    opts: RunOptions = RunOptions(),
    modes: StudyModes = StudyModes(),
) -> None:
    """Run an ad-hoc grid over one experiment and write results/NAME/."""
    from recbench import study_session

    _run_study(study_session.sweep_study(experiment, set_, seeds, name, metric, opts.results_dir),
               opts, modes)


@app.command()
@_guard
@_options
def ablate(
    study_name: str = typer.Option(None, "--study", help="a study of experiments/studies/"),
    list_: bool = typer.Option(False, "--list", help="list the named studies"),
    set_: list[str] = typer.Option([], "--set", help="override a key in every run"),
    only_seeds: str = typer.Option(None, "--only-seeds",
                                   help="run only these of the study's seeds (e.g. 0,1); the "
                                        "table still reports every finished run"),
    only_variants: str = typer.Option(None, "--only-variants",
                                      help="run only these variant labels (comma-separated)"),
    only_experiments: str = typer.Option(None, "--only-experiments",
                                         help="run only these base experiments, by name (e.g. "
                                              "gl_attention-ml100k; comma-separated)"),
    studies_dir: Path = typer.Option(Path("experiments/studies"), "--studies-dir"),
    opts: RunOptions = RunOptions(),
    modes: StudyModes = StudyModes(),
) -> None:
    """Run a named study (sweep or ablation) and write its table and plot to results/NAME/."""
    from recbench import studies

    if list_:
        table = Table("study", "bases", "runs", "description")
        for s in studies.list_studies(studies_dir):
            table.add_row(s.study, ", ".join(Path(b).stem for b in s.base),
                          str(studies.count_runs(s)), s.description)
        console.print(table)
        return
    if study_name is None:
        _fail("name a study with --study NAME (`recbench ablate --list` shows them)")
    study = studies.load_study(studies_dir, study_name, set_)
    _run_study(study, opts, modes, only_seeds, only_variants, only_experiments)


@app.command()
@_guard
@_options
def tune(
    experiment: Path = typer.Argument(..., help="experiment YAML to tune"),
    space: Path = typer.Option(..., "--space", help="search space YAML (experiments/spaces/)"),
    trials: int = typer.Option(20, "--trials", min=1,
                               help="finished or pruned trials the search should reach"),
    name: str = typer.Option(None, "--name", help="search name (default EXPERIMENT-SPACE)"),
    storage: str = typer.Option(None, "--storage",
                                help="Optuna storage URL (default sqlite under runs/tune/); "
                                     "several machines tune one search through one URL"),
    seeds: str = typer.Option(None, "--seeds",
                              help="final seeds for the best config (default: the file's)"),
    search_only: bool = typer.Option(False, "--search-only",
                                     help="run the search only; no final seeds, no results/"),
    set_: list[str] = typer.Option([], "--set", help="override a key in every trial"),
    opts: RunOptions = RunOptions(),
) -> None:
    """Search hyperparameters with Optuna on validation, then train the best for each seed."""
    from recbench import study_session
    from recbench import tune as tuning
    from recbench.studies import parse_seeds

    try:
        import optuna  # noqa: F401
    except ImportError:
        _fail("tune needs Optuna: `pip install -e '.[tune]'` (make setup installs it)")
    final_seeds = parse_seeds(seeds)
    executor = _executor(opts)
    paths, runs_root = _paths(opts.data_dir), _runs_root(opts.runs_dir)
    if opts.track:  # each trial streams its curves too (track stays out of the hash)
        set_ = [*set_, "track=" + ",".join(opts.track)]
    setup = study_session.open_search(experiment, space, set_, name, storage, runs_root, paths,
                                      opts.device, executor.threads_per_call(opts.threads))
    workers = opts.jobs if opts.executor == "local" else max(1, opts.jobs)
    console.print(f"search [bold]{setup.name}[/]: {trials} trials of {experiment} over "
                  f"{', '.join(setup.space['params'])} ({opts.executor}, {workers} worker(s)); "
                  f"storage {setup.storage}")

    def on_worker(index: int, value, error) -> None:
        if error is not None:
            err_console.print(f"[red]worker {index} failed[/]: {error}")

    search = tuning.search(setup, trials, executor, workers, own_storage=storage is None,
                           on_result=on_worker)
    patch, best = tuning.best_patch(search), search.best_trial
    console.print(f"best trial {best.number}: validation "
                  f"{best.user_attrs.get('monitor', 'valid metric')} {best.value:.4f} "
                  + ", ".join(f"{k}={v}" for k, v in patch.items()))
    if not search_only:
        _train_and_report(study_session.open_tuned(setup, search, final_seeds, runs_root,
                                                   opts.results_dir, paths), opts, executor)


def main() -> None:  # pragma: no cover - console entry point alias
    app(prog_name="recbench", args=sys.argv[1:])


@app.command()
@_guard
def summary(
    write: Path = typer.Option(None, "--write", help="replace the generated block of this file "
                                                    "(between <!-- summary:start/end -->)"),
    check: Path = typer.Option(None, "--check", help="exit 1 when this file's block is stale"),
    config: Path = typer.Option(Path("experiments/summary/papers.yaml"), "--config"),
    studies_dir: Path = typer.Option(Path("experiments/studies"), "--studies-dir"),
    claims_dir: Path = typer.Option(Path("experiments/claims"), "--claims-dir",
                                    help="the papers' claims; --write/--check also cover "
                                         "results/claims/*.md"),
    results_dir: Path = ResultsDir,
) -> None:
    """Per-paper 'ours | paper | gap' tables from results/*/table.csv (the README's summary),
    and with --write / --check each paper's claims table results/claims/PAPER.md."""
    from recbench import claims as paper_claims
    from recbench import summary as summaries

    if write and check:
        _fail("--write and --check: choose one")
    target = write or check
    if target is not None:  # bad input first: one line, before any warning
        if not target.is_file():
            _fail(f"{target}: no such file")
        try:
            text = target.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            _fail(f"{target}: not UTF-8 text; give the Markdown file that holds the summary block")
        old = summaries.current_block(text, str(target))
    made = summaries.render(summaries.load_config(config), results_dir, studies_dir,
                            target.parent if target else None)
    for problem in made.problems:
        err_console.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)
    claimed = paper_claims.render_all(claims_dir, results_dir) if target is not None else {}
    if check:
        if old != made.markdown:
            _fail(f"{check}: the summary block is stale; run `recbench summary --write {check}`", 1)
        stale = paper_claims.stale(claimed, results_dir)
        if stale:
            _fail(f"{'; '.join(stale)}; run `recbench summary --write {check}`", 1)
        console.print(f"{check}: summary block up to date; {len(claimed)} claims table(s) "
                      "up to date")
    elif write:
        changed = summaries.write(write, made.markdown)
        console.print(f"{'wrote' if changed else 'unchanged:'} {write}")
        for path in paper_claims.write_all(claimed):
            console.print(f"wrote {path}")
    else:
        typer.echo(made.markdown, nl=False)
