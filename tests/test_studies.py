"""The studies engine on tiny data: caching, resume, aggregation by hand, --jobs parity."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from recbench import runs, studies
from recbench.studies import report, tables
from tests.conftest import write_experiment


def _study(tmp_path, **extra) -> studies.StudyConfig:
    exp = write_experiment(tmp_path, "tiny-bpr")
    body = {"study": "dims", "description": "embedding size", "base": [str(exp)],
            "vary": {"model.emb_dim": [4, 8]}, "seeds": [0, 1], "metric": "recall@5",
            "paper": {"tiny": {"8": 0.5}}, **extra}
    (tmp_path / "studies").mkdir(exist_ok=True)
    (tmp_path / "studies" / "dims.yaml").write_text(yaml.safe_dump(body))
    return studies.load_study(tmp_path / "studies", "dims")


def test_study_runs_then_caches(tmp_path, tiny_paths):
    study = _study(tmp_path)
    root = tmp_path / "runs"
    plan = studies.plan(study, root)
    assert len(plan) == 4 and all(p.cached is None for p in plan)
    assert studies.execute(plan, tiny_paths, root) == []
    again = studies.plan(study, root)
    assert all(p.cached is not None for p in again)
    done = []
    studies.execute(again, tiny_paths, root, on_done=lambda p, s: done.append(s))
    assert done == ["cached"] * 4


def test_interrupted_study_runs_only_the_missing(tmp_path, tiny_paths):
    study = _study(tmp_path)
    root = tmp_path / "runs"
    plan = studies.plan(study, root)
    studies.execute(plan[:1], tiny_paths, root)  # "killed" after the first run
    plan = studies.plan(study, root)
    assert sum(p.cached is not None for p in plan) == 1
    ran = []
    studies.execute(plan, tiny_paths, root, on_done=lambda p, s: ran.append(s))
    assert sum(r.startswith("done") for r in ran) == 3 and ran.count("cached") == 1


def test_aggregate_equals_hand_computation(tmp_path, tiny_paths):
    study = _study(tmp_path)
    root = tmp_path / "runs"
    studies.execute(studies.plan(study, root), tiny_paths, root)
    result = studies.aggregate(study, studies.plan(study, root))
    for cell in result.cells:
        values = [runs.read_metrics(d)["test"]["recall@5"] for d in cell.run_dirs]
        assert cell.mean == pytest.approx(np.mean(values))
        assert cell.std == pytest.approx(np.std(values, ddof=1))
    eight = next(c for c in result.cells if c.variant == "8")
    assert eight.paper == 0.5 and eight.p_value is not None
    out = report.write_study(result, tmp_path / "results" / "dims")
    for name in ("table.md", "table.csv", "table.tex", "plot.png", "runs.txt"):
        assert (out / name).is_file()
    assert "0.5000" in (out / "table.md").read_text()


def test_jobs_two_gives_the_same_table(tmp_path, tiny_paths):
    study = _study(tmp_path)
    one, two = tmp_path / "r1", tmp_path / "r2"
    studies.execute(studies.plan(study, one), tiny_paths, one, jobs=1)
    assert studies.execute(studies.plan(study, two), tiny_paths, two, jobs=2) == []
    a = report.csv_text(studies.aggregate(study, studies.plan(study, one)))
    b = report.csv_text(studies.aggregate(study, studies.plan(study, two)))
    assert a == b


def test_a_failing_variant_does_not_stop_the_others(tmp_path, tiny_paths):
    study = _study(tmp_path, vary={"model.emb_dim": [8]},
                   variants={"broken": {"dataset.split": "nope", "dataset.protocol": "fixed"}})
    root = tmp_path / "runs"
    failures = studies.execute(studies.plan(study, root), tiny_paths, root)
    assert {p.variant for p, _ in failures} == {"broken"}
    assert sum(p.cached is not None for p in studies.plan(study, root)) == 2


def test_adhoc_sweep_parses_value_lists(tmp_path):
    exp = write_experiment(tmp_path, "e")
    study = studies.adhoc(exp, ["model.emb_dim=4,8,16", "train.lr=0.01"], "0,1", None, None)
    assert study.vary == {"model.emb_dim": [4, 8, 16], "train.lr": [0.01]}
    assert study.seeds == [0, 1] and study.study == "sweep-e-emb_dim-lr"


def test_duplicate_study_names_are_rejected(tmp_path):
    from recbench.errors import ConfigError

    (tmp_path / "s").mkdir()
    for f in ("a.yaml", "b.yaml"):
        (tmp_path / "s" / f).write_text("study: same\nbase: [x.yaml]\n")
    with pytest.raises(ConfigError, match="unique"):
        studies.list_studies(tmp_path / "s")


def test_select_subsets_seeds_and_variants_and_rejects_unknown(tmp_path):
    from recbench.errors import ConfigError

    plan = studies.plan(_study(tmp_path), tmp_path / "runs")
    assert {(p.variant, p.seed) for p in studies.select(plan, "1", None)} == {("4", 1), ("8", 1)}
    assert {(p.variant, p.seed) for p in studies.select(plan, None, "8")} == {("8", 0), ("8", 1)}
    assert studies.select(plan, None, None) == plan
    for seeds, variants in (("7", None), ("x", None), (None, "16")):
        with pytest.raises(ConfigError, match="only-"):
            studies.select(plan, seeds, variants)


def test_a_variant_names_its_own_seeds_and_keeps_the_one_seed_runs_cached(tmp_path):
    """Pilots at one seed, headline rows at three (gowalla-mf-schedule): without a study-level
    ``seeds`` each variant plans its experiment's ``seeds`` list, and that list is outside the
    run hash, so seed 0 of a row given more seeds is the run it was before."""
    one = _study(tmp_path, seeds=[0], variants={"pilot": {}, "head": {}}, vary={})
    body = yaml.safe_load((tmp_path / "studies" / "dims.yaml").read_text())
    del body["seeds"]
    body["set"] = {"seeds": [0]}
    body["variants"] = {"pilot": {}, "head": {"seeds": [0, 1, 2]}}
    (tmp_path / "studies" / "dims.yaml").write_text(yaml.safe_dump(body))
    mixed = studies.load_study(tmp_path / "studies", "dims")
    planned = studies.plan(mixed, tmp_path / "runs")
    assert sorted((p.variant, p.seed) for p in planned) == [
        ("head", 0), ("head", 1), ("head", 2), ("pilot", 0)]
    before = {p.variant: p.hash for p in studies.plan(one, tmp_path / "runs")}
    assert {p.variant: p.hash for p in planned if p.seed == 0} == before
    assert {p.seed for p in studies.select(planned, "2", None)} == {2}
    card = "\n".join(tables.protocol_card(studies.aggregate(mixed, planned)))
    assert "- seeds: 0, 1, 2 [head] · 0 [pilot] planned" in card


def test_extra_columns_by_hand(tmp_path, tiny_paths):
    study = _study(tmp_path, columns=["recall@5", "extra.no_such_key", "epochs_run"])
    root = tmp_path / "runs"
    studies.execute(studies.plan(study, root), tiny_paths, root)
    result = studies.aggregate(study, studies.plan(study, root))
    eight = next(c for c in result.cells if c.variant == "8")
    values, p = eight.columns["recall@5"]
    assert values == eight.values and p == eight.p_value  # same metric, same pairing
    assert eight.columns["extra.no_such_key"] == ([], None)
    epochs = [runs.read_metrics(d)["epochs_run"] for d in eight.run_dirs]
    assert eight.columns["epochs_run"][0] == [float(e) for e in epochs]
    out = report.write_study(result, tmp_path / "results" / "dims")
    text = (out / "extra.md").read_text()
    assert "| extra.no_such_key |" in text.splitlines()[4].replace("recall@5 | ", "")
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in text


def _fake_run(folder, test: dict, valid: dict | None = None):

    folder.mkdir(parents=True)
    body = {"test": test, "monitor": "progress", "extra": {"valid": valid or {}}}
    (folder / "metrics.json").write_text(json.dumps(body))
    (folder / "config.yaml").write_text("name: fake\n")
    return folder


def _rows_study(**extra) -> studies.StudyConfig:
    body = {"study": "reps", "base": ["a.yaml"], "rows": ["GD", "LD", "AD", "LAD"],
            "metric": "recall@15", "reference": "AD",
            "guard": {"AD": ["GD", "LD"], "LAD": ["LD"]}, "paper": {"ml": {"AD": 0.30}}}
    return studies.StudyConfig(**{**body, **extra})


def _planned(study, run_dirs: dict[str, object], variant: str = "base"):
    return [studies.PlannedRun("exp-" + name, "ml", variant, 0, None, "h", d)
            for name, d in run_dirs.items()]


def test_rows_study_reads_one_run_per_row_and_marks_attentive_rows_below_a_single_space(
        tmp_path):
    paper = _fake_run(tmp_path / "p", {"recall@15|GD": 0.14, "recall@15|LD": 0.04,
                                       "recall@15|AD": 0.10, "recall@15|LAD": 0.05})
    sound = _fake_run(tmp_path / "s", {"recall@15|GD": 0.15, "recall@15|LD": 0.17,
                                       "recall@15|AD": 0.18, "recall@15|LAD": 0.17})
    study = _rows_study()
    result = studies.aggregate(study, _planned(study, {"paper": paper, "sound": sound}))
    cells = {(c.base, c.variant): c for c in result.cells}
    assert len(cells) == 8 and cells[("exp-paper", "AD")].values == [0.10]
    assert cells[("exp-paper", "AD")].below == ("GD", 0.14)  # below its best single space
    assert cells[("exp-paper", "LAD")].below is None  # LAD 0.05 ≥ LD 0.04
    assert cells[("exp-sound", "AD")].below is None
    assert cells[("exp-sound", "LAD")].below is None  # equal is not below
    assert cells[("exp-paper", "AD")].paper == 0.30
    md = report.markdown(result)
    assert md.count("⚠ below best single space") == 1
    assert "0.1000 ⚠ below best single space (GD 0.1400)" in md
    rows = list(csv.DictReader(io.StringIO(report.csv_text(result))))
    assert sum(r["guard"] == "below GD 0.140000" for r in rows) == 1


def test_rows_study_with_variants_and_the_validation_split(tmp_path):
    run = _fake_run(tmp_path / "r", {"recall@15|GD": 0.9}, valid={
        "recall@15|GD": 0.2, "recall@15|LD": 0.1, "recall@15|AD": 0.15, "recall@15|LAD": 0.3})
    study = _rows_study(split="valid")
    result = studies.aggregate(study, _planned(study, {"x": run}, variant="uniform"))
    cells = {c.variant: c for c in result.cells}
    assert set(cells) == {"uniform · GD", "uniform · LD", "uniform · AD", "uniform · LAD"}
    assert cells["uniform · GD"].values == [0.2]  # validation, not test
    assert cells["uniform · AD"].below == ("GD", 0.2)
    assert "(valid split;" in report.markdown(result)


def test_guard_is_silent_without_a_guard_and_for_unrun_rows(tmp_path):
    run = _fake_run(tmp_path / "r", {"recall@15|GD": 0.3, "recall@15|LD": 0.1,
                                     "recall@15|AD": 0.1, "recall@15|LAD": 0.1})
    study = _rows_study(guard={})
    result = studies.aggregate(study, _planned(study, {"x": run}))
    assert all(c.below is None for c in result.cells)
    study = _rows_study()
    result = studies.aggregate(study, _planned(study, {"x": run, "y": None}))
    assert all(c.below is None for c in result.cells if c.base == "exp-y")


def test_ledger_reproduces_the_table_without_the_runs(tmp_path, tiny_paths):
    """A fresh clone has the committed ledger but no runs/: the table comes back identical,
    nothing is retrained, and only the runs the ledger lacks would run."""
    import shutil

    study = _study(tmp_path)
    root, ledger = tmp_path / "runs", tmp_path / "results" / "dims" / studies.LEDGER
    studies.execute(studies.plan(study, root, ledger), tiny_paths, root)
    planned = studies.plan(study, root, ledger)
    result = studies.aggregate(study, planned)
    assert studies.write_ledger(result, planned, ledger) == 4
    assert studies.write_ledger(result, planned, ledger) == 0  # nothing new to record
    table = report.csv_text(result)
    record = next(ledger.glob("*/*/per_unit.npz"))
    assert set(np.load(record).files) <= {"recall@5", "user", "index"}  # only what the table reads
    shutil.rmtree(root)  # the fresh clone
    again = studies.plan(study, root, ledger)
    assert all(p.cached is not None and ledger in p.cached.parents for p in again)
    ran = []
    studies.execute(again, tiny_paths, root, on_done=lambda p, s: ran.append(s))
    assert ran == ["cached"] * 4 and not root.exists()
    result_again = studies.aggregate(study, again)
    assert report.csv_text(result_again) == table  # p-values included
    assert studies.write_ledger(result_again, again, ledger) == 0
    # a record whose run left the plan (here: a seed dropped) is kept, and not read
    fewer = _study(tmp_path, seeds=[0])
    kept = studies.plan(fewer, root, ledger)
    studies.write_ledger(studies.aggregate(fewer, kept), kept, ledger)
    assert len(list(ledger.glob("*/*"))) == 4 and len(kept) == 2


def test_a_trained_study_writes_what_a_report_only_rebuild_writes(tmp_path, tiny_paths):
    """Issue 34: after training, runs.txt named the local runs/ folders, which no other
    checkout has, and a report-only rebuild from the ledger wrote other bytes. The study files
    are now written from the ledger's records: trained and rebuilt, they are byte-identical."""
    from recbench import study_session

    study = _study(tmp_path)
    results, root = tmp_path / "results", tmp_path / "runs"
    session = study_session.open_study(study, root, results, data=tiny_paths)
    studies.execute(session.plan, tiny_paths, root)
    _, recorded = study_session.report_study(session)
    assert recorded == 4
    folder = results / "dims"
    names = ["table.md", "table.csv", "table.tex", "runs.txt", "plot.png"]
    trained = {n: (folder / n).read_bytes() for n in names}
    listed = [line.strip() for line in trained["runs.txt"].decode().splitlines()
              if not line.startswith("[")]
    assert len(listed) == 4 and all(Path(x).parent.parent == folder / studies.LEDGER
                                    for x in listed)
    for n in names:
        (folder / n).unlink()
    empty = tmp_path / "empty-runs"  # a fresh clone: the ledger, no runs
    again = study_session.open_study(study, empty, results, data=tiny_paths)
    assert again.cached == 4
    _, recorded = study_session.report_study(again)
    assert recorded == 0
    assert [n for n in names if (folder / n).read_bytes() != trained[n]] == []


