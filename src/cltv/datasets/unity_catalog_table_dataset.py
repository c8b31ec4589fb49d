"""``UnityCatalogTableDataset``: a Spark DataFrame stored as a Unity Catalog managed table."""

from __future__ import annotations

import re
from typing import Any

from kedro.io.core import DatasetError
from kedro_datasets._typing import TablePreview
from kedro_datasets._utils.spark_utils import get_spark
from kedro_datasets.databricks import ManagedTableDataset
from pyspark.sql import DataFrame

from cltv.datasets.spark_delta_table_dataset import (
    delta_history,
    table_preview,
    version_back,
)

# Unity Catalog names that need no quoting: letters, digits, underscores, not a digit first.
# Stricter than kedro-datasets' own check (which lets "-" through, and never looks at the
# primary key columns that end up in its ALTER TABLE statements).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def validate_identifier(value: Any, what: str) -> str:
    """``value`` if it is a plain SQL identifier, else a DatasetError naming ``what``."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise DatasetError(
            f"{what} {value!r} is not a valid Unity Catalog identifier: use letters, digits "
            "and underscores, not starting with a digit"
        )
    return value


class UnityCatalogTableDataset(ManagedTableDataset):
    """A Delta table managed by Unity Catalog (``catalog.schema.table``), read and written by
    Spark: kedro-datasets' ``databricks.ManagedTableDataset`` with stricter names, and no
    upsert.

    Catalog, schema and table names, and primary key columns, are validated as identifiers
    when the catalog is built, before any of them reaches SQL. ``write_mode: overwrite``
    replaces the rows and the schema (``saveAsTable`` with Delta's ``overwriteSchema``), as a
    local ``SparkDeltaTableDataset`` does: after a run the table holds that run's rows, with
    that run's columns. ``primary_key`` is declared as the table's PRIMARY KEY constraint after
    a write (kedro-datasets adds it when missing). ``write_mode: upsert`` is refused: a MERGE
    keeps the rows of keys missing from the run, and kedro-datasets' upsert refuses any change
    of columns.

    Example catalog entry (``conf/databricks/catalog.yml``):

    .. code-block:: yaml

        customer_summary:
          type: cltv.datasets.UnityCatalogTableDataset
          catalog: ${runtime_params:catalog, main}
          database: ${runtime_params:schema, cltv_churn}
          table: customer_summary
          write_mode: overwrite
          primary_key: customer_id

        previous_customer_summary:   # what the table held before the latest write
          type: cltv.datasets.UnityCatalogTableDataset
          catalog: ${runtime_params:catalog, main}
          database: ${runtime_params:schema, cltv_churn}
          table: customer_summary
          load_args: {version: -1}

    Example in Python (on Databricks, or any session with Delta and a catalog):

    .. code-block:: python

        dataset = UnityCatalogTableDataset(
            catalog="main", database="cltv_churn", table="scores", write_mode="overwrite"
        )
        dataset.save(spark.createDataFrame([(1, 0.3)], "customer_id long, score double"))
        dataset.load().show()
    """

    def __init__(
        self,
        *,
        table: str,
        catalog: str | None = None,
        database: str = "default",
        write_mode: str | None = None,
        primary_key: str | list[str] | None = None,
        load_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        validate_identifier(table, "table")
        validate_identifier(database, f"{table}: schema")
        if catalog is not None:
            validate_identifier(catalog, f"{table}: catalog")
        keys = [primary_key] if isinstance(primary_key, str) else list(primary_key or [])
        for key in keys:
            validate_identifier(key, f"{table}: primary key column")
        if write_mode == "upsert":
            raise DatasetError(
                f"{table}: write_mode 'upsert' keeps the rows a run no longer writes and fails "
                "when the columns change; use write_mode 'overwrite'"
            )
        self._versions_back = -int((load_args or {}).get("version", 0))
        if self._versions_back < 0:
            raise DatasetError(
                f"{table}: load_args.version counts back from the latest version: use a "
                "negative number, e.g. -1 for the version before the latest"
            )
        super().__init__(
            table=table,
            catalog=catalog,
            database=database,
            write_mode=write_mode,
            primary_key=primary_key,
            **kwargs,
        )

    def load(self) -> DataFrame:
        if not self._versions_back:
            return super().load()
        spark = get_spark()
        name = self._table.full_table_location()
        version = version_back(delta_history(spark, name), -self._versions_back)
        if version is None:
            return spark.table(name).limit(0)
        return spark.read.option("versionAsOf", version).table(name)

    def preview(self, nrows: int = 5) -> TablePreview:
        """First rows for kedro-viz."""
        return table_preview(self.load().limit(nrows).toPandas())
