"""A production table holds exactly one run's rows, on Databricks as locally: each write
replaces the rows and the columns (a table written before an upgrade that adds columns takes
them), and runs the query, so an ``Observation`` on the written DataFrame (the churn reasons'
global view) is there as soon as the save returns.

This machine has no Delta jars, so Spark cannot write ``format("delta")`` itself. The writer
calls are recorded as the datasets make them and then carried out with the same mode and
options in parquet, which replaces rows and columns on overwrite as Delta does with
``overwriteSchema``; what Delta does with that option is Delta's own. The delta-rs path, which
runs here for real, is tested in tests/test_delta_dataset.py and tests/test_churn_reasons.py.
"""

from __future__ import annotations

import uuid

import pytest
from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql.readwriter import DataFrameWriter

from cltv.datasets import (
    SparkDeltaTableDataset,
    UnityCatalogTableDataset,
    spark_delta_table_dataset,
)
from cltv.pipelines.churn_modeling.reasons import GlobalImportance
from tests.test_databricks_bundle import _databricks_config

BEFORE_UPGRADE = "customer_id long, churn_probability double"
AFTER_UPGRADE = "customer_id long, churn_probability double, churn_reason_text string"


@pytest.fixture
def delta_writes(monkeypatch) -> list[dict]:
    """Every ``DataFrameWriter`` save, as ``{"format", "mode", "options", "target"}``; a
    ``format("delta")`` write is carried out as parquet."""
    writes: list[dict] = []
    original = {
        name: getattr(DataFrameWriter, name)
        for name in ("format", "mode", "option", "save", "saveAsTable")
    }

    def spec(writer: DataFrameWriter) -> dict:
        if not hasattr(writer, "_recorded"):
            writer._recorded = {"format": None, "mode": None, "options": {}}
        return writer._recorded

    def format_(self, source):
        spec(self)["format"] = source
        return original["format"](self, "parquet" if source == "delta" else source)

    def mode(self, save_mode):
        if save_mode is not None:  # pyspark's save() calls mode(None) itself
            spec(self)["mode"] = save_mode
        return original["mode"](self, save_mode)

    def option(self, key, value):
        spec(self)["options"][key] = value
        return original["option"](self, key, value)

    def save(self, path=None, *args, **kwargs):
        writes.append({**spec(self), "target": path})
        return original["save"](self, path, *args, **kwargs)

    def save_as_table(self, name, *args, **kwargs):
        writes.append({**spec(self), "target": name})
        return original["saveAsTable"](self, name, *args, **kwargs)

    for name, replacement in (
        ("format", format_),
        ("mode", mode),
        ("option", option),
        ("save", save),
        ("saveAsTable", save_as_table),
    ):
        monkeypatch.setattr(DataFrameWriter, name, replacement)
    return writes


def _overwrite(target: str) -> dict:
    """A Delta write that replaces the rows and the schema of ``target``."""
    return {
        "format": "delta",
        "mode": "overwrite",
        "options": {"overwriteSchema": "true"},
        "target": target,
    }


def _scored(spark, rows, schema) -> tuple[DataFrame, Observation]:
    """Scored customers, observed as ``explained_scores`` observes them: the customer count
    and the total |contribution| of one input."""
    observation = Observation("churn_reasons")
    frame = spark.createDataFrame(rows, schema).observe(
        observation,
        F.count(F.lit(1)).alias("customers"),
        F.sum(F.abs(F.col("churn_probability") - 0.5)).alias("recency_days"),
    )
    return frame, observation


def _observed_at_once(observation: Observation, monkeypatch) -> dict:
    # the write has returned: the observation must be there, not after GlobalImportance's wait
    monkeypatch.setattr(GlobalImportance, "WAIT_SECONDS", 5.0)
    return GlobalImportance(observation, "xgboost").get()


@pytest.fixture
def local_schema(spark, tmp_path):
    """A schema of Spark's own catalog with its tables under ``tmp_path`` (not ./spark-warehouse),
    standing in for ``<catalog>.<schema>``."""
    name = f"cltv_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE DATABASE {name} LOCATION '{tmp_path / name}'")
    yield name
    spark.sql(f"DROP DATABASE {name} CASCADE")


def test_a_unity_catalog_customer_table_holds_the_last_run_with_its_new_columns(
    spark, project_root, local_schema, delta_writes, monkeypatch
):
    """``churn_predictions`` as conf/databricks builds it: the run after an upgrade that added a
    column overwrites the table written before it (schema too), customer 1 and 3, not scored
    this time, are gone, and the global view is observed on that write."""
    entry = _databricks_config(project_root)["catalog"]["churn_predictions"]
    arguments = {key: value for key, value in entry.items() if key != "type"}
    # Spark's own catalog here, not Unity Catalog's main.cltv_churn
    table = UnityCatalogTableDataset(**{**arguments, "catalog": None, "database": local_schema})

    table.save(spark.createDataFrame([(1, 0.9), (2, 0.2), (3, 0.7)], BEFORE_UPGRADE))
    scored, observation = _scored(spark, [(2, 0.25, None), (4, 0.75, "bought less")], AFTER_UPGRADE)
    table.save(scored)

    loaded = table.load()
    assert loaded.columns == ["customer_id", "churn_probability", "churn_reason_text"]
    assert sorted(tuple(row) for row in loaded.collect()) == [
        (2, 0.25, None),
        (4, 0.75, "bought less"),
    ]
    assert delta_writes == [_overwrite(f"`{local_schema}`.`churn_predictions`")] * 2
    assert _observed_at_once(observation, monkeypatch) == {
        "model": "xgboost",
        "customers": 2,
        "observed": True,
        "features": [{"feature": "recency_days", "mean_abs_contribution": 0.25}],
    }


def test_a_local_table_written_by_delta_spark_takes_the_new_columns(
    spark, tmp_path, delta_writes, monkeypatch
):
    """Where the session has Delta (its jars on disk), ``SparkDeltaTableDataset`` overwrites
    with ``overwriteSchema`` as Unity Catalog tables do."""
    monkeypatch.setattr(spark_delta_table_dataset, "session_has_delta", lambda session: True)
    path = str(tmp_path / "churn_predictions")
    table = SparkDeltaTableDataset(filepath=path)

    table.save(spark.createDataFrame([(1, 0.9), (2, 0.2), (3, 0.7)], BEFORE_UPGRADE))
    scored, observation = _scored(spark, [(2, 0.25, None), (4, 0.75, "bought less")], AFTER_UPGRADE)
    table.save(scored)

    written = spark.read.parquet(path)  # what the delta writes became here
    assert written.columns == ["customer_id", "churn_probability", "churn_reason_text"]
    assert sorted(tuple(row) for row in written.collect()) == [
        (2, 0.25, None),
        (4, 0.75, "bought less"),
    ]
    assert delta_writes == [_overwrite(path)] * 2
    assert _observed_at_once(observation, monkeypatch)["customers"] == 2
