"""``churn_modeling``: churn prediction on Spark ML, tracked in MLflow by kedro-mlflow."""

from cltv.pipelines.churn_modeling.pipeline import create_pipeline

__all__ = ["create_pipeline"]
