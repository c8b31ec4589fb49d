"""The whole default pipeline over Spark Connect, as Databricks Connect and serverless run it.

``SPARK_REMOTE=local[2]`` makes pyspark start a local Spark Connect server and talk to it over
gRPC only: any RDD or SparkContext call in a node fails there. The run is the shared second
default run, ``trained_twice``: in its own process (this test process already holds a classic
session), on the same input as the classic ``default_run``, and it must produce the same
tables and numbers.
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from deltalake import DeltaTable

# every Delta table whose rows depend only on the input (not on run time or model objects)
COMPARED_TABLES = {
    "transactions_clean": (
        "02_intermediate",
        ["invoice", "stock_code", "invoice_date", "quantity", "price", "description"],
    ),
    "customer_summary": ("03_primary", ["customer_id"]),
    "customer_features": ("04_feature", ["customer_id"]),
    "churn_model_input": ("05_model_input", ["customer_id"]),
}


def _table(project, layer, name, keys) -> pd.DataFrame:
    frame = DeltaTable(str(project / "data" / layer / name)).to_pandas()
    return frame.sort_values(keys).reset_index(drop=True)


def _json(project, relative) -> dict:
    return json.loads((project / "data" / relative).read_text())


@pytest.fixture(scope="module")
def connect_run(trained_twice):
    return trained_twice.project, trained_twice.log


def _written_by(run, path) -> None:
    """The connect run's project began as a copy of the classic run's: what is compared must
    be what the connect run wrote, not the copy it started from."""
    if (path / "_delta_log").is_dir():
        written = DeltaTable(str(path)).history(1)[0]["timestamp"] / 1000
    else:
        written = path.stat().st_mtime
    assert written >= run.started, f"{path} was not written by the Spark Connect run"


def test_run_log_says_spark_connect_is_used(connect_run):
    _, log = connect_run
    assert "session over Spark Connect (local[2])" in log
    assert "Delta tables via delta-rs (deltalake)" in log
    assert "Pipeline execution completed successfully" in log


def test_spark_connect_run_gives_the_classic_run_tables(connect_run, default_run, trained_twice):
    project, _ = connect_run
    for name, (layer, keys) in COMPARED_TABLES.items():
        _written_by(trained_twice, project / "data" / layer / name)
        connect = _table(project, layer, name, keys)
        classic = _table(default_run.project, layer, name, keys)
        assert len(connect) > 0, name
        pd.testing.assert_frame_equal(connect, classic, check_exact=False, rtol=1e-12)


def test_spark_connect_run_gives_the_classic_run_models(connect_run, default_run, trained_twice):
    project, _ = connect_run
    runs = (project, default_run.project)
    for written in (
        "06_models/cltv_model_params.json",
        "08_reporting/cltv_validation.json",
        "08_reporting/churn_metrics.json",
        "07_model_output/churn_predictions",
        "07_model_output/customer_cltv",
    ):
        _written_by(trained_twice, project / "data" / written)
    connect, classic = (_json(p, "06_models/cltv_model_params.json") for p in runs)
    for model in ("bgnbd", "gamma_gamma"):
        assert connect[model] == pytest.approx(classic[model], rel=1e-9), model
    connect, classic = (_json(p, "08_reporting/cltv_validation.json") for p in runs)
    for metric in ("mae_bgnbd", "mae_naive", "total_actual"):
        assert connect[metric] == pytest.approx(classic[metric], rel=1e-9), metric
    connect, classic = (_json(p, "08_reporting/churn_metrics.json") for p in runs)
    for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "n_train", "n_test"):
        assert connect[metric] == pytest.approx(classic[metric], rel=1e-9), metric
    predictions = DeltaTable(str(project / "data/07_model_output/churn_predictions")).to_pandas()
    cltv = DeltaTable(str(project / "data/07_model_output/customer_cltv")).to_pandas()
    customers = _table(project, "03_primary", "customer_summary_current", ["customer_id"])
    assert len(predictions) == len(cltv) == len(customers)
    # the churn reasons' global view is observed on the write over Connect too
    _written_by(trained_twice, project / "data/08_reporting/churn_reason_importance.json")
    connect, classic = (_json(p, "08_reporting/churn_reason_importance.json") for p in runs)
    assert connect["observed"] and connect["customers"] == len(predictions)
    assert [f["feature"] for f in connect["features"]] == [
        f["feature"] for f in classic["features"]
    ]


def test_spark_connect_run_logs_the_model_to_mlflow(connect_run):
    project, _ = connect_run
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["cltv-churn"]).iloc[0]
    assert run["status"] == "FINISHED"
    assert run["metrics.churn.roc_auc"] > 0.5
    # the driver-trained model, logged as a scikit-learn model of that run
    info = mlflow.models.get_model_info(f"runs:/{run.run_id}/churn_model")
    assert "sklearn" in info.flavors
