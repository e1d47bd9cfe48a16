"""The README summary: generated from study tables, tolerant of missing ones, never out of date."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from recbench import summary
from recbench.cli import app
from recbench.errors import ConfigError, RecbenchError
from recbench.stats import Interval
from recbench.studies import Cell, StudyConfig, StudyResult
from recbench.studies.report import csv_text

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _study_table(folder: Path, metric: str, cells: list[Cell], split: str = "test") -> None:
    """A results/<study>/ folder whose table.csv is written by the real study writer."""
    study = StudyConfig(study=folder.name, base=["x.yaml"], split=split)
    result = StudyResult(study=study, metric=metric, reference=cells[0].variant, cells=cells,
                         numeric_axis=False)
    folder.mkdir(parents=True)
    (folder / "table.csv").write_text(csv_text(result))
    (folder / "table.md").write_text("# table\n")


@pytest.fixture
def fake(tmp_path: Path):
    """results/ with two study tables, one script-format table, and a study file marked valid."""
    results, studies = tmp_path / "results", tmp_path / "studies"
    _study_table(results / "alpha", "rmse", [
        Cell("m-ml100k", "ml-100k", "ref", [0.90, 0.92], [], paper=0.89,
             ci=Interval(0.91, 0.88, 0.94, 100), verdict="inside"),
        Cell("m-ml100k", "ml-100k", "one", [0.95], [], paper=None),
        Cell("m-ml100k", "ml-100k", "idle", [], [], paper=0.80),
        Cell("m-ml100k", "ml-100k", "AD", [0.10], [], paper=0.30, below=("GD", 0.14)),
    ])
    _study_table(results / "beta", "recall@15", [Cell("g-ml100k", "ml-100k", "AD", [0.2], [])])
    studies.mkdir()
    (studies / "beta.yaml").write_text("study: beta\nbase: [x.yaml]\nsplit: valid\n")
    (results / "script").mkdir()
    (results / "script" / "table.csv").write_text("dataset,method,hr@10\nml-100k,AD,0.3\n")

    def row(label, study, variant, metric="rmse", experiment="m-ml100k"):
        return {"label": label, "study": study, "experiment": experiment, "variant": variant,
                "metric": metric}

    config = {"papers": [
        {"title": "Paper A", "doc": "docs/a.md", "note": "Words\n only.", "rows": [
            row("ref", "alpha", "ref"), row("single", "alpha", "one"), row("idle", "alpha", "idle"),
            row("guarded", "alpha", "AD"), row("missing", "never-run", "ref"),
            row("typo", "alpha", "nope"), row("wrong metric", "alpha", "ref", metric="mae"),
            row("script", "script", "AD")]},
        {"title": "Paper B", "rows": [row("valid", "beta", "AD", "recall@15", "g-ml100k")]},
    ]}
    path = tmp_path / "papers.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return summary.load_config(path), results, studies, tmp_path


def _lines(markdown: str) -> dict[str, list[str]]:
    """Table lines by their label (first cell)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| result"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells
    return rows


def test_figures_come_from_the_table(fake):
    config, results, studies, root = fake
    made = summary.render(config, results, studies, link_root=root)
    rows = _lines(made.markdown)
    assert rows["ref"] == ["ref", "ml-100k", "rmse", "0.9100 ± 0.0141", "2", "0.89", "+0.0200",
                           "[0.8800, 0.9400]", "inside", "[alpha](results/alpha/table.md)"]
    assert rows["single"][3:9] == ["0.9500", "1", "—", "—", "—", "—"]  # no interval, no paper
    assert rows["guarded"][3] == "0.1000 ⚠ below GD 0.1400"
    assert rows["guarded"][6] == "-0.2000"
    assert "### Paper A ([a.md](docs/a.md))" in made.markdown
    assert "\nWords only.\n" in made.markdown


