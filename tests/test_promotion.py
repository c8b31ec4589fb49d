"""Champion / challenger (issues 19, 30): the first run's churn and CLV models take the
registry alias; a later model that is not better is registered but does not, and the alias
stays where it was. Scoring reads both champions from the registry and nothing else."""

from __future__ import annotations

import html
import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable

from cltv.models.value_model import INPUT_COLUMNS, OUTPUT_COLUMNS, CustomerValueModel

from .conftest import cli_in_process, project_registry, registered_model, run_kedro, top_fifth_share


def _promotion(project, model: str = "cltv_churn") -> dict:
    return json.loads((project / "data/08_reporting/model_promotion.json").read_text())[model]


def _client(project) -> mlflow.MlflowClient:
    return project_registry(project)


def test_a_first_run_promotes_and_a_worse_challenger_does_not(default_run, tmp_path):
    first = _promotion(default_run.project)
    assert first["promoted"] is True and first["champion"] is None
    assert first["reason"] == "no model had the alias 'champion' yet"
    name, version = first["registered_model"], first["challenger"]["version"]
    assert (name, first["metric"], first["min_gain"]) == ("cltv_churn", "pr_auc", 0.005)
    churn_metrics = json.loads(
        (default_run.project / "data/08_reporting/churn_metrics.json").read_text()
    )
    # the challenger's score is the run's own test PR-AUC
    assert first["challenger"]["score"] == pytest.approx(churn_metrics["pr_auc"], rel=1e-12)
    assert first["n_test"] == churn_metrics["n_test"]
    client = _client(default_run.project)
    assert int(client.get_model_version_by_alias(name, "champion").version) == version

    # a deliberately worse challenger under the same contract (same features, horizon,
    # threshold rule: only comparable settings differ): starved candidates of the other
    # engine, on the same customers, so a Spark ML model meets a scikit-learn champion
    project = tmp_path / "project"
    shutil.copytree(default_run.project, project)
    (project / "conf/local/parameters_churn_modeling.yml").write_text(
        yaml.safe_dump(
            {
                "churn_modeling": {
                    "engine": "spark_ml",
                    # merged into the base candidates: both, starved
                    "candidates": {
                        "spark_ml": {
                            "logistic_regression": {
                                "max_iter": 5,
                                "reg_param": 100.0,
                                "elastic_net_param": 1.0,
                            },
                            "gradient_boosted_trees": {"max_iter": 1, "max_depth": 1},
                        }
                    },
                }
            }
        )
    )
    # and a new margin: the user's decision, which the CLV model takes to production
    (project / "conf/local/parameters_cltv.yml").write_text(
        yaml.safe_dump({"cltv": {"valuation": {"margin": 0.5}}})
    )
    run_kedro(project, "churn_modeling,cltv", input_path=str(default_run.csv))
    second = _promotion(project)
    assert second["promoted"] is False
    assert second["challenger"]["version"] == version + 1
    # the champion is the first run's model, scored again on the same test customers
    assert second["champion"]["version"] == version
    assert second["champion"]["score"] == pytest.approx(first["challenger"]["score"], rel=1e-9)
    assert second["champion"]["settings"] == second["challenger"]["settings"]
    gain = second["challenger"]["score"] - second["champion"]["score"]
    assert gain < 0.005
    assert f"a difference of {gain:+.4f}, below the 0.005 required" in second["reason"]
    assert (second["challenger"]["flavor"], second["champion"]["flavor"]) == ("spark", "sklearn")
    assert second["reason"].endswith(
        "the champion is a sklearn model, the challenger a spark one, and the champion keeps "
        "scoring"
    )
    client = _client(project)
    assert int(client.get_model_version_by_alias(name, "champion").version) == version
    versions = {int(v.version) for v in client.search_model_versions(f"name='{name}'")}
    assert versions == {version, version + 1}
    # the decision is in the run's MLflow metrics
    run = client.get_run(client.get_model_version(name, str(version + 1)).run_id)
    assert run.data.metrics["promotion.promoted"] == 0.0
    assert run.data.metrics["promotion.champion"] == pytest.approx(second["champion"]["score"])
    assert run.data.metrics["promotion.challenger"] == pytest.approx(second["challenger"]["score"])

    # the production tables hold the champions' numbers: the churn champion that kept the
    # alias (not the worse model this run trained), the CLV model with the new margin
    value = _promotion(project, "cltv_value")
    assert value["promoted"] is True and value["champion"]["version"] == 1
    assert value["reason"].startswith("settings changed: margin 1.0 → 0.5 (the champion")
    assert int(client.get_model_version_by_alias("cltv_value", "champion").version) == 2
    pd.testing.assert_frame_equal(
        _table(project, "churn_predictions"), _table(default_run.project, "churn_predictions")
    )
    halved = _table(project, "customer_cltv")
    np.testing.assert_allclose(
        halved["clv"], 0.5 * _table(default_run.project, "customer_cltv")["clv"], rtol=1e-9
    )
    # and scoring right after training writes the same tables, at the new margin
    run_kedro(project, "scoring")
    pd.testing.assert_frame_equal(_table(project, "customer_cltv"), halved)
    pd.testing.assert_frame_equal(
        _table(project, "churn_predictions"), _table(default_run.project, "churn_predictions")
    )

    # new feature definitions and a fixed threshold (contract settings: the user's decision)
    windows = {
        "features": {"windows_days": [30, 90, 365]},
        "churn_modeling": {
            "features": {
                "numeric": [
                    *(f for f in _base_features(project) if not f.endswith("180d")),
                    "purchases_last_365d",
                    "revenue_last_365d",
                    "revenue_trend_365d",
                ]
            },
            "threshold": {"rule": "fixed", "value": 0.7},
        },
    }
    (project / "conf/local/parameters_churn_modeling.yml").write_text(yaml.safe_dump(windows))
    # scoring with the champion before any retrain stops in one line, before any Spark work
    finished = cli_in_process(project, "--pipelines", "scoring")
    last = finished.output.strip().splitlines()[-1]
    assert finished.exit_code != 0
    assert last.startswith(
        f"Error: node check_champion failed: the churn champion (cltv_churn version {version}) "
        "was trained on other inputs (its settings → this run's): "
        "churn_modeling.features.numeric without purchases_last_180d, revenue_last_180d, "
        "revenue_trend_180d and with purchases_last_365d, revenue_last_365d, "
        "revenue_trend_365d; features.windows_days [30, 90, 180] → [30, 90, 365]. "
    ), last
    assert "Run `kedro run` to train and promote a model on the new settings" in last
    assert "Completed node" not in finished.log + finished.output

    # training on them promotes the new model as a change of settings: no score can decide
    run_kedro(project, "data_processing,churn_modeling", input_path=str(default_run.csv))
    third = _promotion(project)
    assert third["champion"]["version"] == version
    assert third["promoted"] is True and third["outcome"] == "settings changed"
    assert "churn_modeling.threshold.rule max_youden → fixed" in third["reason"]
    assert "features.windows_days [30, 90, 180] → [30, 90, 365]" in third["reason"]
    assert "score" not in third["champion"]  # not scored on tables it cannot read
    assert int(client.get_model_version_by_alias(name, "champion").version) == version + 2
    predictions = _table(project, "churn_predictions")
    assert (predictions["predicted_churn"] == (predictions["churn_probability"] >= 0.7)).all()
    before = _table(default_run.project, "churn_predictions")
    assert predictions["predicted_churn"].sum() != before["predicted_churn"].sum()
    # and scoring right after reproduces the training run's tables
    run_kedro(project, "scoring")
    pd.testing.assert_frame_equal(_table(project, "churn_predictions"), predictions)


