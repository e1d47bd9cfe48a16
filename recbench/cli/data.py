"""``recbench fetch`` and ``recbench preprocess``: raw files in, DGL graph and split masks out."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from recbench.cli.common import DataDir, _fail, _guard, _paths, app, console


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
