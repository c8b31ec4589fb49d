"""Project datasets: Delta tables (a path or Unity Catalog), invoice CSVs, MLflow models.

Each class is imported when first asked for (``cltv.datasets.SparkDeltaTableDataset``, as the
catalog does, or ``from cltv.datasets import …``): the MLflow model datasets bring scipy and
MLflow's model flavors, which a run's parameter check and start-up do not need.
"""

from __future__ import annotations

import importlib
from typing import Any

# each name and the module it lives in
_MODULES = {
    "InvoiceCSVDataset": "invoice_csv_dataset",
    "ChampionModel": "mlflow_champion_dataset",
    "MlflowChampionDataset": "mlflow_champion_dataset",
    "MlflowChurnModelDataset": "mlflow_churn_model_dataset",
    "ModelWithExample": "mlflow_churn_model_dataset",
    "load_churn_model": "mlflow_churn_model_dataset",
    "MlflowCltvModelDataset": "mlflow_cltv_model_dataset",
    "load_value_model": "mlflow_cltv_model_dataset",
    "SparkDeltaTableDataset": "spark_delta_table_dataset",
    "UnityCatalogTableDataset": "unity_catalog_table_dataset",
}

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


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULES})
