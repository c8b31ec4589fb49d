"""Project datasets: Delta tables (a path or Unity Catalog), invoice CSVs, MLflow models."""

from cltv.datasets.invoice_csv_dataset import InvoiceCSVDataset
from cltv.datasets.mlflow_champion_dataset import ChampionModel, MlflowChampionDataset
from cltv.datasets.mlflow_churn_model_dataset import (
    MlflowChurnModelDataset,
    ModelWithExample,
    load_churn_model,
)
from cltv.datasets.mlflow_cltv_model_dataset import MlflowCltvModelDataset, load_value_model
from cltv.datasets.spark_delta_table_dataset import SparkDeltaTableDataset
from cltv.datasets.unity_catalog_table_dataset import UnityCatalogTableDataset

__all__ = [
    "ChampionModel",
    "InvoiceCSVDataset",
    "MlflowChampionDataset",
    "MlflowChurnModelDataset",
    "MlflowCltvModelDataset",
    "ModelWithExample",
    "SparkDeltaTableDataset",
    "UnityCatalogTableDataset",
    "load_churn_model",
    "load_value_model",
]
