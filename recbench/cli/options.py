"""The option groups ablate, sweep and tune share, declared once: :class:`RunOptions` and
:class:`StudyModes`, spread onto each command's signature by :func:`_options`."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated

import typer

from recbench.cli.common import DataDir, ResultsDir, RunsDir, Threads, Track


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


# --report-only, declared once: ablate and sweep take it through StudyModes, tune on its own
# (tune has no --dry-run or --rerun), all with the same flag, help and default
ReportOnly = Annotated[bool, typer.Option(
    "--report-only", help="write results/ from finished runs and ledger records; train nothing")]


@dataclasses.dataclass(frozen=True)
class StudyModes:
    """What ablate and sweep may do instead of (or besides) training what is missing."""

    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="print the plan and what is cached")] = False
    report_only: ReportOnly = False
    rerun: Annotated[bool, typer.Option("--rerun", help="run again even if cached")] = False