def test_a_run_another_study_recorded_is_borrowed_and_copied_into_this_ledger(tmp_path,
                                                                             tiny_paths):
    """A ledger record stands for its config hash whichever study trained it: a second study
    planning the same config finds it in the first study's ledger, trains nothing, and copies
    the record into its own ledger so its table stays reproducible on its own."""
    import shutil

    study = _study(tmp_path)
    root, results = tmp_path / "runs", tmp_path / "results"
    first = results / "dims" / studies.LEDGER
    studies.execute(studies.plan(study, root, first), tiny_paths, root)
    planned = studies.plan(study, root, first)
    studies.write_ledger(studies.aggregate(study, planned), planned, first)
    shutil.rmtree(root)
    second = results / "dims-again" / studies.LEDGER
    borrowed = studies.plan(study, root, second)
    assert all(p.cached is not None and first in p.cached.parents for p in borrowed)
    assert studies.write_ledger(studies.aggregate(study, borrowed), borrowed, second) == 4
    assert all(second in p.cached.parents for p in studies.plan(study, root, second))
    assert studies.other_ledgers(second) == [first]


def test_select_by_base_experiment(tmp_path):
    from recbench.errors import ConfigError

    plan = studies.plan(_study(tmp_path), tmp_path / "runs")
    name = plan[0].base
    assert studies.select(plan, None, None, name) == plan
    with pytest.raises(ConfigError, match="only-experiments.*not among"):
        studies.select(plan, None, None, "no-such-experiment")


