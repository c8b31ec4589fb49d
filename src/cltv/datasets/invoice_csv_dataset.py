"""``InvoiceCSVDataset``: a raw CSV of invoice lines as all-text Spark columns."""

from __future__ import annotations

import logging
import re
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
        """Column names from the file's header line: for a local file with a plain header,
        read from its first line in Python, without a Spark job (as Spark would name them)."""
        if self._is_local():
            path = Path(urlparse(self._filepath).path)
            if not path.is_file():
                raise DatasetError(f"{self._filepath}: input file not found")
            if path.stat().st_size == 0:
                raise DatasetError(f"{self._filepath}: the file is empty (no header line)")
            columns = self._plain_local_header(path)
            if columns is not None:
                return columns
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

    def _plain_local_header(self, path: Path) -> list[str] | None:
        """The header of a local file from its first line that is not blank, named as Spark
        names it, without a Spark job; None when Spark must read it (escapes, a byte
        order mark, undecodable bytes, quotes within a name, options other than the encoding
        and separator).
        """
        if set(self._load_args) - _PLAIN_HEADER_OPTIONS:
            return None
        encoding = self._load_args.get("encoding", self._load_args.get("charset", "UTF-8"))
        separator = self._load_args.get("sep", self._load_args.get("delimiter", ","))
        try:
            with path.open(encoding=encoding, errors="replace", newline="") as lines:
                # Spark skips blank lines, before the header too
                header = next((line.rstrip("\r\n") for line in lines if line.strip()), None)
        except (LookupError, OSError):
            return None
        if header is None or len(separator) != 1 or any(c in header for c in "\\\ufeff\ufffd"):
            return None
        # each field bare, or whole in quotes with no quote inside
        field = rf'"[^"]*"|[^"{re.escape(separator)}]*'
        if not re.fullmatch(rf"(?:{field})(?:{re.escape(separator)}(?:{field}))*", header):
            return None
        fields = re.findall(rf"(?:^|{re.escape(separator)})({field})", header)
        return _spark_header_names([f[1:-1] if f.startswith('"') else f for f in fields])

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


# reader options under which the first line alone gives the header as Spark reads it
_PLAIN_HEADER_OPTIONS = frozenset({"encoding", "charset", "sep", "delimiter"})


def _spark_header_names(fields: list[str]) -> list[str]:
    """Column names as Spark's CSV reader makes them from header fields: an empty field is
    ``_c<index>``, and a name that repeats (ignoring case) gets its index appended."""
    lowered = [field.lower() for field in fields]
    repeated = {name for name in lowered if lowered.count(name) > 1}
    return [
        f"_c{index}" if not field else f"{field}{index}" if field.lower() in repeated else field
        for index, field in enumerate(fields)
    ]
