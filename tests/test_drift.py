"""Drift between runs (issue 19): this run's customer tables against what they held before it."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from cltv import metrics
from cltv.pipelines.reporting.drift import drift_report
from cltv.synthetic import ProcessParameters, write_csv

from .conftest import run_kedro

DRIFT = {"bins": 10, "psi_warning": 0.25, "changed_share_warning": 0.2}
VERSIONS = {
    "produced_by": "scoring",
    "models": {"cltv_churn": {"version": 3, "holds_alias": True}, "cltv_value": {"version": 2}},
}


def _psi(pairs):
    """PSI of (current share, previous share) pairs, by the formula, floors applied by hand."""
    return sum((c - p) * math.log(c / p) for c, p in pairs)


def test_population_stability_by_hand(spark):
    previous = spark.createDataFrame(
        [(float(v), "a" if v <= 5 else "b") for v in range(1, 11)], "amount double, tier string"
    )
    current = spark.createDataFrame(
        [(1.0, "a")] * 7 + [(6.0, "a"), (7.0, "a"), (None, "a")], "amount double, tier string"
    )
    # 2 bins: the previous median is 5, so 1..4 (40%) below it and 5..10 (60%) at or above;
    # now 7 below (70%), 2 above (20%), one missing (10%, 0% before: floored at 1e-4)
    # tier: a 50% -> 100%, b 50% -> 0% (floored at 1e-4)
    found = metrics.population_stability(current, previous, ["amount", "tier"], bins=2)
    assert found["amount"] == pytest.approx(_psi([(0.7, 0.4), (0.2, 0.6), (0.1, 1e-4)]))
    assert found["tier"] == pytest.approx(_psi([(1.0, 0.5), (1e-4, 0.5)]))
    assert found["amount"] == pytest.approx(0.1679 + 0.4394 + 0.6901, abs=1e-3)
    # the same rows against themselves: exactly nothing
    same = metrics.population_stability(previous, previous, ["amount", "tier"], bins=10)
    assert same == {"amount": 0.0, "tier": 0.0}


def test_drift_report_by_hand(spark, caplog):
    """Four customers before (a-d), four now (b-e); c moves from medium to high risk."""

    def tables(rows):
        features = spark.createDataFrame(
            [(c, m) for c, m, *_ in rows], "customer_id string, monetary_total double"
        )
        predictions = spark.createDataFrame(
            [(c, p, b) for c, _, p, b, *_ in rows],
            "customer_id string, churn_probability double, risk_band string",
        )
        cltv = spark.createDataFrame(
            [(c, v, t) for c, *_, v, t in rows], "customer_id string, clv double, value_tier string"
        )
        return features, predictions, cltv

    before = tables(
        [
            ("a", 10.0, 0.1, "low", 50.0, "rest"),
            ("b", 20.0, 0.8, "high", 5.0, "rest"),
            ("c", 30.0, 0.5, "medium", 100.0, "top_20pct"),
            ("d", 40.0, 0.2, "low", 20.0, "rest"),
        ]
    )
    now = tables(
        [
            ("b", 20.0, 0.8, "high", 5.0, "rest"),
            ("c", 30.0, 0.9, "high", 100.0, "top_20pct"),
            ("d", 40.0, 0.2, "low", 20.0, "rest"),
            ("e", 10.0, 0.3, "low", 80.0, "top_20pct"),
        ]
    )
    report, mlflow_metrics = drift_report(
        now[0], before[0], now[1], before[1], now[2], before[2], {**DRIFT, "bins": 2}, VERSIONS
    )
    # the report names the versions that wrote the tables
    assert report["produced_by"] == "scoring"
    assert report["models"] == {"cltv_churn": {"version": 3}, "cltv_value": {"version": 2}}
    predictions = report["tables"]["churn_predictions"]
    assert predictions["customers"] == {"now": 4, "before": 4, "in_both": 3, "new": 1, "gone": 1}
    assert predictions["risk_band_changed"] == pytest.approx(1 / 3)
    assert predictions["totals"]["mean_churn_probability"] == {
        "now": pytest.approx(2.2 / 4),
        "before": pytest.approx(1.6 / 4),
    }
    assert predictions["totals"]["high_risk_customers"] == {"now": 2, "before": 1}
    # churn probability: the previous median 0.2 cuts 0.1 (25%) from 0.2..0.8 (75%);
    # now all four are at or above it
    assert predictions["psi"]["churn_probability"] == pytest.approx(
        _psi([(1e-4, 0.25), (1.0, 0.75)])
    )
    # the report's one pass bins as population_stability does, column by column
    assert predictions["psi"] == pytest.approx(
        metrics.population_stability(now[1], before[1], ["churn_probability"], bins=2)
    )
    cltv = report["tables"]["customer_cltv"]
    assert cltv["value_tier_changed"] == 0.0
    assert cltv["totals"]["clv_total"] == {"now": 205.0, "before": 175.0}
    features = report["tables"]["customer_features_current"]
    # customer_id is the key, not a feature; e replaced a with the same spend
    assert features["psi"] == {"monetary_total": 0.0}
    assert "risk_band_changed" not in features
    # 33% changed band (above 20%) and a churn-probability PSI of ~2.2 are both warnings
    assert len(report["warnings"]) == 2 and report["compared"] is True
    assert (
        "churn_predictions: 33.3% of the customers in both versions changed risk band"
        in (report["warnings"][1])
    )
    assert sum("Drift since the previous run" in r.message for r in caplog.records) == 2
    assert mlflow_metrics["churn_predictions.risk_band_changed"]["value"] == pytest.approx(1 / 3)
    assert "customer_features_current.psi.monetary_total" in mlflow_metrics


def test_a_first_run_has_nothing_to_compare(default_run):
    report = json.loads((default_run.project / "data/08_reporting/drift_report.json").read_text())
    assert report["compared"] is False and report["warnings"] == []
    for entry in report["tables"].values():
        assert entry == {"compared": False, "reason": "no earlier version: nothing to compare yet"}
    page = (default_run.project / "data/08_reporting/dashboard.html").read_text()
    assert "Nothing to compare yet: this is the first run on these tables." in page


def test_scoring_the_same_input_again_shows_no_drift(scored_again):
    project, log = scored_again.project, scored_again.log
    report = json.loads((project / "data/08_reporting/drift_report.json").read_text())
    assert report["compared"] is True and report["warnings"] == []
    for name, entry in report["tables"].items():
        assert entry["compared"], name
        assert entry["customers"]["new"] == entry["customers"]["gone"] == 0
        assert set(entry["psi"].values()) == {0.0}, name
        for total in entry["totals"].values():
            # the same rows; a float sum may add them in another order
            assert total["now"] == pytest.approx(total["before"], rel=1e-12)
    assert len(report["tables"]["customer_features_current"]["psi"]) >= 20
    assert report["tables"]["churn_predictions"]["risk_band_changed"] == 0.0
    assert report["tables"]["customer_cltv"]["value_tier_changed"] == 0.0
    assert "Drift since the previous run" not in log


def test_a_shifted_population_shows_large_drift(scored_again, tmp_path):
    """New transactions from a process with other parameters (customers buy a third as often,
    and spend twice as much) scored with the same models: purchase counts, order values and CLV
    move far beyond the warning threshold, churn probabilities rise and risk bands change."""
    project = tmp_path / "project"
    shutil.copytree(scored_again.project, project)
    shifted = ProcessParameters(r=0.25, gamma=300.0)
    csv = tmp_path / "shifted.csv"
    write_csv(20_000, csv, seed=6, params=shifted, regimes=("returns", "non_product"))
    log = run_kedro(project, "data_processing,scoring", input_path=str(csv))
    report = json.loads((project / "data/08_reporting/drift_report.json").read_text())
    features = report["tables"]["customer_features_current"]["psi"]
    assert features["monetary_mean"] > 1.0 and features["n_invoices"] > 0.5
    assert report["tables"]["customer_cltv"]["psi"]["clv"] > 0.25
    predictions = report["tables"]["churn_predictions"]
    # most customers were already likely to churn: the distribution moves moderately, but
    # the risk bands of many change, and that is a warning too
    assert predictions["psi"]["churn_probability"] > 0.1
    assert predictions["risk_band_changed"] > 0.2
    mean = predictions["totals"]["mean_churn_probability"]
    assert mean["now"] > mean["before"]
    assert any(w.startswith("churn_predictions: ") for w in report["warnings"])
    assert any(w.startswith("customer_cltv.clv: PSI") for w in report["warnings"])
    assert "Drift since the previous run: customer_features_current.monetary_mean" in log