def test_refresh_keeps_the_plans_configs_when_a_base_file_changes(tmp_path, tiny_paths):
    """The table at the end of a study is written from the configs planned at its start, even
    if the base experiment file was edited while it ran."""
    study = _study(tmp_path)
    root = tmp_path / "runs"
    planned = studies.plan(study, root)
    studies.execute(planned, tiny_paths, root)
    exp = next((tmp_path).glob("**/tiny-bpr*.yaml"))
    exp.write_text(exp.read_text().replace("lr:", "lr: 0.5 #"))  # an edit mid-study
    assert [p.hash for p in studies.plan(study, root)] != [p.hash for p in planned]
    done = studies.refresh(planned, root)
    assert [p.hash for p in done] == [p.hash for p in planned]
    assert all(p.cached is not None for p in done)


def _seeds_study(tmp_path, **exp_sections) -> studies.StudyConfig:
    """A study that takes its seeds from the experiment file (its `seeds` list)."""
    exp = write_experiment(tmp_path, "tiny-bpr", **exp_sections)
    body = {"study": "s", "base": [str(exp)], "vary": {"model.emb_dim": [8]}, "metric": "recall@5"}
    (tmp_path / "studies").mkdir(exist_ok=True)
    (tmp_path / "studies" / "s.yaml").write_text(yaml.safe_dump(body))
    return studies.load_study(tmp_path / "studies", "s")


