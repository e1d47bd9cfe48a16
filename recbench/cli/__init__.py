"""The ``recbench`` command line: eight thin commands over the library, one module per family.

``common`` holds the app, the consoles and ``_guard``, the one place where errors become a red
line and an exit code (2 for bad input, 1 for a failed check); ``data`` (fetch, preprocess),
``runs`` (train, eval), ``studies`` (sweep, ablate, tune; their shared ``options``) and
``summary`` each add their commands to that app when imported, in the order ``recbench --help``
lists them. torch and DGL are imported inside the commands so ``recbench --help`` and config
errors answer instantly.
"""

from __future__ import annotations

import sys

from recbench.cli.common import app, console, err_console
from recbench.cli.options import RunOptions, StudyModes

# isort: split
# the command modules last: importing one registers its commands on ``app``
from recbench.cli import data, runs, studies, summary  # noqa: F401

__all__ = ["RunOptions", "StudyModes", "app", "console", "err_console", "main"]


def main() -> None:  # pragma: no cover - console entry point alias
    app(prog_name="recbench", args=sys.argv[1:])
