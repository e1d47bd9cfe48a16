"""``python -m recbench`` (and ``torchrun -m recbench``) runs the CLI."""

from recbench.cli import app

app(prog_name="recbench")