def _base_features(project) -> list[str]:
    base = yaml.safe_load((project / "conf/base/parameters_churn_modeling.yml").read_text())
    return base["churn_modeling"]["features"]["numeric"]


def test_two_default_runs_leave_both_models_with_the_first_as_champion(default_run, trained_twice):
    client = _client(trained_twice.project)
    for model in ("cltv_churn", "cltv_value"):
        first, second = (
            _promotion(default_run.project, model),
            _promotion(trained_twice.project, model),
        )
        assert first["registered_model"] == second["registered_model"] == model
        assert first["promoted"] is True and first["champion"] is None
        version = first["challenger"]["version"]
        # the same data and settings: the same model, so no gain, and the champion stays
        assert second["challenger"]["version"] == version + 1
        assert second["champion"]["version"] == version
        assert second["champion"]["score"] == pytest.approx(first["challenger"]["score"], rel=1e-9)
        assert second["challenger"]["score"] == pytest.approx(
            first["challenger"]["score"], rel=1e-9
        )
        assert second["promoted"] is False and second["outcome"] == "tie"
        assert "a tie, " in second["reason"]
        assert "a difference of +0.0000, below the 0.005 required" in second["reason"]
        if model == "cltv_value":
            # the same recipe and settings: one refit on the calibration period, not two
            assert "they are the same model: a tie by construction" in second["reason"]
        assert int(client.get_model_version_by_alias(model, "champion").version) == version
    versions = json.loads(
        (trained_twice.project / "data/08_reporting/model_versions.json").read_text()
    )
    assert versions["produced_by"] == "training"
    # the tables were written by the champion, which kept the alias
    assert versions["models"]["cltv_value"] == {
        "registered_model": "cltv_value",
        "version": 1,
        "alias": "champion",
        "holds_alias": True,
        "challenger_version": 2,
        "challenger_promoted": False,
    }
    # the drift report and the dashboard name the versions that wrote the tables
    drift = json.loads((trained_twice.project / "data/08_reporting/drift_report.json").read_text())
    assert drift["models"]["cltv_churn"]["version"] == versions["models"]["cltv_churn"]["version"]
    page = (trained_twice.project / "data/08_reporting/dashboard.html").read_text()
    assert "tables by cltv_churn version 1 and cltv_value version 1 (training)" in page
    assert (
        html.escape("cltv_value version 2, trained by this run, did not take the alias 'champion'")
        in page
    )


