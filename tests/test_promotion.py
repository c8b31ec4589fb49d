"""Champion / challenger (issue 19): the first run's churn model takes the registry alias; a
later, worse model is registered but does not, and the alias stays where it was."""

from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable

from .conftest import cli_run, run_cli


def _promotion(project) -> dict:
    return json.loads((project / "data/08_reporting/model_promotion.json").read_text())


def _client(project) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


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

    # a deliberately worse challenger: one feature, no BTYD features, on the same customers;
    # trained by the other engine, so a Spark ML model meets a scikit-learn champion
    project = tmp_path / "project"
    shutil.copytree(default_run.project, project)
    (project / "conf/local/parameters_churn_modeling.yml").write_text(
        yaml.safe_dump(
            {
                "churn_modeling": {
                    "engine": "spark_ml",
                    # merged into the base candidates: both, kept small
                    "candidates": {
                        "spark_ml": {
                            "logistic_regression": {"max_iter": 20},
                            "gradient_boosted_trees": {"max_iter": 3},
                        }
                    },
                    "features": {"numeric": ["tenure_days"], "categorical": ["country"]},
                    "btyd_features": [],
                }
            }
        )
    )
    run_cli(project, "--pipelines", "churn_modeling", "--params", f"input_path={default_run.csv}")
    second = _promotion(project)
    assert second["promoted"] is False
    assert second["challenger"]["version"] == version + 1
    # the champion is the first run's model, scored again on the same test customers
    assert second["champion"]["version"] == version
    assert second["champion"]["score"] == pytest.approx(first["challenger"]["score"], rel=1e-9)
    gain = second["challenger"]["score"] - second["champion"]["score"]
    assert gain < 0.005
    assert f"a gain of {gain:+.4f}, below the 0.005 required" in second["reason"]
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


def test_scoring_reproduces_the_training_run_with_its_champion(default_run, scored_again):
    project = scored_again.project
    for table in ("churn_predictions", "customer_cltv"):
        trained = _table(default_run.project, table)
        scored = _table(project, table)
        # nothing changed, so the same model and fit give the same rows, to the last bit
        pd.testing.assert_frame_equal(scored, trained)
    # and no training: no new model version, no new fit
    client = _client(project)
    assert len(client.search_model_versions("name='cltv_churn'")) == 1
    fit = project / "data/06_models/cltv_model_fit.json"
    assert (
        fit.read_text() == (default_run.project / "data/06_models/cltv_model_fit.json").read_text()
    )


def test_scoring_without_a_champion_stops_with_one_line(default_run, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(default_run.project, project)
    (project / "mlflow.db").unlink()  # an empty registry
    finished = cli_run(project, "--pipelines", "scoring")
    assert finished.returncode != 0
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: node check_champion failed: ") or last.startswith(
        "Error: the run failed: "
    ), last
    assert "no version of the churn model cltv_churn has the alias 'champion'" in last
    assert "run the training pipelines first (kedro run)" in last
    assert "Completed node" not in finished.stdout + finished.stderr  # stopped before any work


def _table(project, name) -> pd.DataFrame:
    layer = {"churn_predictions": "07_model_output", "customer_cltv": "07_model_output"}[name]
    frame = DeltaTable(str(project / "data" / layer / name)).to_pandas()
    return frame.sort_values("customer_id").reset_index(drop=True)
