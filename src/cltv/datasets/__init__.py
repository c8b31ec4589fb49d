"""Project datasets: Delta tables for Spark DataFrames, raw invoice CSVs, Spark ML models."""

from cltv.datasets.invoice_csv_dataset import InvoiceCSVDataset
from cltv.datasets.mlflow_spark_model_dataset import MlflowSparkModelDataset, SparkModelWithExample
from cltv.datasets.spark_delta_table_dataset import SparkDeltaTableDataset

__all__ = [
    "InvoiceCSVDataset",
    "MlflowSparkModelDataset",
    "SparkDeltaTableDataset",
    "SparkModelWithExample",
]