def test_the_clv_decision_scores_the_holdout_revenue_the_top_fifth_spent(default_run):
    """The challenger's score, recomputed in pandas from the calibration summary and the
    predictions of its recipe fitted on the calibration period (the registered model was
    fitted up to observation_end: it has seen the holdout): the top 20% of customers by CLV
    (a fraction of a customer counted in proportion), and their share of the holdout's
    revenue."""
    project = default_run.project
    decision = _promotion(project, "cltv_value")
    assert (decision["metric"], decision["min_gain"]) == ("holdout_revenue_top_20pct", 0.005)
    summary = DeltaTable(str(project / "data/03_primary/customer_summary")).to_pandas()
    registered = registered_model(project, "cltv_value", 1).unwrap_python_model()
    calibration_fit = json.loads((project / "data/06_models/cltv_calibration_fit.json").read_text())
    period = json.loads((project / "data/03_primary/analysis_period.json").read_text())
    name = registered.purchase_model_name
    assert decision["challenger"]["scored_with"] == {
        "recipe": {"purchase_model": name, "penalizer": 0.0, "gamma_gamma_penalizer": 0.0},
        "fit": "refit on this run's calibration period, "
        f"{period['first_transaction_date']} to {period['calibration_end']}",
        "source": "this run's calibration fit (cltv_calibration_fit)",
        "n_customers": len(summary),
    }
    model = CustomerValueModel(
        {**calibration_fit, "purchase_model": name},
        registered.naive,
        registered.valuation,
        registered.uncertainty,
    )
    revenue = summary["frequency_holdout"] * summary["monetary_value_holdout"]
    clv = model.predict(None, summary[list(INPUT_COLUMNS)])["clv"]
    assert decision["n_customers"] == len(summary)
    assert decision["challenger"]["score"] == pytest.approx(top_fifth_share(clv, revenue), rel=1e-9)
    assert decision["challenger"]["purchase_model"] in ("bgnbd", "mbgnbd", "pnbd")
    # the naive baseline is scored alike, and the report says which ranks better
    naive = decision["naive_baseline"]
    # only by more than min_gain: a smaller difference is a tie, not a win
    assert naive["beats_challenger"] == (
        naive["score"] - decision["challenger"]["score"] >= decision["min_gain"]
    )
    assert 0 < naive["score"] < 1


