"""Each paper's claims, checked against the committed study tables (issue 34).

The docs kept hand-written lists of "the paper says X; on our numbers it holds / does not",
and every rerun left some of them quoting old figures. Here a claim is declared once, in
``experiments/claims/<paper>.yaml``: the paper's words, where it says them, and one rule over
a committed ``results/<study>/table.csv`` (read with :func:`recbench.summary.read_table`, the
README summary's reader). The verdict, the figures that decide it and a link to the table
are generated into ``results/claims/<paper>.md`` by ``recbench summary --write`` and checked
by ``summary --check``, so a verdict cannot outlive the table it was read from.

Four rule kinds, each implemented once (on the table's own metric; lower is better for the
error metrics, :func:`recbench.train.api.lower_is_better`):

- ``compare`` — rows [A, B], ``expect: "<"`` or ``">"``: holds when A's mean is on that side
  of B's and, where the table has a paired test of the two (one of them is the reference
  row), its p (Holm-corrected where the table has it) is below ``alpha``.
- ``best`` — rows [X] or [X, others...]: holds when X has the best mean of the others (all
  rows of the experiment when only X is named).
- ``monotone`` — rows in order, ``expect: increasing`` or ``decreasing``: holds when every
  step moves that way.
- ``interval`` — rows [X]: holds when the paper's figure lies inside X's 95% interval.

A claim no table here can test says so (``untestable: why``). A rule that names a study
without a table, a row the table lacks or another metric is an error (one line): a typo must
not read as "untestable". A row the table has but no run finished is "untestable here".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recbench.config import load_yaml_file, validate_file
from recbench.errors import ConfigError
from recbench.studies.ledger import written_from_ledger
from recbench.studies.schema import table_stem, versus_stem
from recbench.summary import _float, read_table
from recbench.train.api import lower_is_better

HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "untestable here"
TRANSCRIBED = "transcribed, not regenerable"
HEADER = ["#", "the paper's claim", "where", "check", "our figures", "verdict", "table"]


class Check(BaseModel):
    """A rule over one experiment's rows of one study table."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["compare", "best", "monotone", "interval"]
    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # results/STUDY/table.csv
    experiment: str = Field(min_length=1)  # the table's `experiment` column
    metric: str = Field(min_length=1)  # what the claim is judged on; checked against the table
    rows: list[str] = Field(min_length=1)  # the table's `variant` column
    expect: Literal["<", ">", "increasing", "decreasing"] | None = None
    alpha: float = Field(0.05, gt=0, lt=1)
    # read the table written against this reference row (the study's ``versus:``), so a
    # compare of two rows neither of which is the study's reference has its paired test
    reference: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Check:
        need = {"compare": (2, 2, {"<", ">"}), "monotone": (2, 99, {"increasing", "decreasing"}),
                "best": (1, 99, {None}), "interval": (1, 1, {None})}[self.kind]
        if not need[0] <= len(self.rows) <= need[1]:
            raise ValueError(f"a {self.kind} check takes {need[0]}"
                             + (f" to {need[1]}" if need[1] != need[0] else "") + " rows")
        if self.expect not in need[2]:
            if None in need[2]:
                raise ValueError(f"a {self.kind} check takes no expect")
            raise ValueError(f"a {self.kind} check takes expect: "
                             + " or ".join(repr(e) for e in sorted(need[2])))
        if len(set(self.rows)) != len(self.rows):
            raise ValueError("a row is named twice")
        return self


class Claim(BaseModel):
    """One claim: the paper's words, where, and a check or why none is possible here."""

    model_config = ConfigDict(extra="forbid")
    claim: str = Field(min_length=1)  # a short quote
    where: str = Field(min_length=1)  # section / table / figure
    check: Check | None = None
    untestable: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Claim:
        if (self.check is None) == (self.untestable is None):
            raise ValueError("give a claim either a check or `untestable: why`, not both")
        return self


class ClaimsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paper: str = Field(min_length=1)  # the title as the README names it
    source: str = Field(min_length=1)  # the citation
    claims: list[Claim] = Field(min_length=1)


def load_claims(path: Path) -> ClaimsFile:
    """Read and validate one claims file; a bad file is one ConfigError line."""
    return validate_file(ClaimsFile, load_yaml_file(path, "claims file"), path)


@dataclass(frozen=True)
class Verdict:
    verdict: str  # HOLDS | FAILS | UNTESTABLE
    figures: str  # the numbers that decide it, in words
    study: str | None = None
    regenerable: bool = True  # written from its ledger: --report-only rebuilds its table


def _fig(x: float) -> str:
    return f"{x:.4f}"


def _table_file(check: Check, results_dir: Path) -> Path:
    """The study's table.md, or the table of the check's metric where the study writes one
    (``also:`` metrics, e.g. results/seq-ml1m/table_hr_at_10.md); with ``reference``, that
    table as written against the row (``versus:``, e.g. table_hr_at_10_vs_sasrec-ref.md)."""
    folder = results_dir / check.study
    secondary = folder / f"{table_stem(check.metric)}.md"
    main = secondary if secondary.with_suffix(".csv").exists() else folder / "table.md"
    if check.reference is None:
        return main
    return main.with_name(versus_stem(main.stem, check.reference) + ".md")