def test_run_hash_ignores_what_changes_no_number(tmp_path, tiny_paths):
    """Adding a seed, correcting a paper figure or scoring more users at once keeps the
    finished run cached; a new learning rate is a new run."""
    root = tmp_path / "runs"
    first = studies.plan(_seeds_study(tmp_path), root)
    assert studies.execute(first, tiny_paths, root) == []
    more = studies.plan(_seeds_study(tmp_path, seeds=[0, 1], paper={"recall@5": 0.3},
                                     eval={"batch_size": 7}), root)
    assert [(p.seed, p.cached is not None) for p in more] == [(0, True), (1, False)]
    assert more[0].hash == first[0].hash and more[0].cached == studies.refresh(first, root)[0].cached
    other = studies.plan(_seeds_study(tmp_path, train={"lr": 0.01}), root)
    assert other[0].cached is None and other[0].hash != first[0].hash


def _to_legacy_name(folder):
    """Rename a run folder or ledger record to the hash it had before HASH_EXCLUDED."""
    from recbench.config import legacy_hash_plain

    old = legacy_hash_plain(runs.read_config(folder))
    name = folder.name[: -len(old)] + old if "-" in folder.name else old
    return folder.rename(folder.with_name(name))


def test_legacy_hash_runs_and_ledger_records_are_still_found(tmp_path, tiny_paths):
    import shutil

    from recbench.runner import load_run_config

    study = _seeds_study(tmp_path)
    root, ledger = tmp_path / "runs", tmp_path / "results" / "s" / studies.LEDGER
    planned = studies.plan(study, root, ledger)
    studies.execute(planned, tiny_paths, root)
    run = _to_legacy_name(studies.plan(study, root)[0].cached)
    assert not run.name.endswith(planned[0].hash)
    found = studies.plan(study, root, ledger)
    assert found[0].cached == run  # found by the hash of its config.yaml
    assert load_run_config(run).seed == 0  # the folder's legacy hash still verifies
    result = studies.aggregate(study, found)
    assert studies.write_ledger(result, found, ledger) == 1
    record = _to_legacy_name(next(ledger.glob("*/*")))
    shutil.rmtree(root)  # a fresh clone: only the committed (legacy-named) record
    again = studies.plan(study, root, ledger)
    assert again[0].cached == record
    before = sorted(p.relative_to(ledger) for p in ledger.rglob("*"))
    assert studies.write_ledger(studies.aggregate(study, again), again, ledger) == 0
    assert sorted(p.relative_to(ledger) for p in ledger.rglob("*")) == before


def _fake_full_run(folder, test: dict, **top):

    folder.mkdir(parents=True)
    body = {"test": test, "monitor": "rmse", "extra": top.pop("extra", {}), **top}
    (folder / "metrics.json").write_text(json.dumps(body))
    (folder / "config.yaml").write_text("name: fake\n")
    return folder


def test_extra_tables_per_run_per_cell_and_several_keys_of_one_run(tmp_path):
    """What scripts/glocal_test_selected.py, bench/gnn_study_details.py and
    scripts/gla_tables.py wrote, from the study's `tables:` on fake run folders."""
    a0 = _fake_full_run(tmp_path / "a0", {"rmse": 0.90}, seconds_per_epoch=1.234, epochs_run=40,
                        extra={"test_selected_rmse": 0.88, "test_selected_epoch": 60})
    a1 = _fake_full_run(tmp_path / "a1", {"rmse": 0.92}, seconds_per_epoch=1.0, epochs_run=35,
                        extra={"test_selected_rmse": 0.89, "test_selected_epoch": 65})
    b0 = _fake_full_run(tmp_path / "b0", {"rmse": 0.95}, seconds_per_epoch=2.0, epochs_run=40,
                        extra={})
    study = studies.StudyConfig(
        study="k", base=["a.yaml"], metric="rmse", reference="3",
        paper={"ml": {"3": 0.89}},
        tables=[{"file": "test_selected.md", "title": "final vs selected", "note": "diagnosis",
                 "columns": {"final": "rmse", "selected": "extra.test_selected_rmse",
                             "gap": {"key": "rmse - extra.test_selected_rmse", "format": "+.4f"},
                             "epoch": {"key": "extra.test_selected_epoch", "format": ".0f"}}},
                {"file": "details.md", "title": "per run", "per": "run",
                 "columns": {"s/epoch": {"key": "seconds_per_epoch", "format": ".2f"},
                             "epochs": {"key": "epochs_run", "format": ".0f"}}}])
    planned = [studies.PlannedRun("exp", "ml", "3", 0, None, "h", a0),
               studies.PlannedRun("exp", "ml", "3", 1, None, "h", a1),
               studies.PlannedRun("exp", "ml", "5", 0, None, "h", b0),
               studies.PlannedRun("exp", "ml", "7", 0, None, "h", None)]
    result = studies.aggregate(study, planned)
    out = report.write_study(result, tmp_path / "results" / "k")
    selected = (out / "test_selected.md").read_text().splitlines()
    assert selected[0] == "# k: final vs selected" and selected[2] == "diagnosis"
    assert selected[4] == "| experiment | variant | seeds | final | paper final | selected | gap | epoch |"
    assert selected[6] == "| exp | 3 | 2 | 0.9100 | 0.8900 | 0.8850 | +0.0250 | 62 |"  # 62.5 → 62
    assert selected[7] == "| exp | 5 | 1 | 0.9500 |  |  |  |  |"  # no extra: blank
    assert len(selected) == 8  # the unrun variant 7 has no row
    details = (out / "details.md").read_text().splitlines()
    assert details[-3:] == ["| exp | 3 | 0 | 1.23 | 40 |", "| exp | 3 | 1 | 1.00 | 35 |",
                            "| exp | 5 | 0 | 2.00 | 40 |"]
    assert "details.md" in report.study_files(result)


