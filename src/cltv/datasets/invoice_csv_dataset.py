"""``InvoiceCSVDataset``: a raw CSV of invoice lines as all-text Spark columns."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from kedro.io.core import AbstractDataset, DatasetError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from cltv.spark import spark_session

logger = logging.getLogger(__name__)

CORRUPT_RECORD_COLUMN = "_corrupt_record"


class InvoiceCSVDataset(AbstractDataset[DataFrame, None]):
    """Loads a CSV with a header as Spark string columns, keeping malformed rows.

    Every column is read as text, named by the file's own header, so that no value is lost to
    a failed cast: parsing happens later in Spark, where a bad value can be quarantined with a
    reason. Rows whose number of fields differs from the header keep their raw text in
    ``_corrupt_record``. An unreadable or missing file raises one error naming the file.

    Example catalog entry (the path is a run-time parameter, see ``conf/base/catalog.yml``):

    .. code-block:: yaml

        raw_transactions:
          type: cltv.datasets.InvoiceCSVDataset
          filepath: ${runtime_params:input_path, data/01_raw/online_retail_ii_sample.csv}
          load_args:
            encoding: UTF-8
            sep: ","

    Example in Python:

    .. code-block:: python

        raw = InvoiceCSVDataset(filepath="data/01_raw/online_retail_ii_sample.csv").load()
        raw.printSchema()
    """

    DEFAULT_LOAD_ARGS: ClassVar[dict[str, Any]] = {"encoding": "UTF-8", "sep": ","}

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = str(filepath)
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "load_args": self._load_args}

    def _is_local(self) -> bool:
        return urlparse(self._filepath).scheme in ("", "file")

    def header(self, spark: SparkSession) -> list[str]:
        """Column names from the file's header line."""
        if self._is_local():
            path = Path(urlparse(self._filepath).path)
            if not path.is_file():
                raise DatasetError(f"{self._filepath}: input file not found")
            if path.stat().st_size == 0:
                raise DatasetError(f"{self._filepath}: the file is empty (no header line)")
        try:
            columns = (
                spark.read.options(**self._load_args)
                .option("header", True)
                .option("inferSchema", False)
                .csv(self._filepath)
                .columns
            )
        except Exception as error:
            raise DatasetError(f"{self._filepath}: cannot read as CSV: {error}") from error
        if not columns:
            raise DatasetError(f"{self._filepath}: no header line")
        return columns

    def load(self) -> DataFrame:
        spark = spark_session()
        columns = self.header(spark)
        schema = StructType(
            [StructField(name, StringType()) for name in columns]
            + [StructField(CORRUPT_RECORD_COLUMN, StringType())]
        )
        logger.info("Reading %s (%d columns: %s)", self._filepath, len(columns), ", ".join(columns))
        return (
            spark.read.options(**self._load_args)
            .option("header", True)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_RECORD_COLUMN)
            .schema(schema)
            .csv(self._filepath)
        )

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._filepath}: raw input is read-only")

    def _exists(self) -> bool:
        if self._is_local():
            return Path(urlparse(self._filepath).path).is_file()
        return True