def _rows(check: Check, results_dir: Path, where: str) -> dict[str, dict[str, str]]:
    """The experiment's rows of the study table by variant; an error naming the claim when
    the table, a named row or the metric is not what the check says."""
    file = _table_file(check, results_dir).with_suffix(".csv")
    table = read_table(file)
    if table is None and check.reference is not None:
        raise ConfigError(f"{where}: no table {results_dir.as_posix()}/{check.study}/{file.name}"
                          f" against {check.reference}; add {check.reference} to the study's "
                          "`versus:` and regenerate it, or drop the check's reference")
    if table is None:
        raise ConfigError(f"{where}: no study table {results_dir.as_posix()}/{check.study}/"
                          "table.csv; run the study or mark the claim `untestable: why`")
    rows = {r["variant"]: r for r in table if r["experiment"] == check.experiment}
    if not rows:
        raise ConfigError(f"{where}: {check.study}/table.csv has no experiment "
                          f"{check.experiment!r}")
    missing = [v for v in check.rows if v not in rows]
    if missing:
        raise ConfigError(f"{where}: {check.study}/table.csv has no row {missing[0]!r} of "
                          f"{check.experiment} (it has {', '.join(rows)})")
    metric = rows[check.rows[0]]["metric"]
    if metric != check.metric:
        raise ConfigError(f"{where}: the check says {check.metric}, {check.study}/table.csv "
                          f"reports {metric}")
    return rows


def _reference(rows: dict[str, dict[str, str]]) -> str | None:
    """The row the table's paired tests compare against: the one finished row without a p."""
    refs = [v for v, r in rows.items()
            if _float(r.get("mean")) is not None and not (r.get("p_value") or "").strip()]
    return refs[0] if len(refs) == 1 else None


def _pair_p(a: str, b: str, rows: dict[str, dict[str, str]]) -> tuple[float, str] | None:
    """The table's paired p of rows a and b, when one of them is the reference."""
    ref = _reference(rows)
    other = b if a == ref else a if b == ref else None
    if other is None:
        return None
    holm = _float(rows[other].get("p_holm"))
    if holm is not None:
        return holm, "p Holm"
    raw = _float(rows[other].get("p_value"))
    return None if raw is None else (raw, "p")


def _compare(check: Check, rows, means) -> Verdict:
    a, b = check.rows
    ordered = means[a] < means[b] if check.expect == "<" else means[a] > means[b]
    text = f"{a} {_fig(means[a])} vs {b} {_fig(means[b])}"
    pair = _pair_p(a, b, rows)
    if pair is not None:
        text += f" ({pair[1]} {pair[0]:.2g})"
    else:
        text += " (no paired test in the table)"
    if not ordered:
        return Verdict(FAILS, text + ("; the opposite, significantly" if pair is not None
                                      and pair[0] < check.alpha else "; the other way"))
    if pair is not None and pair[0] >= check.alpha:
        return Verdict(FAILS, text + f"; not significant at {check.alpha:g}")
    return Verdict(HOLDS, text)


def _best(check: Check, rows, means) -> Verdict:
    x = check.rows[0]
    field = check.rows[1:] or [v for v in rows if v != x]
    others = {v: means[v] for v in field if v in means}
    if not others:
        return Verdict(UNTESTABLE, f"no other finished row to compare {x} with")
    low = lower_is_better(check.metric)
    rival = min(others, key=others.get) if low else max(others, key=others.get)
    beats = means[x] < others[rival] if low else means[x] > others[rival]
    text = f"{x} {_fig(means[x])}; best of the other {len(others)}: {rival} {_fig(others[rival])}"
    return Verdict(HOLDS if beats else FAILS, text)


def _monotone(check: Check, rows, means) -> Verdict:
    up = check.expect == "increasing"
    text = " → ".join(f"{v} {_fig(means[v])}" for v in check.rows)
    breaks = [(a, b) for a, b in zip(check.rows, check.rows[1:], strict=False)
              if not (means[b] > means[a] if up else means[b] < means[a])]
    if not breaks:
        return Verdict(HOLDS, text)
    a, b = breaks[0]
    return Verdict(FAILS, text + f"; first break {a} → {b}"
                   + (f" (and {len(breaks) - 1} more)" if len(breaks) > 1 else ""))


def _interval(check: Check, rows, means) -> Verdict:
    x = check.rows[0]
    low, high = _float(rows[x].get("ci_low")), _float(rows[x].get("ci_high"))
    paper = _float(rows[x].get("paper"))
    if paper is None:
        return Verdict(UNTESTABLE, f"the table quotes no paper figure for {x}")
    if low is None or high is None:
        return Verdict(UNTESTABLE, f"{x} {_fig(means[x])}, paper {paper:g}: the table has no "
                                   "interval (no per-unit data)")
    text = f"{x} {_fig(means[x])}, 95% CI [{_fig(low)}, {_fig(high)}], paper {paper:g}"
    if low <= paper <= high:
        return Verdict(HOLDS, text + " (inside)")
    return Verdict(FAILS, text + (" (above ours)" if paper > high else " (below ours)"))


