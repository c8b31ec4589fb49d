"""How good could a churn model be on ``cltv.synthetic`` data? Two oracles for held-out customers.

* ``bayes``: the best any model can do from a customer's history, knowing the true population
  parameters. Under BG/NBD, (frequency, recency, T) are sufficient, and

      P(no purchase in (T, T+t]) = 1 - P(alive) + P(alive) * ((alpha+T) / (alpha+T+t))^(r+x)

  because, given alive at T, the rate's posterior is Gamma(r+x, alpha+T) (Fader, Hardie & Lee
  2005, eq. 11 for P(alive)).
* ``latent``: knowing what nobody can observe, each customer's drawn rate and dropout day:
  1 if already dropped out at ``calibration_end``, else exp(-lambda t). An upper bound.

``python -m tests.churn_oracle --csv PATH [--project .]`` compares the churn model of the
project's last ``kedro run`` on that CSV (generated with ``--latent``) with both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from cltv.models import BetaGeoModel


def latent_churn_probability(
    latent: pd.DataFrame, calibration_end: str, horizon_weeks: float
) -> pd.Series:
    """P(no occasion in the holdout | the customer's true rate and dropout day)."""
    dropped = pd.to_datetime(latent["dropout_day"]) <= pd.Timestamp(calibration_end)
    quiet = np.exp(-latent["purchase_rate_per_week"] * horizon_weeks)
    return pd.Series(np.where(dropped, 1.0, quiet), index=latent["customer_id"])


def compare(
    test: pd.DataFrame,
    summary: pd.DataFrame,
    latent: pd.DataFrame,
    truth: dict,
    analysis_period: dict,
) -> dict[str, dict[str, float]]:
    """ROC-AUC and PR-AUC of the model, the Bayes oracle and the latent oracle on ``test``
    (columns ``customer_id``, ``churned``, ``churn_probability``); ``summary`` in weeks."""
    horizon_weeks = analysis_period["holdout_days"] / 7.0
    rows = test.merge(summary[["customer_id", "frequency", "recency", "T"]], on="customer_id")
    rows["bayes"] = BetaGeoModel.from_params(truth["bgnbd"]).predict_no_purchase(
        horizon_weeks, rows["frequency"], rows["recency"], rows["T"]
    )
    latent_p = latent_churn_probability(latent, analysis_period["calibration_end"], horizon_weeks)
    rows["latent"] = rows["customer_id"].map(latent_p)
    return {
        name: {
            "roc_auc": float(roc_auc_score(rows["churned"], rows[column])),
            "pr_auc": float(average_precision_score(rows["churned"], rows[column])),
        }
        for name, column in (
            ("model", "churn_probability"),
            ("bayes", "bayes"),
            ("latent", "latent"),
        )
    } | {"n_test": len(rows)}


def main() -> None:
    import mlflow
    import yaml
    from deltalake import DeltaTable
    from pyspark.sql import functions as F

    from cltv.datasets import SparkDeltaTableDataset, load_churn_model
    from cltv.pipelines.churn_modeling.nodes import churn_scores
    from cltv.spark import get_or_create_spark_session

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", required=True, help="generated CSV the last run used")
    parser.add_argument("--project", default=".", help="project folder of that run")
    args = parser.parse_args()
    project = Path(args.project).resolve()
    get_or_create_spark_session(yaml.safe_load((project / "conf/base/spark.yml").read_text()))
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run = mlflow.search_runs(
        experiment_names=["cltv-churn"], order_by=["start_time DESC"], max_results=1
    ).iloc[0]
    model = load_churn_model(f"runs:/{run.run_id}/churn_model")
    model_input = SparkDeltaTableDataset(
        filepath=str(project / "data/05_model_input/churn_model_input")
    ).load()
    test = (
        churn_scores(model, model_input.filter(F.col("split") == "test"))
        .select("customer_id", "churned", "churn_probability")
        .toPandas()
    )
    summary = DeltaTable(str(project / "data/03_primary/customer_summary")).to_pandas()
    period = json.loads((project / "data/03_primary/analysis_period.json").read_text())
    truth = json.loads(Path(f"{args.csv}.truth.json").read_text())
    latent = pd.read_parquet(f"{args.csv}.latent.parquet")
    print(json.dumps(compare(test, summary, latent, truth, period), indent=2))


if __name__ == "__main__":
    main()
