"""Per-row uncertainty and the protocol card of a study table (issue 34), on fake runs."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from recbench import protocol, stats, studies
from recbench.experiment import load_experiment
from recbench.studies import report
from tests.conftest import write_experiment


def test_holm_adjusts_in_order_and_keeps_untested_rows():
    # sorted 0.01, 0.03, 0.04 -> 3·0.01, max(that, 2·0.03), max(that, 1·0.04)
    assert stats.holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert stats.holm([0.6, 0.9]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([None]) == [None]


def test_bootstrap_interval_is_deterministic_and_brackets_the_figure():
    values = np.random.default_rng(1).random(500)
    a = stats.bootstrap_interval(values, "recall@20")
    assert a == stats.bootstrap_interval(values, "recall@20")  # fixed seed: same bytes
    assert a.low < values.mean() < a.high and a.units == 500
    # the interval of a mean over 500 uniform units is about ±1.96·0.289/√500 = ±0.025
    assert 0.035 < a.high - a.low < 0.065
    squared = values ** 2
    r = stats.bootstrap_interval(squared, "rmse")  # RMSE from squared errors: √mean
    assert r.estimate == pytest.approx(np.sqrt(squared.mean()))
    assert r.low < r.estimate < r.high
    assert stats.bootstrap_interval(np.array([0.5]), "recall@20") is None


def test_paired_effect_sees_a_small_shift_the_unpaired_intervals_hide():
    rng = np.random.default_rng(2)
    y = rng.random(400)
    x = y + 0.01  # every unit 0.01 better: unpaired intervals overlap, the paired one excludes 0
    e = stats.paired_effect(x, y, "ndcg@10")
    assert e.estimate == pytest.approx(0.01)
    assert 0.0 < e.low <= 0.01 <= e.high
    assert stats.paired_effect(x, y[:10], "ndcg@10") is None


@pytest.mark.parametrize("paper, low, expected", [
    (0.30, False, "inside"),
    (0.40, False, "above (paper better)"),
    (0.20, False, "below (paper worse)"),
    (0.40, True, "above (paper worse)"),  # RMSE: a larger error is worse
    (0.20, True, "below (paper better)"),
])
def test_verdict_names_the_side_and_which_way_is_better(paper, low, expected):
    interval = stats.Interval(0.3, 0.25, 0.35, 100)
    assert stats.verdict(paper, interval, low) == expected
    assert stats.verdict(None, interval, low) == ""
    assert stats.verdict(paper, None, low) == ""


def _run(folder, value: float, units: np.ndarray, metric: str = "recall@5"):
    folder.mkdir(parents=True)
    body = {"test": {metric: value}, "monitor": metric, "extra": {"valid": {}}}
    (folder / "metrics.json").write_text(json.dumps(body))
    (folder / "config.yaml").write_text("name: fake\n")
    np.savez(folder / "per_unit.npz", user=np.arange(len(units)), **{metric: units})
    return folder


def test_table_rows_carry_interval_holm_effect_and_verdict(tmp_path):
    rng = np.random.default_rng(3)
    base = rng.random(300).astype(np.float32)
    variants = {"a": base, "b": np.clip(base + 0.05, 0, 1), "c": base[::-1].copy()}
    planned = []
    for label, units in variants.items():
        for seed in (0, 1):
            run = _run(tmp_path / f"{label}{seed}", float(units.mean()), units)
            planned.append(studies.PlannedRun("exp", "tiny", label, seed, None, "h", run))
    study = studies.StudyConfig(study="s", base=["e.yaml"], variants={"a": {}, "b": {}, "c": {}},
                                metric="recall@5", reference="a", paper={"tiny": {"a": 0.99}})
    result = studies.aggregate(study, planned)
    cells = {c.variant: c for c in result.cells}
    a, b, c = cells["a"], cells["b"], cells["c"]
    assert a.ci is not None and a.ci.units == 600  # two seeds' units pooled
    assert a.ci.low < a.mean < a.ci.high
    assert a.verdict == "above (paper better)"  # 0.99 is far above a mean near 0.5
    assert b.effect.estimate == pytest.approx(float(variants["b"].mean() - base.mean()), abs=1e-6)
    assert b.effect.low > 0
    assert c.effect.low < 0 < c.effect.high
    low, high = sorted([b.p_value, c.p_value])  # Holm over the table's two tested rows
    assert sorted([b.p_holm, c.p_holm]) == pytest.approx([min(1, 2 * low),
                                                          max(min(1, 2 * low), high)])
    assert a.p_holm is None and a.effect is None
    md = report.markdown(result)
    assert "| 95% CI (units) |" in md and "| p (Holm) |" in md and "| verdict |" in md
    assert f"[{a.ci.low:.4f}, {a.ci.high:.4f}]" in md
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(report.csv_text(result)))}
    assert rows["a"]["verdict"] == "above (paper better)" and rows["a"]["units"] == "600"
    assert float(rows["b"]["effect_low"]) > 0 and rows["b"]["p_holm"] != ""
    assert md == report.markdown(studies.aggregate(study, planned))  # deterministic


def test_validation_tables_get_no_interval(tmp_path):
    units = np.linspace(0, 1, 50)
    run = _run(tmp_path / "r", 0.5, units)
    body = json.loads((run / "metrics.json").read_text())
    body["extra"]["valid"] = {"recall@5": 0.4}
    (run / "metrics.json").write_text(json.dumps(body))
    study = studies.StudyConfig(study="s", base=["e.yaml"], metric="recall@5", split="valid",
                                paper={"tiny": {"base": 0.3}})
    result = studies.aggregate(study, [studies.PlannedRun("exp", "tiny", "base", 0, None, "h",
                                                          run)])
    cell = result.cells[0]
    assert cell.ci is None and cell.verdict == ""  # per-unit vectors are test units
    assert "| — |" in report.markdown(result)  # a paper figure with no interval to judge


def test_card_is_derived_from_the_configs(tmp_path):
    honest = load_experiment(write_experiment(tmp_path, "honest"))
    loo = load_experiment(write_experiment(
        tmp_path, "loo", dataset={"protocol": "loo", "num_negatives": 49, "valid_ratio": 0.0}))
    tracked = load_experiment(write_experiment(
        tmp_path, "pub", dataset={"valid_ratio": 0.0}, train={"track_test": True}))
    text = "\n".join(protocol.card([("honest", "honest", honest), ("loo", "loo", loo),
                                    ("pub", "pub", tracked)], "recall@5", [0, 1]))
    assert "random 20% of ratings to test per user" in text
    assert "- validation: 20% of training rows per user carved out [honest]" in text
    assert "sampled: the held-out item among 49 stored negatives per user" in text
    assert "full over all items (cut-offs 5) [honest, pub]" in text
    assert "the user's training and validation items [honest]" in text
    assert "final epoch (fixed schedule, no validation split) [loo, pub]" in text
    assert "- seeds: 0, 1" in text
    assert "⚠ selected on test: pub set train.track_test" in text
    per_cell = "\n".join(protocol.card([("honest", "honest", honest), ("loo", "loo", loo),
                                        ("pub", "pub", tracked)], "recall@5",
                                       {"honest": [0], "loo": [0, 1, 2], "pub": [0, 1, 2]}))
    assert "- seeds: 0 [honest] · 0, 1, 2 [loo, pub] planned" in per_cell
    same = "\n".join(protocol.card([("honest", "honest", honest)], "recall@5", [0]))
    assert "[honest]" not in same  # one value: no labels
    assert "⚠" not in same


def test_card_flags_test_selected_columns(tmp_path):
    cfg = load_experiment(write_experiment(tmp_path, "e"))
    lines = protocol.card([("e", "e", cfg)], "rmse", [0], "valid",
                          {"test_selected.md": ["test-selected RMSE"]})
    text = "\n".join(lines)
    assert "⚠ selected on test: test_selected.md column(s) test-selected RMSE" in text
    assert "**this table reports validation figures**" in text
