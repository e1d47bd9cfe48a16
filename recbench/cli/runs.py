"""``recbench train`` and ``recbench eval``: one experiment's runs, and re-checking one run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from recbench.cli.common import (
    DataDir,
    RunsDir,
    Threads,
    Track,
    _fail,
    _guard,
    _paths,
    _runs_root,
    _with_track,
    app,
    console,
)


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
