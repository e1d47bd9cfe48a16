"""``recbench summary``: the README's per-paper tables and each paper's claims table."""

from __future__ import annotations

from pathlib import Path

import typer

from recbench.cli.common import ResultsDir, _fail, _guard, app, console, err_console


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