def test_the_registered_clv_model_predicts_the_customer_cltv_table(trained_twice):
    versions = json.loads(
        (trained_twice.project / "data/08_reporting/model_versions.json").read_text()
    )
    # the version that wrote the table, which is the champion
    wrote = versions["models"]["cltv_value"]["version"]
    model = registered_model(trained_twice.project, "cltv_value")
    assert (
        model.metadata.run_id
        == registered_model(trained_twice.project, "cltv_value", wrote).metadata.run_id
    )
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["frequency", "recency", "T", "monetary_value"]
    assert signature.outputs.input_names() == list(OUTPUT_COLUMNS)
    assert model.metadata.metadata["time_unit"] == "W"
    assert model.metadata.metadata["horizon_months"] == 12
    assert model.metadata.metadata["interval_draws"] == 200
    summary = _table(trained_twice.project, "customer_summary_current")
    table = _table(trained_twice.project, "customer_cltv")
    predicted = model.predict(summary[list(INPUT_COLUMNS)])
    assert len(predicted) == len(table) > 1000
    np.testing.assert_allclose(
        predicted[list(OUTPUT_COLUMNS)].to_numpy(),
        table[list(OUTPUT_COLUMNS)].to_numpy(),
        rtol=1e-9,
        atol=1e-12,
    )


def test_scoring_reproduces_the_training_run_from_the_registry_alone(trained_twice, scored_again):
    project = scored_again.project
    for table in ("churn_predictions", "customer_cltv"):
        trained = _table(trained_twice.project, table)
        scored = _table(project, table)
        # nothing changed, so the same models give the same rows, to the last bit
        pd.testing.assert_frame_equal(scored, trained)
    # no training and no file of the training run: no new model version, no fit in data/
    client = _client(project)
    for model in ("cltv_churn", "cltv_value"):
        assert len(client.search_model_versions(f"name='{model}'")) == 2
    assert not (project / "data/06_models").exists()
    versions = json.loads((project / "data/08_reporting/model_versions.json").read_text())
    assert versions["produced_by"] == "scoring"
    assert {name: entry["version"] for name, entry in versions["models"].items()} == {
        "cltv_churn": 1,
        "cltv_value": 1,
    }
    assert "Scoring with churn model version 1" in scored_again.log
    assert "CLV model version 1" in scored_again.log


def test_scoring_without_a_champion_stops_with_one_line(default_run, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(default_run.project, project)
    (project / "mlflow.db").unlink()  # an empty registry
    finished = cli_in_process(project, "--pipelines", "scoring")
    assert finished.exit_code != 0
    last = finished.output.strip().splitlines()[-1]
    assert last.startswith("Error: node check_champion failed: ") or last.startswith(
        "Error: the run failed: "
    ), last
    assert "no version of the churn model cltv_churn has the alias 'champion'" in last
    assert "run the training pipelines first (kedro run)" in last
    assert "Completed node" not in finished.log + finished.output  # stopped before any work

    # the churn champion there, the CLV one not
    shutil.copy(default_run.project / "mlflow.db", project / "mlflow.db")
    _client(project).delete_registered_model_alias("cltv_value", "champion")
    finished = cli_in_process(project, "--pipelines", "scoring")
    last = finished.output.strip().splitlines()[-1]
    assert finished.exit_code != 0
    assert "no version of the CLV model cltv_value has the alias 'champion'" in last, last
    assert "Completed node" not in finished.log + finished.output


def _table(project, name) -> pd.DataFrame:
    layer = {
        "churn_predictions": "07_model_output",
        "customer_cltv": "07_model_output",
        "customer_summary_current": "03_primary",
    }[name]
    frame = DeltaTable(str(project / "data" / layer / name)).to_pandas()
    return frame.sort_values("customer_id").reset_index(drop=True)
