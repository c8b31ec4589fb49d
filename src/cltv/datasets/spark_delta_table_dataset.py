"""``SparkDeltaTableDataset``: a Spark DataFrame stored as a Delta Lake table at a path."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, QueryBuilder
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, create_table_with_add_actions
from kedro.io.core import AbstractDataset, DatasetError
from kedro_datasets._typing import TablePreview
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from cltv.spark import session_has_delta, spark_session

logger = logging.getLogger(__name__)

_ENGINES = ("auto", "delta-spark", "delta-rs")
_SAVE_MODES = ("overwrite", "append")
# Parquet statistics that are safe to copy into Delta file stats for data skipping.
_STATS_TYPES = {"byte", "short", "integer", "long", "float", "double", "date"}
# Spark marks a null partition value with this directory name.
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


class SparkDeltaTableDataset(AbstractDataset[DataFrame, DataFrame]):
    """A Spark DataFrame stored as a Delta Lake table on a filesystem path.

    Two engines write the same Delta tables (a folder with ``_delta_log/``):

    * ``delta-spark`` when the Spark session loads Delta itself (Databricks, or the Delta jars
      available offline, see ``cltv.spark``);
    * ``delta-rs`` otherwise: Spark reads the table's data files and writes new ones in
      parallel, and the ``deltalake`` package commits them to the Delta log. Nothing passes
      through the driver but file names, and no Maven download is ever attempted.

    ``engine: auto`` (the default) picks the first that the session supports. Writes are atomic
    on both engines: data files become part of the table only when the commit lands, so a save
    that fails leaves the previous version as it was. ``load_args.version`` reads an earlier
    version (time travel): a version number, or a negative number of writes counted back from
    the latest (``-1``: what the table held before its latest write, i.e. before this run wrote
    it; maintenance commits such as OPTIMIZE are not writes). A table with no earlier write
    loads as its columns with no rows, so that a first
    run has "nothing before" to compare with instead of failing.

    Example catalog entry:

    .. code-block:: yaml

        customer_summary:
          type: cltv.datasets.SparkDeltaTableDataset
          filepath: data/03_primary/customer_summary
          save_args:
            mode: overwrite          # or append
            partition_by: [country]  # optional
          load_args:
            version: 3               # optional: time travel; -1 is the version before the latest

    Example in Python:

    .. code-block:: python

        dataset = SparkDeltaTableDataset(filepath="data/03_primary/customer_summary")
        dataset.save(spark.createDataFrame([(1, "a")], "id long, name string"))
        dataset.load().show()
    """

    DEFAULT_SAVE_ARGS: ClassVar[dict[str, Any]] = {"mode": "overwrite", "partition_by": []}
    DEFAULT_LOAD_ARGS: ClassVar[dict[str, Any]] = {"version": None}

    def __init__(
        self,
        *,
        filepath: str,
        engine: str = "auto",
        save_args: dict[str, Any] | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if engine not in _ENGINES:
            raise DatasetError(f"engine must be one of {_ENGINES}, not {engine!r}")
        self._filepath = str(filepath)
        self._engine = engine
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        if self._save_args["mode"] not in _SAVE_MODES:
            raise DatasetError(
                f"{self._filepath}: save_args.mode must be one of {_SAVE_MODES}, "
                f"not {self._save_args['mode']!r}"
            )
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "engine": self._engine,
            "save_args": self._save_args,
            "load_args": self._load_args,
        }

    @staticmethod
    def _spark() -> SparkSession:
        return spark_session()

    def _resolve_engine(self, spark: SparkSession) -> str:
        has_delta = session_has_delta(spark)
        if self._engine == "delta-spark" and not has_delta:
            raise DatasetError(
                f"{self._filepath}: engine 'delta-spark' requested but the Spark session has no "
                "Delta extension (its jars are not available); use engine 'auto' or 'delta-rs'"
            )
        if self._engine == "auto":
            return "delta-spark" if has_delta else "delta-rs"
        return self._engine

    @property
    def _local_path(self) -> Path:
        parsed = urlparse(self._filepath)
        if parsed.scheme not in ("", "file"):
            raise DatasetError(
                f"{self._filepath}: the delta-rs engine writes local paths only; on object "
                "storage use a session with delta-spark (Databricks) or a Unity Catalog table"
            )
        return Path(parsed.path if parsed.scheme else self._filepath).absolute()

    # ---------------------------------------------------------------- load
    def load(self) -> DataFrame:
        spark = self._spark()
        engine = self._resolve_engine(spark)
        version = self._load_args.get("version")
        if version is not None and int(version) < 0:
            return self._load_counted_back(spark, engine, int(version))
        logger.info(
            "Loading Delta table %s%s via %s",
            self._filepath,
            "" if version is None else f" at version {version}",
            engine,
        )
        return self._load_version(spark, engine, None if version is None else int(version))

    def _load_version(self, spark: SparkSession, engine: str, version: int | None) -> DataFrame:
        if engine == "delta-rs":
            return self._load_with_delta_rs(spark, version)
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self._filepath)

    def _load_counted_back(self, spark: SparkSession, engine: str, back: int) -> DataFrame:
        if engine == "delta-rs":
            history = [(h["version"], h["operation"]) for h in self._delta_table().history()]
        else:
            history = delta_history(spark, f"delta.`{self._filepath}`")
        version = version_back(history, back)
        if version is None:
            logger.info(
                "Delta table %s has no version %d writes back from the latest: no rows",
                self._filepath,
                -back,
            )
            return self._load_version(spark, engine, None).limit(0)
        logger.info("Loading Delta table %s at version %d via %s", self._filepath, version, engine)
        return self._load_version(spark, engine, version)

    def _delta_table(self, version: int | None = None) -> DeltaTable:
        path = str(self._local_path)
        if not DeltaTable.is_deltatable(path):
            raise DatasetError(f"{self._filepath}: not a Delta table (no _delta_log found)")
        return DeltaTable(path, version=version)

    def _load_with_delta_rs(self, spark: SparkSession, version: int | None) -> DataFrame:
        table = self._delta_table(version)
        schema = _spark_schema(table)
        reader_features = set(table.protocol().reader_features or [])
        if reader_features & {"deletionVectors", "columnMapping"}:
            # Spark's parquet reader would see deleted rows or physical column names: let
            # delta-rs's query engine resolve them (pyarrow datasets refuse both features),
            # at the cost of passing the table through the driver. Not to_pyarrow_table():
            # with pyarrow 25 a process that called it may abort at exit (apache/arrow#34314)
            logger.warning(
                "%s uses %s; reading it through the driver with delta-rs",
                self._filepath,
                ", ".join(sorted(reader_features)),
            )
            rows = (
                QueryBuilder().register("delta_table", table).execute("SELECT * FROM delta_table")
            )
            return spark.createDataFrame(
                pa.RecordBatchReader.from_stream(rows).read_pandas(), schema=schema
            )
        files = table.file_uris()
        if not files:
            return spark.createDataFrame([], schema)
        reader = spark.read.schema(schema)
        if table.metadata().partition_columns:
            reader = reader.option("basePath", str(self._local_path))
        return reader.parquet(*files).select(*[f"`{name}`" for name in schema.fieldNames()])

    # ---------------------------------------------------------------- save
    def save(self, data: DataFrame) -> None:
        engine = self._resolve_engine(data.sparkSession)
        mode = self._save_args["mode"]
        partition_by = list(self._save_args.get("partition_by") or [])
        logger.info("Saving Delta table %s (%s) via %s", self._filepath, mode, engine)
        if engine == "delta-spark":
            writer = data.write.format("delta").mode(mode)
            if mode == "overwrite":
                writer = writer.option("overwriteSchema", "true")
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            writer.save(self._filepath)
            return
        self._save_with_delta_rs(data, mode, partition_by)

    def _save_with_delta_rs(self, data: DataFrame, mode: str, partition_by: list[str]) -> None:
        table_dir = self._local_path
        existing = DeltaTable(str(table_dir)) if DeltaTable.is_deltatable(str(table_dir)) else None
        if mode == "append" and existing is not None:
            self._check_append_schema(existing, data.schema)
        table_dir.mkdir(parents=True, exist_ok=True)
        staging = table_dir / f"_staging-{uuid.uuid4().hex}"
        moved: list[Path] = []
        try:
            self._write_parquet(data, staging, partition_by)
            actions = []
            for written in sorted(staging.rglob("*.parquet")):
                partition_values = _partition_values(written.relative_to(staging))
                relative = _table_relative_path(partition_values, written.name)
                target = table_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(written, target)
                moved.append(target)
                actions.append(self._add_action(target, relative, partition_values, data.schema))
            schema = DeltaSchema.from_json(data.schema.json())
            self._commit(existing, table_dir, actions, schema, mode, partition_by)
        except BaseException:
            # the commit did not land: the files are not part of any version, remove them
            for path in moved:
                path.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _check_append_schema(self, table: DeltaTable, schema: StructType) -> None:
        existing = _spark_schema(table)
        as_types = lambda s: [(f.name, f.dataType.simpleString()) for f in s.fields]  # noqa: E731
        if as_types(existing) != as_types(schema):
            raise DatasetError(
                f"{self._filepath}: cannot append rows of schema {schema.simpleString()} to a "
                f"table of schema {existing.simpleString()}; overwrite it instead"
            )

    @staticmethod
    def _write_parquet(data: DataFrame, staging: Path, partition_by: list[str]) -> None:
        spark = data.sparkSession
        # Delta needs INT64 microsecond timestamps, not Spark's INT96 default
        if spark.conf.get("spark.sql.parquet.outputTimestampType") != "TIMESTAMP_MICROS":
            spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        # "error", not its alias "errorifexists": Spark Connect knows only the former
        writer = data.write.mode("error").option("compression", "snappy")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(str(staging))

    @staticmethod
    def _add_action(
        file: Path, relative: PurePosixPath, partition_values: dict, schema: StructType
    ) -> AddAction:
        stat = file.stat()
        return AddAction(
            # the physical path: deltalake URI-encodes it for the log itself
            path=relative.as_posix(),
            size=stat.st_size,
            partition_values=partition_values,
            modification_time=int(stat.st_mtime * 1000),
            data_change=True,
            stats=_file_stats(file, schema),
        )

    def _commit(
        self,
        existing: DeltaTable | None,
        table_dir: Path,
        actions: list[AddAction],
        schema: DeltaSchema,
        mode: str,
        partition_by: list[str],
    ) -> None:
        if existing is not None:
            existing.create_write_transaction(actions, mode, schema, partition_by=partition_by)
            logger.info("Committed %s version %d", self._filepath, existing.version() + 1)
        else:
            create_table_with_add_actions(
                str(table_dir), schema, actions, mode="error", partition_by=partition_by
            )
            logger.info("Created Delta table %s", self._filepath)

    # ---------------------------------------------------------------- maintenance
    def vacuum(self, retention_hours: int = 168) -> list[str]:
        """Delete what the table's latest version does not use and is older than
        ``retention_hours`` (a week by default): the data files of replaced versions, and what
        a save killed before its commit left behind (its data files, its staging folder).

        Earlier versions whose files are deleted can no longer be read: keep the retention
        longer than the time between two runs, or the drift report (which reads the version
        before the latest write) has nothing to compare. ``retention_hours=0`` cleans up
        at once; run it only when no save of this table is in progress. Returns the deleted
        paths, relative to the table.
        """
        removed = self._delta_table().vacuum(
            retention_hours=retention_hours,
            dry_run=False,
            enforce_retention_duration=False,
            full=True,  # also files that no commit ever mentioned: a killed save's
        )
        # deltalake leaves underscore folders alone, a killed save's staging folder included
        cutoff = time.time() - retention_hours * 3600
        for staging in sorted(self._local_path.glob("_staging-*")):
            if staging.stat().st_mtime <= cutoff:
                shutil.rmtree(staging, ignore_errors=True)
                removed.append(f"{staging.name}/")
        logger.info("Vacuumed %s: %d file(s) or folder(s) deleted", self._filepath, len(removed))
        return removed

    # ---------------------------------------------------------------- helpers
    def _exists(self) -> bool:
        try:
            return DeltaTable.is_deltatable(str(self._local_path))
        except DatasetError:
            return False

    def preview(self, nrows: int = 5) -> TablePreview:
        """First rows for kedro-viz, read with delta-rs: no Spark session needed."""
        return table_preview(self._delta_table().to_pyarrow_dataset().head(nrows).to_pandas())


# Commits that leave a table's rows as they were (Databricks' automatic OPTIMIZE, the NOT NULL
# and PRIMARY KEY constraints a Unity Catalog table's primary_key adds after a write): counting
# versions back skips them, so "the version before" is the one an earlier write left.
MAINTENANCE_OPERATIONS = frozenset(
    {
        "OPTIMIZE",
        "VACUUM START",
        "VACUUM END",
        "SET TBLPROPERTIES",
        "UNSET TBLPROPERTIES",
        "ADD CONSTRAINT",
        "DROP CONSTRAINT",
        "CHANGE COLUMN",
        "UPGRADE PROTOCOL",
        "ANALYZE",
    }
)


def delta_history(spark: SparkSession, table: str) -> list[tuple[int, str]]:
    """``(version, operation)`` of every commit of a Delta table that Spark's Delta reads
    (``delta.`path```, or a catalog name)."""
    rows = spark.sql(f"DESCRIBE HISTORY {table}").select("version", "operation").collect()
    return [(int(row["version"]), row["operation"]) for row in rows]


def version_back(history: list[tuple[int, str]], back: int) -> int | None:
    """The version that the write ``-back`` writes before the latest one left (``back`` < 0);
    None when the table has fewer writes. Maintenance commits are not writes."""
    writes = sorted(v for v, operation in history if operation not in MAINTENANCE_OPERATIONS)
    return writes[back - 1] if len(writes) >= 1 - back else None


def table_preview(head: pd.DataFrame) -> TablePreview:
    """A kedro-viz table preview of a few rows."""
    # through JSON so timestamps and NaN become what kedro-viz can serialise
    return TablePreview(json.loads(head.to_json(orient="split", date_format="iso", index=False)))


def _spark_schema(table: DeltaTable) -> StructType:
    # a Delta schema's JSON is Spark's StructType JSON
    return StructType.fromJson(json.loads(table.schema().to_json()))


def _partition_values(spark_relative: Path) -> dict[str, str | None]:
    """Partition values from the ``key=value`` folders Spark wrote (Spark %-escapes values)."""
    values = {}
    for part in spark_relative.parts[:-1]:
        key, _, value = part.partition("=")
        values[unquote(key)] = None if value == _NULL_PARTITION else unquote(value)
    return values


def _table_relative_path(partition_values: dict[str, str | None], filename: str) -> PurePosixPath:
    """Where a data file lives in the table: folders named as delta-rs names them."""
    folders = [
        f"{quote(key, safe='')}={_NULL_PARTITION if value is None else quote(value, safe='')}"
        for key, value in partition_values.items()
    ]
    return PurePosixPath(*folders, filename)


def _file_stats(file: Path, schema: StructType) -> str:
    """Delta ``stats`` JSON (row count, null counts, min/max) from the parquet footer."""
    parquet = pq.ParquetFile(file).metadata
    types = {field.name: field.dataType.typeName() for field in schema.fields}
    null_count: dict[str, int] = {}
    minimum: dict[str, Any] = {}
    maximum: dict[str, Any] = {}
    for column in range(parquet.num_columns):
        name = parquet.schema.column(column).path
        if name not in types:
            continue
        chunks = [
            parquet.row_group(g).column(column).statistics for g in range(parquet.num_row_groups)
        ]
        if not chunks or any(s is None or not s.has_null_count for s in chunks):
            continue
        null_count[name] = sum(s.null_count for s in chunks)
        with_values = [s for s in chunks if s.has_min_max]
        if types[name] in _STATS_TYPES and with_values and len(with_values) == len(chunks):
            low, high = min(s.min for s in with_values), max(s.max for s in with_values)
            if isinstance(low, float) and not (math.isfinite(low) and math.isfinite(high)):
                continue
            minimum[name] = low.isoformat() if hasattr(low, "isoformat") else low
            maximum[name] = high.isoformat() if hasattr(high, "isoformat") else high
    return json.dumps(
        {
            "numRecords": parquet.num_rows,
            "minValues": minimum,
            "maxValues": maximum,
            "nullCount": null_count,
        }
    )