def test_extra_table_of_a_rows_study_reads_every_key_of_one_run(tmp_path):
    """One run reports every representation type and every list length (top-n): rows are
    the types, columns the N, several tables share one file."""
    base = {"recall": 0.1, "hr": 0.5}
    run = _fake_full_run(tmp_path / "r", {f"{m}@{n}|{t}": base[m] + n / 100 + (t == "AD") / 100
                                          for m in base for n in (5, 10) for t in ("GD", "AD")})
    study = studies.StudyConfig(
        study="top", base=["a.yaml"], rows=["GD", "AD"], metric="recall@5",
        tables=[{"file": "by_n.md", "title": f"{m}@N", "spread": True,
                 "columns": {"N = 5": f"{m}@5", "N = 10": f"{m}@10"}} for m in ("recall", "hr")])
    result = studies.aggregate(study, [studies.PlannedRun("gla", "ml", "base", 0, None, "h", run)])
    text = report.extra_tables(result)["by_n.md"]
    assert text.startswith("# top\n\n## recall@N\n")
    assert "| gla | AD | 1 | 0.1600 | 0.2100 |" in text and "| gla | GD | 1 | 0.5500 | 0.6000 |" in text


def test_extra_table_file_may_not_replace_the_study_table():
    with pytest.raises(ValueError, match="study's own table"):
        studies.ExtraTable(file="table.md", title="x", columns={"a": "rmse"})


def test_labels_with_commas_are_selectable():
    """--only-variants "scores, user α,global 250" picks two labels, one with a comma inside."""
    known = {"scores, user α", "scores", "global 250", "a,b,c"}
    assert studies.split_names("scores, user α,global 250", known) == ["scores, user α",
                                                                       "global 250"]
    assert studies.split_names("scores,global 250", known) == ["scores", "global 250"]
    assert studies.split_names("a,b,c", known) == ["a,b,c"]
    assert studies.split_names("a,nope", known) == ["a", "nope"]


def test_rerun_really_trains_again(tmp_path, tiny_paths):
    """Issue 31.4: --rerun said every run would run and printed "done", but the worker found
    the finished run by hash and returned it; now each planned config is trained anew."""
    study = _study(tmp_path, vary={"model.emb_dim": [4]}, seeds=[0])
    root = tmp_path / "runs"
    assert studies.execute(studies.plan(study, root), tiny_paths, root) == []
    first = studies.plan(study, root)[0].cached
    done = []
    assert studies.execute(studies.plan(study, root), tiny_paths, root, rerun=True,
                           on_done=lambda p, s: done.append(s)) == []
    finished = {p for p in (root / "tiny-bpr").iterdir() if runs.is_finished(p)}
    assert len(finished) == 2 and first in finished and done[0].startswith("done")
    assert studies.plan(study, root)[0].cached == (finished - {first}).pop()  # the new one


@pytest.mark.parametrize("extra, message", [
    ({"seeds": [0, 1, 0]}, "seed(s) 0 listed more than once"),
    ({"vary": {"model.emb_dim": [4, 8, 4]}}, "model.emb_dim: value(s) 4 listed more than once"),
    ({"variants": {"8": {"model.emb_dim": 16}}}, "variant label(s) 8 name both"),
])
def test_a_seed_or_variant_listed_twice_is_refused(tmp_path, extra, message):
    """Issue 31.6: a repeated seed or vary value made one run count twice in its cell."""
    from recbench.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        _study(tmp_path, **extra)


def test_sweep_with_repeated_seeds_or_values_and_experiment_seeds_are_refused(tmp_path):
    from recbench.errors import ConfigError
    from recbench.experiment import load_experiment

    exp = write_experiment(tmp_path, "e")
    with pytest.raises(ConfigError, match=r"--seeds: .*seed\(s\) 1 listed more than once"):
        studies.adhoc(exp, ["model.emb_dim=4,8"], "1,1", None, None)
    with pytest.raises(ConfigError, match=r"--set: .*value\(s\) 4 listed more than once"):
        studies.adhoc(exp, ["model.emb_dim=4,4"], None, None, None)
    twice = write_experiment(tmp_path, "t", seeds=[2, 2])
    with pytest.raises(ConfigError, match=r"seeds: seed\(s\) 2 listed more than once"):
        load_experiment(twice)


