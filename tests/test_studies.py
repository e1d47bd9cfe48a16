"""The studies engine on tiny data: caching, resume, aggregation by hand, --jobs parity."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from recbench import report, runs, studies
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
    import json

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
    rows = report.csv_text(result).splitlines()
    assert rows[0].endswith(",guard")
    assert sum(r.endswith("below GD 0.140000") for r in rows) == 1


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