def test_a_row_of_a_secondary_metric_reads_that_metrics_table(fake):
    """Issue 34: a row whose metric is not table.csv's reads the study's table of that
    metric (table_hr_at_10.csv, as `also: [hr@10]` writes it) and links to its .md; a metric
    without such a table keeps the "(table reports …)" marker."""
    config, results, studies, root = fake
    hr = [Cell("m-ml100k", "ml-100k", "ref", [0.30, 0.34], [], ci=Interval(0.32, 0.29, 0.35, 100)),
          Cell("m-ml100k", "ml-100k", "one", [0.25], [], p_holm=0.01)]
    study = StudyConfig(study="alpha", base=["x.yaml"])
    text = csv_text(StudyResult(study=study, metric="hr@10", reference="ref", cells=hr,
                                numeric_axis=False))
    (results / "alpha" / "table_hr_at_10.csv").write_text(text)
    (results / "alpha" / "table_hr_at_10.md").write_text("# hr@10\n")
    config.papers[0].rows.append(summary.Row(label="ref hr", study="alpha", experiment="m-ml100k",
                                             variant="ref", metric="hr@10"))
    made = summary.render(config, results, studies, link_root=root)
    rows = _lines(made.markdown)
    assert rows["ref hr"] == ["ref hr", "ml-100k", "hr@10", "0.3200 ± 0.0283", "2", "—", "—",
                              "[0.2900, 0.3500]", "—",
                              "[alpha](results/alpha/table_hr_at_10.md)"]
    assert rows["ref"][3] == "0.9100 ± 0.0141"  # rmse rows still read table.csv
    assert rows["wrong metric"][3] == "(table reports rmse)"  # no table_mae.csv
    assert not any("ref hr" in p for p in made.problems)


def test_a_validation_table_is_labelled_as_such(fake):
    config, results, studies, root = fake
    rows = _lines(summary.render(config, results, studies, link_root=root).markdown)
    assert rows["valid"][2] == "recall@15 (validation)"


def test_what_the_tables_cannot_give_is_a_marker_and_a_warning(fake):
    config, results, studies, root = fake
    made = summary.render(config, results, studies, link_root=root)
    rows = _lines(made.markdown)
    assert rows["idle"][3] == "(not run)" and rows["idle"][5] == ""
    assert rows["missing"][3] == "(not run)" and rows["missing"][9] == "`never-run`"
    assert rows["typo"][3] == "(no such row)"
    assert rows["wrong metric"][3] == "(table reports rmse)"
    assert rows["script"][3] == "(unreadable table)"
    assert len(made.problems) == 5 and any("never-run" in p for p in made.problems)


def test_write_replaces_only_the_block(fake, tmp_path):
    config, results, studies, root = fake
    block = summary.render(config, results, studies, link_root=root).markdown
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\nintro\n{summary.START}\nold by hand\n{summary.END}\n\n## after\n")
    assert summary.write(readme, block) is True
    text = readme.read_text()
    assert text.startswith("# t\n\nintro\n") and text.endswith(f"{summary.END}\n\n## after\n")
    assert "old by hand" not in text and summary.current_block(text) == block
    assert summary.write(readme, block) is False  # idempotent
    assert not list(tmp_path.glob(".README.md.tmp"))


@pytest.mark.parametrize("text", ["no markers\n", f"{summary.END}\nx\n{summary.START}\n",
                                  f"{summary.START}\n{summary.START}\n{summary.END}\n"])
def test_bad_markers_are_an_error(text):
    with pytest.raises(RecbenchError, match="summary:start"):
        summary.splice(text, "block\n")


def test_bad_config_is_one_config_error(tmp_path):
    path = tmp_path / "papers.yaml"
    path.write_text("papers:\n  - title: A\n    rows:\n      - {label: x, study: s, variant: v}\n")
    with pytest.raises(ConfigError, match="experiment"):
        summary.load_config(path)
    with pytest.raises(ConfigError, match="no such summary file"):
        summary.load_config(tmp_path / "absent.yaml")


def test_cli_write_check_and_errors(fake, tmp_path, monkeypatch):
    config_path = tmp_path / "papers.yaml"
    _, results, studies, root = fake
    monkeypatch.chdir(root)
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{summary.START}\n{summary.END}\n")
    common = ["--config", str(config_path), "--results-dir", "results", "--studies-dir",
              str(studies)]
    stale = runner.invoke(app, ["summary", "--check", str(readme), *common])
    assert stale.exit_code == 1 and "stale" in stale.output and "Traceback" not in stale.output
    wrote = runner.invoke(app, ["summary", "--write", str(readme), *common])
    assert wrote.exit_code == 0, wrote.output
    assert "[alpha](results/alpha/table.md)" in readme.read_text()
    fresh = runner.invoke(app, ["summary", "--check", str(readme), *common])
    assert fresh.exit_code == 0, fresh.output
    printed = runner.invoke(app, ["summary", *common])
    assert printed.exit_code == 0 and "| ref | ml-100k |" in printed.output
    (tmp_path / "plain.md").write_text("no markers\n")
    bad = runner.invoke(app, ["summary", "--write", str(tmp_path / "plain.md"), *common])
    assert bad.exit_code == 2 and bad.output.lstrip().startswith("error:")
    assert "Traceback" not in bad.output


