"""``recbench sweep``, ``ablate`` and ``tune``: many runs, one table, with the options they share
(:mod:`recbench.cli.options`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich.table import Table

from recbench.cli.common import (
    _fail,
    _guard,
    _paths,
    _runs_root,
    _set_threads,
    _with_track,
    app,
    console,
    err_console,
)
from recbench.cli.options import ReportOnly, RunOptions, StudyModes, _options


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
    report_only: ReportOnly = False,
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
    if report_only and search_only:
        _fail("--report-only and --search-only exclude each other (one writes results/, the "
              "other does not)")
    setup = study_session.open_search(experiment, space, set_, name, storage, runs_root, paths,
                                      opts.device, executor.threads_per_call(opts.threads),
                                      open_storage=not report_only)
    if report_only:
        _train_and_report(study_session.open_tuned(setup, None, final_seeds, runs_root,
                                                   opts.results_dir, paths, report_only=True),
                          opts, executor, StudyModes(report_only=True))
        return
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