def test_an_edited_mean_that_per_unit_npz_does_not_restate_is_refused(tmp_path, tiny_paths):
    """Issue 31.10: an edited metrics.json mean was published beside the p-value of the
    unchanged per_unit.npz; aggregation now checks one against the other and names the run."""

    from recbench.errors import RunError

    study = _study(tmp_path, vary={"model.emb_dim": [4]}, seeds=[0])
    root = tmp_path / "runs"
    studies.execute(studies.plan(study, root), tiny_paths, root)
    run = studies.plan(study, root)[0].cached
    assert studies.per_unit_means(run)["recall@5"] == pytest.approx(
        runs.read_metrics(run)["test"]["recall@5"], abs=1e-6)
    studies.aggregate(study, studies.plan(study, root))  # untouched: accepted
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test"]["recall@5"] += 0.01
    (run / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(RunError, match=re.escape(str(run / "metrics.json")) + ".*recall@5"):
        studies.aggregate(study, studies.plan(study, root))


def test_rating_metrics_are_checked_from_squared_errors(tmp_path):
    from recbench.errors import RunError

    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("name: r\n")
    np.savez(run / "per_unit.npz", squared_error=np.array([1.0, 4.0], dtype=np.float32))
    good = {"rmse": float(np.sqrt(2.5)), "mae": 1.5}
    (run / "metrics.json").write_text(__import__("json").dumps({"test": good}))
    studies.check_per_unit(run)
    (run / "metrics.json").write_text(__import__("json").dumps({"test": {**good, "mae": 1.4}}))
    with pytest.raises(RunError, match="mae: reported 1.4, per-unit mean 1.5"):
        studies.check_per_unit(run)


def test_a_run_of_other_data_is_stale_and_trained_again(tmp_path, tiny_paths):
    """Issue 31.5: after `preprocess NAME --from NEW --force` studies reported runs trained on
    the old data as cached. The processed split's content hash is recorded in meta.json and
    in each run's metrics.json, beside the config hash (committed ledgers stay keyed by it),
    and a run of other data no longer counts; a run that recorded none still does."""

    from recbench.data.prepare import data_hash, preprocess, register_custom
    from tests.conftest import make_interactions

    study = _study(tmp_path, vary={"model.emb_dim": [4]}, seeds=[0])
    root = tmp_path / "runs"
    studies.execute(studies.plan(study, root, data=tiny_paths), tiny_paths, root)
    [p] = studies.plan(study, root, data=tiny_paths)
    old = data_hash(p.cfg.dataset, tiny_paths)
    assert p.cached is not None and old and runs.read_metrics(p.cached)["data_hash"] == old
    csv = tmp_path / "new.csv"
    make_interactions(seed=1).to_csv(csv, index=False)
    register_custom(csv, "tiny", tiny_paths, None, None, "rating", "timestamp", force=True)
    preprocess(p.cfg.dataset, tiny_paths)
    new = data_hash(p.cfg.dataset, tiny_paths)
    assert new and new != old
    [stale] = studies.plan(study, root, data=tiny_paths)
    assert stale.hash == p.hash and stale.cached is None and stale.stale  # other data
    assert studies.plan(study, root)[0].cached == p.cached  # without data paths: unknown
    studies.execute([stale], tiny_paths, root)
    [fresh] = studies.plan(study, root, data=tiny_paths)
    assert fresh.cached != p.cached and runs.read_metrics(fresh.cached)["data_hash"] == new
    legacy = json.loads((p.cached / "metrics.json").read_text())
    del legacy["data_hash"]  # a run from before the hash was recorded: cannot tell, counts
    (p.cached / "metrics.json").write_text(json.dumps(legacy))
    assert runs.same_data(p.cached, new)


_ROOT = Path(__file__).resolve().parents[1]
_LEDGERED = sorted(p.parent.name for p in (_ROOT / "results").glob(f"*/{studies.LEDGER}"))
# the studies whose committed tables were read from their ledgers (a ledger may be started
# before the rest of a transcribed table is rerun: studies.written_from_ledger)
_REBUILDABLE = [n for n in _LEDGERED if studies.written_from_ledger(_ROOT / "results" / n)]


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    """What a fresh clone has of the results: every study folder with a ledger (the ledgers
    lend each other records), the experiment files, no runs/ and no processed data."""
    import shutil

    root = tmp_path_factory.mktemp("clone")
    (root / "experiments").symlink_to(_ROOT / "experiments")
    for name in _LEDGERED:
        shutil.copytree(_ROOT / "results" / name, root / "results" / name)
    return root


_NOT_A_STUDY = {"bench": "make bench writes it: timings of this machine, not regenerable by design",
                "claims": "summary --write generates it from the study tables (test_claims checks it)"}


def test_every_committed_results_folder_is_written_from_its_ledger():
    """Issue 34: no committed table is transcribed from runs no checkout has — every study and
    search folder under results/ has a ledger and its pages were read from it, so the slow test
    below can rebuild each byte for byte. A new folder written from local runs alone fails here
    until its ledger is committed."""
    folders = sorted(p.name for p in (_ROOT / "results").iterdir()
                     if p.is_dir() and p.name not in _NOT_A_STUDY)
    assert folders and [n for n in folders if n not in _REBUILDABLE] == []


def _report_command(folder: Path) -> list[str]:
    """``ablate --study S``, or for a search (results/tune-NAME/, no study file) the ``tune``
    command its record names."""
    from recbench import tune

    record = folder / studies.LEDGER / tune.SEARCH_RECORD
    if not record.is_file():
        return ["ablate", "--study", folder.name]
    rec = json.loads(record.read_text())
    sets = [arg for o in rec["overrides"] for arg in ("--set", o)]
    return ["tune", rec["experiment"], "--space", rec["space_file"], "--name", rec["name"], *sets]


@pytest.mark.slow  # about 4 minutes for the 39 folders at one thread beside one job (2026-12-07)
@pytest.mark.parametrize("name", _REBUILDABLE)
def test_every_study_written_from_its_ledger_rebuilds_its_committed_files(name, fresh_clone, monkeypatch):
    """Issue 34: `ablate --study S --report-only` on a fresh clone writes every committed file
    of results/S/ byte for byte (tables, card, intervals, plot, runs.txt) and records nothing
    new: the committed figures are regenerable from the ledger alone."""
    from typer.testing import CliRunner

    from recbench.cli import app

    monkeypatch.chdir(fresh_clone)
    folder = fresh_clone / "results" / name
    ledger_before = sorted(p.relative_to(folder) for p in (folder / studies.LEDGER).rglob("*"))
    committed = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*")
                 if p.is_file() and studies.LEDGER not in p.relative_to(folder).parts}
    for path in committed:
        (folder / path).unlink()
    out = CliRunner().invoke(app, [*_report_command(folder), "--report-only", "--threads", "1",
                                   "--runs-dir", str(fresh_clone / "runs"),
                                   "--data-dir", str(fresh_clone / "data")])
    assert out.exit_code == 0, out.output
    rebuilt = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*")
               if p.is_file() and studies.LEDGER not in p.relative_to(folder).parts}
    assert sorted(rebuilt) == sorted(committed)
    assert [str(p) for p in committed if rebuilt[p] != committed[p]] == []
    assert sorted(p.relative_to(folder) for p in (folder / studies.LEDGER).rglob("*")) \
        == ledger_before


def _choice_run(folder, ad: float, choice: dict, scores: dict, main: str = "AD"):
    """A synthetic ledger record of a GLA-like run: every type's test figure, the selector's
    choice per attentive type and its candidates' validation figures."""

    folder.mkdir(parents=True)
    body = {"test": {"recall@15|GD": 0.15, "recall@15|LD": 0.17, "recall@15|AD": ad,
                     "recall@15|LAD": 0.18, "recall@15|K1": ad - 0.01},
            "monitor": "recall@15",
            "extra": {"alpha_choice": choice, "alpha_select_valid": scores}}
    (folder / "metrics.json").write_text(json.dumps(body))
    (folder / "config.yaml").write_text(f"name: fake\nmodel:\n  representation: {main}\n")
    return folder