def _committed():
    config = summary.load_config(ROOT / "experiments" / "summary" / "papers.yaml")
    return summary.render(config, ROOT / "results", ROOT / "experiments" / "studies",
                          link_root=ROOT)


def test_committed_readme_matches_committed_results():
    """The README's generated block is what `recbench summary` makes from results/ today."""
    block = summary.current_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block == _committed().markdown, (
        "README.md's summary is stale: run `recbench summary --write README.md`")


def test_every_committed_block_has_a_protocol_card_from_the_configs():
    made = _committed().markdown
    blocks = made.split("\n### ")[1:]
    assert blocks and all("**Protocol** (derived from the resolved configs" in b for b in blocks)
    gla = next(b for b in blocks if b.startswith("Global/local attention"))
    assert "sampled: the held-out item among 99 stored negatives per user" in gla
    assert "final epoch (fixed schedule, no validation split) [gl_attention-ml100k" in gla
    glocal = next(b for b in blocks if b.startswith("GLocal-K"))
    assert "- ranking: rating prediction: rmse over the test ratings" in glocal


def test_committed_selectors_all_find_their_rows():
    """A typo in papers.yaml shows as a marker; only a study cell never run may stay empty."""
    problems = _committed().problems
    assert all("no finished run" in p for p in problems), problems


def test_committed_summary_reports_test_figures_only():
    config = summary.load_config(ROOT / "experiments" / "summary" / "papers.yaml")
    for paper in config.papers:
        for row in paper.rows:
            path = ROOT / "experiments" / "studies" / f"{row.study}.yaml"
            if path.is_file():
                assert yaml.safe_load(path.read_text()).get("split", "test") == "test", row


def test_composite_rows_say_what_they_evaluated_and_whether_the_head_beats_a_single_space(
        tmp_path):
    """Issue 34: the label carries the table's 'evaluated' column, and a generated sentence
    per dataset says plainly whether the trained head beats its best single space on
    validation (from the table's valid_* columns, never typed)."""
    from recbench.composite import Choice

    def choice(evaluated, head, gd, ld):
        return Choice(evaluated, {"head": head, "uniform": 0.1, "ensemble": 0.2,
                                  "GD": gd, "LD": ld})

    cells = [Cell("g-ml", "ml-100k", "AD", [0.18, 0.19], [Path("a"), Path("b")],
                  choices=[choice("ensemble", 0.20, 0.21, 0.22), choice("head", 0.18, 0.20, 0.20)]),
             Cell("g-ml", "ml-100k", "AP", [0.20, 0.21], [Path("a"), Path("b")],
                  choices=[choice("head", 0.30, 0.21, 0.22), choice("GD", 0.25, 0.26, 0.20)]),
             Cell("p-ml", "ml-100k", "AD", [0.10], [Path("c")], choices=[Choice("head", {})]),
             Cell("g-ye", "yelp", "AD", [0.30], [Path("d")], choices=[choice("head", 0.5, 0.4, 0.3)])]
    study = StudyConfig(study="reps", base=["x.yaml"], rows=["AD", "AP"])
    result = StudyResult(study=study, metric="recall@15", reference="AD", cells=cells,
                         numeric_axis=False)
    folder = tmp_path / "results" / "reps"
    folder.mkdir(parents=True)
    (folder / "table.csv").write_text(csv_text(result))
    rows = [{"label": f"{v} {e}", "study": "reps", "experiment": e, "variant": v,
             "metric": "recall@15"} for e, v in [("g-ml", "AD"), ("g-ml", "AP"), ("p-ml", "AD"),
                                                  ("g-ye", "AD")]]
    config = summary.SummaryConfig(papers=[{"title": "GLA", "rows": rows}])
    made = summary.render(config, tmp_path / "results", None, link_root=tmp_path).markdown
    labels = list(_lines(made))
    assert labels == ["AD g-ml — evaluated: ensemble, head", "AP g-ml — evaluated: head, GD",
                      "AD p-ml — evaluated: head", "AD g-ye — evaluated: head"]
    # pooled: AD head 0.19 vs LD 0.21 (GD 0.205); AP head 0.275 vs GD 0.235; yelp 0.5 vs GD 0.4
    assert "- ml-100k (reps): only for AP, not for AD — AD head 0.1900 ≤ LD 0.2100; " \
           "AP head 0.2750 > GD 0.2350." in made
    assert "- yelp (reps): yes — AD head 0.5000 > GD 0.4000." in made
    assert made.count("(reps):") == 2  # the row without a selector adds no claim
