"""The papers' claims tables: each rule kind on a tiny study table, and the committed files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from recbench import claims
from recbench.cli import app
from recbench.errors import ConfigError
from recbench.stats import Interval
from recbench.studies import Cell, StudyConfig, StudyResult
from recbench.studies.report import csv_text

ROOT = Path(__file__).resolve().parents[1]


def _table(results: Path, name: str, metric: str, cells: list[Cell]) -> None:
    """results/NAME/table.csv written by the real study writer (reference: the first cell)."""
    study = StudyConfig(study=name, base=["x.yaml"])
    result = StudyResult(study=study, metric=metric, reference=cells[0].variant, cells=cells,
                         numeric_axis=False)
    (results / name).mkdir(parents=True)
    (results / name / "table.csv").write_text(csv_text(result))
    (results / name / "table.md").write_text("# table\n")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """An rmse table (ref 0.90, 'worse' 0.95 significant, 'close' 0.899 not significant,
    'idle' not run) and a recall table without paired tests; only the first has a ledger."""
    out = tmp_path / "results"
    _table(out, "err", "rmse", [
        Cell("m", "d", "ref", [0.90, 0.90], [], paper=0.91, ci=Interval(0.90, 0.88, 0.92, 50)),
        Cell("m", "d", "worse", [0.95, 0.95], [], paper=0.80, p_value=0.001, p_holm=0.002,
             ci=Interval(0.95, 0.93, 0.97, 50)),
        Cell("m", "d", "close", [0.899], [], p_value=0.40, p_holm=0.40),
        Cell("m", "d", "idle", [], []),
    ])
    (out / "err" / "ledger").mkdir()
    (out / "err" / "runs.txt").write_text("[m | ref]\n  results/err/ledger/m/0123456789\n"
                                          "[m | idle]\n  (no finished run)\n")
    _table(out, "rec", "recall@10", [Cell("m", "d", str(n), [v], [])
                                     for n, v in [(1, 0.10), (2, 0.20), (4, 0.30), (8, 0.25)]])
    return out


def _verdict(results: Path, **check) -> claims.Verdict:
    claim = claims.Claim(claim="words", where="Table 1", check=claims.Check(
        experiment="m", **check))
    return claims.evaluate(claim, results)


def test_compare_holds_fails_and_needs_significance_where_the_table_pairs_the_rows(results):
    held = _verdict(results, kind="compare", study="err", metric="rmse", rows=["ref", "worse"],
                    expect="<")
    assert held.verdict == claims.HOLDS and "p Holm 0.002" in held.figures and held.regenerable
    other_way = _verdict(results, kind="compare", study="err", metric="rmse",
                         rows=["worse", "ref"], expect="<")
    assert other_way.verdict == claims.FAILS and "significantly" in other_way.figures
    # the right side by 0.001, but the table's paired test says it is noise
    noise = _verdict(results, kind="compare", study="err", metric="rmse", rows=["close", "ref"],
                     expect="<")
    assert noise.verdict == claims.FAILS and "not significant" in noise.figures
    untested = _verdict(results, kind="compare", study="err", metric="rmse",
                        rows=["close", "worse"], expect="<")
    assert untested.verdict == claims.HOLDS and "no paired test" in untested.figures


def test_best_uses_the_metric_direction_and_the_rows_named(results):
    assert _verdict(results, kind="best", study="err", metric="rmse", rows=["close"]).verdict \
        == claims.HOLDS  # rmse: lower is better, 0.899 < 0.90 < 0.95
    assert _verdict(results, kind="best", study="rec", metric="recall@10", rows=["4"]).verdict \
        == claims.HOLDS
    lost = _verdict(results, kind="best", study="rec", metric="recall@10", rows=["2", "1", "8"])
    assert lost.verdict == claims.FAILS and "8 0.2500" in lost.figures
    assert not lost.regenerable  # no ledger: the row says "transcribed, not regenerable"


def test_monotone_names_the_first_break(results):
    assert _verdict(results, kind="monotone", study="rec", metric="recall@10",
                    rows=["1", "2", "4"], expect="increasing").verdict == claims.HOLDS
    broke = _verdict(results, kind="monotone", study="rec", metric="recall@10",
                     rows=["1", "2", "4", "8"], expect="increasing")
    assert broke.verdict == claims.FAILS and "first break 4 → 8" in broke.figures


def test_interval_inside_outside_and_without_an_interval(results):
    inside = _verdict(results, kind="interval", study="err", metric="rmse", rows=["ref"])
    assert inside.verdict == claims.HOLDS and "[0.8800, 0.9200]" in inside.figures
    below = _verdict(results, kind="interval", study="err", metric="rmse", rows=["worse"])
    assert below.verdict == claims.FAILS and "below ours" in below.figures
    none = _verdict(results, kind="interval", study="rec", metric="recall@10", rows=["1"])
    assert none.verdict == claims.UNTESTABLE


def test_a_row_not_run_is_untestable_and_a_bad_reference_is_one_error_line(results):
    idle = _verdict(results, kind="compare", study="err", metric="rmse", rows=["ref", "idle"],
                    expect="<")
    assert idle.verdict == claims.UNTESTABLE and "idle: not run" in idle.figures
    with pytest.raises(ConfigError, match="no study table .*/never/table.csv"):
        _verdict(results, kind="best", study="never", metric="rmse", rows=["ref"])
    with pytest.raises(ConfigError, match="has no row 'typo'"):
        _verdict(results, kind="best", study="err", metric="rmse", rows=["typo"])
    with pytest.raises(ConfigError, match="the check says mae"):
        _verdict(results, kind="best", study="err", metric="mae", rows=["ref"])


@pytest.mark.parametrize("check, message", [
    ({"kind": "compare", "rows": ["a"], "expect": "<"}, "takes 2 rows"),
    ({"kind": "compare", "rows": ["a", "b"]}, "takes expect"),
    ({"kind": "best", "rows": ["a"], "expect": "<"}, "takes no expect"),
    ({"kind": "monotone", "rows": ["a", "a"], "expect": "increasing"}, "named twice"),
])
def test_malformed_checks_are_refused(tmp_path, check, message):
    body = {"paper": "P", "source": "S", "claims": [
        {"claim": "c", "where": "w", "check": {"study": "s", "experiment": "e", "metric": "m",
                                               **check}}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=message):
        claims.load_claims(path)


def test_render_links_the_table_and_says_which_tables_are_transcribed(results, tmp_path):
    source = tmp_path / "claims"
    source.mkdir()
    (source / "p.yaml").write_text(yaml.safe_dump({"paper": "P", "source": "S", "claims": [
        {"claim": "c", "where": "w", "check": {"kind": "best", "study": "rec", "experiment": "m",
                                               "metric": "recall@10", "rows": ["4"]}},
        {"claim": "d", "where": "w", "untestable": "no data"}]}))
    made = claims.render_all(source, results)
    text = made[results / "claims" / "p.md"]
    assert "[rec](../rec/table.md) (transcribed, not regenerable)" in text
    assert "| 2 | \"d\" | w | — | no data | untestable here | — |" in text
    assert text.endswith("1 hold, 0 do not hold, 1 untestable here.\n")
    assert claims.stale(made, results) == [f"{results / 'claims' / 'p.md'} is missing"]
    claims.write_all(made)
    assert claims.stale(made, results) == []


def test_the_committed_claims_files_evaluate_and_are_up_to_date():
    """Every claim of experiments/claims/ names a real table, row and metric, and the
    committed results/claims/*.md are what the committed study tables give."""
    made = claims.render_all(ROOT / "experiments" / "claims", ROOT / "results")
    assert {p.name for p in made} == {"glocal-k.md", "gla.md", "gconv-transform.md"}
    assert claims.stale(made, ROOT / "results") == []


def test_summary_check_fails_on_a_stale_claims_table(tmp_path, monkeypatch):
    """`summary --check` covers the claims tables: one edited by hand fails it."""
    import shutil

    for name in ["README.md", "experiments", "results"]:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["summary", "--check", "README.md"]).exit_code == 0
    stale = tmp_path / "results" / "claims" / "gla.md"
    stale.write_text(stale.read_text().replace("does not hold", "holds"))
    out = runner.invoke(app, ["summary", "--check", "README.md"])
    assert out.exit_code == 1 and "gla.md is stale" in out.output
    assert runner.invoke(app, ["summary", "--write", "README.md"]).exit_code == 0
    assert runner.invoke(app, ["summary", "--check", "README.md"]).exit_code == 0


def test_a_check_on_a_studys_secondary_metric_reads_that_metrics_table(results):
    """A study's ``also:`` metric has its own table (table_hr_at_10.csv beside table.csv): a
    check on that metric reads it, and the claims file links it; the headline metric still
    reads table.csv, and a metric with neither is the one-line mismatch error."""
    from recbench.studies.schema import table_stem

    folder = results / "err"
    secondary = results / "tmp-hr"
    _table(results, "tmp-hr", "hr@10", [Cell("m", "d", "ref", [0.30], []),
                                        Cell("m", "d", "worse", [0.20], [], p_value=0.001,
                                             p_holm=0.001)])
    (folder / f"{table_stem('hr@10')}.csv").write_text((secondary / "table.csv").read_text())
    (folder / f"{table_stem('hr@10')}.md").write_text("# hr@10\n")
    held = _verdict(results, kind="compare", study="err", metric="hr@10", rows=["ref", "worse"],
                    expect=">")
    assert held.verdict == claims.HOLDS and "0.3000" in held.figures
    assert _verdict(results, kind="compare", study="err", metric="rmse", rows=["ref", "worse"],
                    expect="<").verdict == claims.HOLDS
    with pytest.raises(ConfigError, match="the check says mrr"):
        _verdict(results, kind="compare", study="err", metric="mrr", rows=["ref", "worse"],
                 expect=">")


def test_a_check_with_a_reference_reads_the_table_written_against_that_row(results):
    """Issue 33: a compare of two rows neither of which is the study's reference reads the
    table `versus:` writes against one of them (table_vs_ROW.csv), so its paired test decides;
    without that table the claim is one line naming the missing `versus:` entry."""
    from recbench.studies.schema import versus_stem

    check = dict(kind="compare", study="err", metric="rmse", rows=["close", "worse"],
                 expect="<")
    plain = _verdict(results, **check)
    assert plain.verdict == claims.HOLDS and "no paired test" in plain.figures
    _table(results, "tmp-vs", "rmse", [Cell("m", "d", "worse", [0.95, 0.95], []),
                                       Cell("m", "d", "close", [0.899], [], p_value=0.30,
                                            p_holm=0.30)])
    stem = versus_stem("table", "worse")
    (results / "err" / f"{stem}.csv").write_text((results / "tmp-vs" / "table.csv").read_text())
    (results / "err" / f"{stem}.md").write_text("# vs worse\n")
    paired = _verdict(results, **check, reference="worse")
    assert paired.verdict == claims.FAILS and "p Holm 0.3" in paired.figures
    with pytest.raises(ConfigError, match="versus") as err:
        _verdict(results, **check, reference="close")
    assert "\n" not in str(err.value)


def test_a_ledger_started_beside_a_transcribed_table_is_not_called_regenerable(results):
    """A study whose ledger holds the cells already rerun while its table still lists runs/
    folders (the rest not rerun yet) is transcribed until the table is read from the ledger."""
    check = dict(kind="compare", study="rec", metric="recall@10", rows=["4", "2"], expect=">")
    (results / "rec" / "ledger").mkdir()
    (results / "rec" / "runs.txt").write_text("[m | 1]\n  runs/m/20261123-090437-ddd1d1ddc9\n"
                                              "[m | 2]\n  results/rec/ledger/m/0123456789\n")
    assert not _verdict(results, **check).regenerable
    (results / "rec" / "runs.txt").write_text("[m | 1]\n  results/rec/ledger/m/9876543210\n"
                                              "[m | 2]\n  results/rec/ledger/m/0123456789\n")
    assert _verdict(results, **check).regenerable
    (results / "rec" / "runs.txt").write_text("[m | 1]\n  results/other/ledger/m/9876543210\n")
    assert not _verdict(results, **check).regenerable  # another study's record: not its own