def test_composite_rows_name_what_each_seed_evaluated_and_the_heads_validation_figure(tmp_path):
    """Issue 34: a row labelled AD was, per seed, an ensemble, a single space or the head; the
    table says which, and puts the trained head's validation figure beside the chosen one's."""
    ad_scores = [{"head": 0.20, "uniform": 0.19, "ensemble": 0.22, "GD": 0.18, "LD": 0.19},
                 {"head": 0.24, "uniform": 0.19, "ensemble": 0.20, "GD": 0.17, "LD": 0.21},
                 {"head": 0.16, "uniform": 0.19, "ensemble": 0.20, "GD": 0.22, "LD": 0.20}]
    picks = ["ensemble", "head", "GD"]
    lad = {"head": 0.1, "uniform": 0.1, "ensemble": 0.3, "LD": 0.2}
    planned = []
    for seed, (pick, scores) in enumerate(zip(picks, ad_scores, strict=True)):
        run = _choice_run(tmp_path / f"r{seed}", 0.18 + seed / 100,
                          {"AD": pick, "LAD": "ensemble"}, {"AD": scores, "LAD": lad})
        planned.append(studies.PlannedRun("exp", "ml", "base", seed, None, "h", run))
    study = _rows_study(rows=["GD", "LD", "AD", "LAD", "K1"])
    result = studies.aggregate(study, planned)
    cells = {c.variant: c for c in result.cells}
    assert [c.evaluated for c in cells["AD"].choices] == ["ensemble(GD+LD)", "head", "GD"]
    assert cells["GD"].choices == [] and cells["LD"].choices == []
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(report.csv_text(result)))}
    assert rows["AD"]["evaluated"] == "ensemble(GD+LD), head, GD"
    assert rows["LAD"]["evaluated"] == "ensemble(LD) ×3"  # the type's spaces, spelt out
    assert rows["K1"]["evaluated"] == rows["AD"]["evaluated"]  # K rows score the main type
    assert float(rows["AD"]["valid_head"]) == pytest.approx(0.20)  # (0.20 + 0.24 + 0.16) / 3
    # the chosen candidate per seed: ensemble 0.22, head 0.24, GD 0.22
    assert float(rows["AD"]["valid_chosen"]) == pytest.approx((0.22 + 0.24 + 0.22) / 3, abs=1e-6)
    assert rows["AD"]["valid_best_space"] == "LD"  # LD 0.20 pooled beats GD 0.19
    assert float(rows["AD"]["valid_best_space_value"]) == pytest.approx(0.20)
    assert rows["GD"]["evaluated"] == rows["GD"]["valid_head"] == ""
    md = report.markdown(result)
    assert "| evaluated (per seed) | valid: head / chosen / best space |" in md
    assert "| exp | ml | AD | ensemble(GD+LD), head, GD | 0.2000 / 0.2267 / LD 0.2000 |" in md
    assert "| exp | ml | GD |  |  |" in md
    assert "head's test figure is not stored" in md


def test_runs_without_a_selector_keep_the_table_as_it_was(tmp_path):
    """A study whose runs record no choice (every non-GLA study) gets no new columns, so its
    committed table keeps its bytes."""
    run = _fake_run(tmp_path / "r", {"recall@15|GD": 0.3, "recall@15|LD": 0.1,
                                     "recall@15|AD": 0.1, "recall@15|LAD": 0.1})
    study = _rows_study()
    result = studies.aggregate(study, _planned(study, {"x": run}))
    assert "evaluated" not in report.markdown(result)
    assert "evaluated" not in report.csv_text(result).splitlines()[0]
    paper = _choice_run(tmp_path / "p", 0.1, {"AD": "head", "LAD": "head"}, {})
    result = studies.aggregate(study, _planned(study, {"p": paper}))
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(report.csv_text(result)))}
    assert rows["AD"]["evaluated"] == "head" and rows["AD"]["valid_head"] == ""  # no selection


@pytest.mark.parametrize("also, message", [
    (["hr@10", "hr@10"], "listed more than once"),
    (["hits@10"], "unknown metric 'hits@10'"),
    (["hr"], "unknown metric 'hr'"),  # a cutoff metric needs its cutoff
    (["recall@5"], "study's own metric"),
])
def test_a_secondary_metric_unknown_twice_or_the_main_one_is_refused(tmp_path, also, message):
    """Issue 34: `also:` names metrics a run writes, each once, none the table's own; a bad
    entry is one line when the study file is read, not a crash after the study ran."""
    from recbench.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as err:
        _study(tmp_path, also=also)
    assert "\n" not in str(err.value).strip()


def _unit_run(folder, units: dict[str, list[float]], skip: tuple[str, ...] = ()):
    """A fake finished run whose metrics.json restates the means of its per-unit vectors
    (``skip``: metrics reported without per-unit data)."""

    folder.mkdir(parents=True)
    test = {k: float(np.mean(v)) for k, v in units.items()}
    (folder / "metrics.json").write_text(json.dumps({"test": test, "monitor": "recall@5",
                                                     "extra": {}}))
    (folder / "config.yaml").write_text("name: fake\n")
    np.savez(folder / "per_unit.npz", user=np.arange(len(next(iter(units.values())))),
             **{k: np.asarray(v, dtype=np.float32) for k, v in units.items() if k not in skip})
    return folder