RULES = {"compare": _compare, "best": _best, "monotone": _monotone, "interval": _interval}


def evaluate(claim: Claim, results_dir: Path, where: str = "claim") -> Verdict:
    """The verdict of one claim on the committed tables under ``results_dir``."""
    if claim.check is None:
        return Verdict(UNTESTABLE, claim.untestable or "")
    check = claim.check
    rows = _rows(check, results_dir, where)
    regenerable = written_from_ledger(results_dir / check.study)
    means = {v: m for v, r in rows.items() if (m := _float(r.get("mean"))) is not None
             and (_float(r.get("seeds")) or 0) > 0}
    idle = [v for v in check.rows if v not in means]
    if idle:
        return Verdict(UNTESTABLE, f"{', '.join(idle)}: not run", check.study, regenerable)
    verdict = RULES[check.kind](check, rows, means)
    return Verdict(verdict.verdict, verdict.figures, check.study, regenerable)


def _describe(check: Check) -> str:
    rows = check.rows
    text = {"compare": f"{rows[0]} {check.expect} {rows[-1]}",
            "best": f"{rows[0]} best" + (f" of {', '.join(rows[1:])}" if rows[1:] else ""),
            "monotone": f"{check.expect} over {', '.join(rows)}",
            "interval": f"paper inside the CI of {rows[0]}"}[check.kind]
    return f"{check.kind}: {text} ({check.metric}, {check.experiment})"


def _escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(claims: ClaimsFile, name: str, results_dir: Path, out_dir: Path) -> str:
    """The Markdown of results/claims/NAME.md (links relative to ``out_dir``)."""
    lines = [f"# Claims of {claims.paper}", "",
             f"<!-- generated by `recbench summary --write README.md` from experiments/claims/"
             f"{name}.yaml and results/*/table.csv: edit those, not this file -->", "",
             f"Source: {_escape(claims.source)}. Each claim is the paper's words and one check "
             "over a committed study table, on that table's metric (lower is better for rmse / "
             "mae): compare (A's mean on the stated side of B's and, where the table pairs "
             "them with the reference, p below the check's alpha), best (X's mean best of the "
             "rows named, or of all the experiment's rows), monotone (every step the stated "
             "way), interval (the paper's figure inside our 95% bootstrap interval). "
             f"\"{TRANSCRIBED}\": the study's table was not written from its ledger (its runs.txt "
             "names runs no checkout has), so `--report-only` cannot rebuild it.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    counts = {HOLDS: 0, FAILS: 0, UNTESTABLE: 0}
    for i, claim in enumerate(claims.claims, 1):
        v = evaluate(claim, results_dir, f"{name} claim {i}")
        counts[v.verdict] += 1
        if v.study is None:
            table = "—"
        else:
            md = _table_file(claim.check, results_dir)  # a verdict with a study has a check
            link = Path(os.path.relpath(md.resolve(), out_dir.resolve())).as_posix()
            table = f"[{v.study}]({link})" + ("" if v.regenerable else f" ({TRANSCRIBED})")
        verdict = f"**{v.verdict}**" if v.verdict != UNTESTABLE else v.verdict
        check = _describe(claim.check) if claim.check else "—"
        lines.append("| " + " | ".join(_escape(c) for c in [
            str(i), f"\"{claim.claim}\"", claim.where, check, v.figures, verdict, table]) + " |")
    lines += ["", f"{counts[HOLDS]} hold, {counts[FAILS]} do not hold, {counts[UNTESTABLE]} "
                  "untestable here."]
    return "\n".join(lines) + "\n"


def render_all(claims_dir: Path, results_dir: Path) -> dict[Path, str]:
    """results/claims/NAME.md → its text, for every experiments/claims/NAME.yaml."""
    out_dir = results_dir / "claims"
    return {out_dir / f"{path.stem}.md": render(load_claims(path), path.stem, results_dir,
                                                out_dir)
            for path in sorted(claims_dir.glob("*.yaml"))}


def stale(made: dict[Path, str], results_dir: Path) -> list[str]:
    """The claims files on disk that differ from ``made``, are missing, or have no source."""
    out = [f"{p} is stale" if p.is_file() else f"{p} is missing"
           for p, text in made.items()
           if not p.is_file() or p.read_text(encoding="utf-8") != text]
    out += [f"{p} has no experiments/claims/{p.stem}.yaml"
            for p in sorted((results_dir / "claims").glob("*.md")) if p not in made]
    return out


def write_all(made: dict[Path, str]) -> list[Path]:
    """Write the claims files that changed (atomically); the paths written."""
    from recbench.runs import atomic_write_text

    written = []
    for path, text in made.items():
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        written.append(path)
    return written
