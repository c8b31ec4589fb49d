"""Project datasets: Delta tables for Spark DataFrames, and raw invoice CSVs."""

from cltv.datasets.invoice_csv_dataset import InvoiceCSVDataset
from cltv.datasets.spark_delta_table_dataset import SparkDeltaTableDataset

__all__ = ["InvoiceCSVDataset", "SparkDeltaTableDataset"]