def test_versus_writes_every_table_again_against_another_reference_row(tmp_path):
    """Issue 33: `versus: [b]` writes table_vs_b and table_<also>_vs_b with b as the paired
    tests' reference, so two rows neither of which is `reference` get their paired test; the
    study's own tables keep their bytes; the main metric's copy keeps its paper figures."""
    rng = np.random.default_rng(1)
    recall_a = (rng.random(60) < 0.3).astype(float)
    recall_b = np.maximum(recall_a, (rng.random(60) < 0.2).astype(float))
    recall_c = np.maximum(recall_b, (rng.random(60) < 0.3).astype(float))  # c finds most
    runs = {v: [_unit_run(tmp_path / f"{v}{s}", {"recall@5": r, "hr@10": r}) for s in (0, 1)]
            for v, r in (("a", recall_a), ("b", recall_b), ("c", recall_c))}
    planned = [studies.PlannedRun("exp", "ml", v, s, None, "h", run)
               for v, rs in runs.items() for s, run in enumerate(rs)]
    body = dict(study="k", base=["a.yaml"], metric="recall@5", reference="a",
                paper={"ml": {"b": 0.3}}, also=["hr@10"])
    plain = studies.aggregate(studies.StudyConfig(**body), planned)
    result = studies.aggregate(studies.StudyConfig(**body, versus=["b"]), planned)
    out = report.write_study(result, tmp_path / "results" / "k")
    assert (out / "table.csv").read_bytes() == report.csv_text(plain).encode()  # unchanged
    assert (out / "table.md").read_bytes() == report.markdown(plain).encode()
    assert (out / "table_hr_at_10.csv").read_bytes() == report.csv_text(plain.also[0]).encode()
    assert {"table_vs_b.md", "table_vs_b.csv", "table_hr_at_10_vs_b.md",
            "table_hr_at_10_vs_b.csv"} <= set(report.study_files(result))
    for stem, metric in (("table_vs_b", "recall@5"), ("table_hr_at_10_vs_b", "hr@10")):
        rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(
            (out / f"{stem}.csv").read_text(), newline=""))}
        assert {r["metric"] for r in rows.values()} == {metric}
        assert rows["b"]["p_value"] == ""  # b is this table's reference
        assert float(rows["c"]["p_value"]) < 0.05  # c against b: the pair no other table has
        assert float(rows["c"]["effect"]) == pytest.approx((recall_c - recall_b).mean(), abs=1e-6)
        assert rows["b"]["paper"] == ("0.3" if metric == "recall@5" else "")
        assert "`b`" in (out / f"{stem}.md").read_text()


@pytest.mark.parametrize("versus, message", [
    (["b", "b"], "listed more than once"),
    (["a"], "study's own reference"),
])
def test_a_versus_row_twice_or_the_reference_itself_is_refused(tmp_path, versus, message):
    """`versus:` names other reference rows, each once; the study's own reference would write
    its table twice under two names."""
    from recbench.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as err:
        _study(tmp_path, versus=versus, reference="a")
    assert "\n" not in str(err.value).strip()


def test_a_secondary_metric_gets_its_own_table_with_the_main_tables_statistics(tmp_path):
    """Issue 34: `also: [hr@10]` writes table_hr_at_10.{md,csv}: the same cells, bootstrap
    interval, paired test, Holm and effect, for hr@10; no paper figure (the study's are the
    main metric's); the main table keeps its bytes; a run without hr@10 units leaves its CI
    blank."""
    rng = np.random.default_rng(0)
    recall = (rng.random(60) < 0.3).astype(float)
    hr_ref = (rng.random(60) < 0.4).astype(float)
    hr_b = np.maximum(hr_ref, (rng.random(60) < 0.5).astype(float))  # b finds more
    ref = [_unit_run(tmp_path / f"a{s}", {"recall@5": recall, "hr@10": hr_ref}) for s in (0, 1)]
    b = [_unit_run(tmp_path / f"b{s}", {"recall@5": recall, "hr@10": hr_b}) for s in (0, 1)]
    c = [_unit_run(tmp_path / "c0", {"recall@5": recall, "hr@10": hr_ref}, skip=("hr@10",))]
    planned = ([studies.PlannedRun("exp", "ml", "a", s, None, "h", r) for s, r in enumerate(ref)]
               + [studies.PlannedRun("exp", "ml", "b", s, None, "h", r) for s, r in enumerate(b)]
               + [studies.PlannedRun("exp", "ml", "c", 0, None, "h", c[0])])
    body = dict(study="k", base=["a.yaml"], metric="recall@5", reference="a",
                paper={"ml": {"a": 0.3}})
    plain = studies.aggregate(studies.StudyConfig(**body), planned)
    result = studies.aggregate(studies.StudyConfig(**body, also=["hr@10"]), planned)
    out = report.write_study(result, tmp_path / "results" / "k")
    assert (out / "table.csv").read_bytes() == report.csv_text(plain).encode()  # unchanged
    assert (out / "table.md").read_bytes() == report.markdown(plain).encode()
    assert {"table_hr_at_10.md", "table_hr_at_10.csv"} <= set(report.study_files(result))
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(
        (out / "table_hr_at_10.csv").read_text(), newline=""))}
    assert {r["metric"] for r in rows.values()} == {"hr@10"}
    assert float(rows["b"]["mean"]) == pytest.approx(hr_b.mean(), abs=1e-6)
    assert rows["a"]["paper"] == "" and rows["a"]["verdict"] == ""  # no hr@10 in the paper
    [hr] = result.also  # the very statistics the main table would have for hr@10
    by_hand = studies.aggregate(studies.StudyConfig(**{**body, "metric": "hr@10", "paper": {}}),
                                planned)
    assert report.csv_text(hr) == report.csv_text(by_hand)
    low, high = float(rows["b"]["ci_low"]), float(rows["b"]["ci_high"])
    assert low < hr_b.mean() < high and rows["b"]["units"] == "120"  # seeds pooled
    assert float(rows["b"]["p_value"]) < 0.05 and rows["b"]["p_holm"] != ""
    assert float(rows["b"]["p_holm"]) >= float(rows["b"]["p_value"])
    assert float(rows["b"]["effect"]) == pytest.approx((hr_b - hr_ref).mean(), abs=1e-6)
    assert rows["c"]["ci_low"] == rows["c"]["p_value"] == ""  # no hr@10 units in its run
    md = (out / "table_hr_at_10.md").read_text()
    assert "Metric: **hr@10**" in md and "| exp | ml | b |" in md
