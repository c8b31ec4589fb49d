"""``kedro run`` through a real KedroSession, on a copy of the project."""

from __future__ import annotations

import json

import mlflow
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from cltv.datasets import SparkDeltaTableDataset

from .conftest import copy_project, run_kedro

TABLES = {
    "transactions_clean": "02_intermediate",
    "transactions_quarantine": "02_intermediate",
    "customer_summary": "03_primary",
    "customer_features": "04_feature",
    "customer_features_current": "04_feature",
    "churn_model_input": "05_model_input",
    "churn_predictions": "07_model_output",
    "customer_summary_current": "03_primary",
    "customer_cltv": "07_model_output",
}
CHURN_METRICS = {
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "n_train",
    "n_test",
    "positive_rate",
    "lift_top_decile",
    "capture_rate_top_decile",
    "confusion_matrix",
    "threshold",
}


@pytest.fixture
def project_copy(tmp_path, project_root):
    return copy_project(project_root, tmp_path)


def _latest_mlflow_run(project):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.search_runs(
        experiment_names=["cltv-churn"], order_by=["start_time DESC"], max_results=1
    ).iloc[0]


def test_default_run_writes_tables_metrics_and_mlflow_run(default_run):
    project_copy, csv = default_run.project, default_run.csv

    counts = {}
    for name, layer in TABLES.items():
        path = project_copy / "data" / layer / name
        assert (path / "_delta_log").is_dir(), name
        counts[name] = len(DeltaTable(str(path)).to_pandas())
    raw_rows = len(csv.read_text().splitlines()) - 1
    assert counts["transactions_clean"] + counts["transactions_quarantine"] == raw_rows
    assert counts["customer_summary"] == counts["customer_features"] > 100
    report = json.loads((project_copy / "data/08_reporting/quarantine_report.json").read_text())
    assert report["rows"] == raw_rows
    # exactly the lines the generator added on top of its process, in their reasons
    truth = json.loads(csv.with_name(csv.name + ".truth.json").read_text())
    expected = dict(truth["expected_reasons"])
    assert counts["transactions_clean"] == expected.pop("clean")
    assert report["by_reason"] == expected
    assert set(expected) == {
        "missing_customer_id",
        "cancellation",
        "unmatched_cancellation",
        "non_product",
        "duplicate_line",
        "non_positive_price",
    }
    assert report["returns"]["sale_lines_fully_returned"] > 0
    features = DeltaTable(str(project_copy / "data/04_feature/customer_features")).to_pandas()
    assert features["rfm_segment"].nunique() >= 5
    assert set(features["r_score"]) <= {1, 2, 3, 4, 5}

    churn_metrics = json.loads((project_copy / "data/08_reporting/churn_metrics.json").read_text())
    assert CHURN_METRICS <= set(churn_metrics)
    assert churn_metrics["roc_auc"] > 0.6
    assert (
        churn_metrics["n_test"] + churn_metrics["n_validation"] + churn_metrics["n_train"]
        == counts["customer_summary"]
    )
    predictions = DeltaTable(
        str(project_copy / "data/07_model_output/churn_predictions")
    ).to_pandas()
    assert len(predictions) == counts["customer_features_current"]
    assert set(predictions["risk_band"]) <= {"high", "medium", "low"}

    # one MLflow run holds params, metrics (quarantine counts too), plots and the model
    run = _latest_mlflow_run(project_copy)
    assert run["params.churn_modeling.class_weight"] == "none"
    assert run["params.input_path"] == str(csv)
    assert run["metrics.churn.roc_auc"] == pytest.approx(churn_metrics["roc_auc"])
    assert run["metrics.quarantine.rows"] == raw_rows
    assert (
        run["metrics.quarantine.by_reason.duplicate_line"] == report["by_reason"]["duplicate_line"]
    )
    assert run["metrics.quarantine.returns.netted_revenue"] == pytest.approx(
        report["returns"]["netted_revenue"]
    )
    client = mlflow.MlflowClient()
    plots = {a.path for a in client.list_artifacts(run.run_id, "churn_plots")}
    assert plots == {
        f"churn_plots/{name}.png"
        for name in ("roc_curve", "precision_recall_curve", "calibration_curve", "feature_weights")
    }
    # the logged model is a standard scikit-learn flavor: it loads back without Spark, through
    # pyfunc, and scores a few customers like the run did
    model = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/churn_model")
    assert set(model.metadata.flavors) == {"python_function", "sklearn"}
    features = SparkDeltaTableDataset(
        filepath=str(project_copy / "data/04_feature/customer_features_current")
    ).load()
    # with the BTYD scores the model may have kept as features
    btyd_scores = SparkDeltaTableDataset(
        filepath=str(project_copy / "data/04_feature/btyd_churn_scores_current")
    ).load()
    features = features.join(btyd_scores, "customer_id")
    few = predictions.sort_values("customer_id").head(5)
    rows = (
        features.filter(F.col("customer_id").isin(list(few["customer_id"])))
        .toPandas()
        .sort_values("customer_id")
    )
    inputs = model.metadata.get_input_schema().input_names()
    rescored = model.predict(rows[inputs])[:, 1]  # predict_proba: column 1 is churn
    assert rescored == pytest.approx(few["churn_probability"].to_numpy(), abs=1e-12)
    versions = client.search_model_versions("name='cltv_churn'")
    assert [v.run_id for v in versions] == [run.run_id]

    # cltv: the SPEC's parameter file, holdout validation, one value row per customer
    params = json.loads((project_copy / "data/06_models/cltv_model_params.json").read_text())
    assert params["time_unit"] == "W"
    assert set(params["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood", "n_customers"}
    assert set(params["gamma_gamma"]) == {"p", "q", "gamma", "n_customers"}
    assert params["bgnbd"]["n_customers"] == counts["customer_summary_current"]
    validation = json.loads((project_copy / "data/08_reporting/cltv_validation.json").read_text())
    assert validation["mae_bgnbd"] < validation["mae_naive"]
    assert counts["customer_cltv"] == counts["customer_summary_current"]
    assert run["metrics.cltv.bgnbd.r"] == pytest.approx(params["bgnbd"]["r"])
    assert run["metrics.cltv.validation.mae_bgnbd"] == pytest.approx(validation["mae_bgnbd"])
    assert {a.path for a in client.list_artifacts(run.run_id, "cltv_plots")} == {
        "cltv_plots/holdout_by_frequency.png",
        "cltv_plots/holdout_totals.png",
    }

    # a cancelled giant order is nobody's purchase: customers whose only order was cancelled
    # are valued nowhere, and fully returned lines earn nothing
    clean = DeltaTable(str(project_copy / "data/02_intermediate/transactions_clean")).to_pandas()
    returned_in_full = clean[clean["returned_quantity"] == clean["quantity"]]
    assert (returned_in_full["quantity"] >= 10_000).any()
    assert (returned_in_full["revenue"] == 0).all()
    cltv = DeltaTable(str(project_copy / "data/07_model_output/customer_cltv")).to_pandas()
    giant_only = set(clean.loc[clean["customer_id"].str.startswith("9000"), "customer_id"])
    assert giant_only and not giant_only & set(cltv["customer_id"])
    assert (cltv["clv"] >= 0).all() and (cltv["expected_average_order_value"] > 0).all()

    # the same input again gives the same tables, as a new version
    summary_path = str(project_copy / "data/03_primary/customer_summary")
    first = DeltaTable(summary_path).to_pandas().sort_values("customer_id")
    run_kedro(project_copy, "data_processing", input_path=str(csv))
    again = DeltaTable(summary_path)
    assert again.version() == 1
    second = again.to_pandas().sort_values("customer_id")
    assert first.reset_index(drop=True).equals(second.reset_index(drop=True))


def test_missing_column_stops_the_run_before_writing(spark, project_copy, whole_run):
    csv = project_copy / "no_price.csv"
    csv.write_text(
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Customer ID,Country\n"
        "1,A,B,1,2011-01-01 10:00:00,12346.0,UK\n"
    )
    with pytest.raises(ValueError, match=r"no_price\.csv: required column 'Price'"):
        run_kedro(project_copy, "data_processing", input_path=str(csv))
    assert not (project_copy / "data/02_intermediate/transactions_clean").exists()
