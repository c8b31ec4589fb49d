"""SparkDeltaTableDataset writes real Delta tables that other Delta readers agree on."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from kedro.io.core import DatasetError

from cltv.datasets import SparkDeltaTableDataset
from cltv.spark import session_has_delta

UTC = dt.timezone.utc
ROWS = [
    (1, "alice", 2.5, dt.date(2011, 1, 3), dt.datetime(2011, 1, 3, 9, 30, tzinfo=UTC)),
    (2, "bob", None, dt.date(2011, 2, 4), dt.datetime(2011, 2, 4, 17, 0, tzinfo=UTC)),
    (3, None, -1.0, None, None),
]
SCHEMA = "id long, name string, amount double, day date, ts timestamp"


def _frame(spark, rows=ROWS):
    return spark.createDataFrame(rows, SCHEMA)


def _sorted_rows(df):
    return sorted(tuple(r) for r in df.collect())


def test_engine_is_delta_rs_without_delta_jars(spark):
    # this machine has no Delta jars: the dataset must not pretend otherwise
    assert not session_has_delta(spark)
    with pytest.raises(DatasetError, match="no Delta extension"):
        SparkDeltaTableDataset(filepath="x", engine="delta-spark").load()


def test_written_table_is_read_by_deltalake(spark, tmp_path):
    path = tmp_path / "people"
    SparkDeltaTableDataset(filepath=str(path)).save(_frame(spark))

    assert (path / "_delta_log" / "00000000000000000000.json").is_file()
    table = DeltaTable(str(path))
    assert table.version() == 0
    read = table.to_pandas().sort_values("id").reset_index(drop=True)
    assert read["id"].tolist() == [1, 2, 3]
    assert read["name"].tolist()[:2] == ["alice", "bob"] and pd.isna(read["name"][2])
    assert read["amount"][0] == 2.5 and pd.isna(read["amount"][1])
    assert read["day"][0] == dt.date(2011, 1, 3)
    assert read["ts"][0] == pd.Timestamp("2011-01-03 09:30", tz="UTC")
    # the Delta log carries per-file statistics readers use for skipping
    log = (path / "_delta_log" / "00000000000000000000.json").read_text().splitlines()
    adds = [json.loads(line)["add"] for line in log if '"add"' in line]
    stats = [json.loads(add["stats"]) for add in adds]
    assert sum(s["numRecords"] for s in stats) == 3
    assert min(s["minValues"]["id"] for s in stats if "id" in s["minValues"]) == 1
    assert max(s["maxValues"]["id"] for s in stats if "id" in s["maxValues"]) == 3
    assert pa.table(table.get_add_actions(flatten=True))["num_records"].to_pylist() == [
        s["numRecords"] for s in stats
    ]


def test_table_written_by_deltalake_is_read_by_dataset(spark, tmp_path):
    path = tmp_path / "from_rust"
    data = pa.table(
        {
            "id": pa.array([10, 20], pa.int64()),
            "label": ["x", "y"],
            "ts": pa.array([0, 86_400_000_000], pa.timestamp("us", tz="UTC")),
        }
    )
    write_deltalake(str(path), data)
    write_deltalake(
        str(path), pa.table({"id": [30], "label": ["z"], "ts": data["ts"][:1]}), mode="append"
    )

    df = SparkDeltaTableDataset(filepath=str(path)).load()
    assert df.columns == ["id", "label", "ts"]
    rows = _sorted_rows(df)
    assert [r[:2] for r in rows] == [(10, "x"), (20, "y"), (30, "z")]
    # the session time zone is UTC: Spark returns naive datetimes in it
    assert rows[1][2] == dt.datetime(1970, 1, 2)


def test_partitioned_table_round_trip(spark, tmp_path):
    path = tmp_path / "partitioned"
    rows = [(1, "United Kingdom"), (2, "EIRE"), (3, None), (4, "a/b=c")]
    dataset = SparkDeltaTableDataset(filepath=str(path), save_args={"partition_by": ["country"]})
    dataset.save(spark.createDataFrame(rows, "id long, country string"))

    assert DeltaTable(str(path)).metadata().partition_columns == ["country"]
    from_rust = DeltaTable(str(path)).to_pandas().sort_values("id")
    assert [None if pd.isna(c) else c for c in from_rust["country"]] == [
        "United Kingdom",
        "EIRE",
        None,
        "a/b=c",
    ]
    loaded = dataset.load()
    assert loaded.columns == ["id", "country"]
    assert _sorted_rows(loaded) == sorted(rows)


def test_overwrite_append_and_time_travel(spark, tmp_path):
    path = str(tmp_path / "versions")
    overwrite = SparkDeltaTableDataset(filepath=path)
    append = SparkDeltaTableDataset(filepath=path, save_args={"mode": "append"})

    overwrite.save(_frame(spark, ROWS[:1]))
    append.save(_frame(spark, ROWS[1:2]))
    overwrite.save(_frame(spark, ROWS[2:]))

    assert [r[0] for r in _sorted_rows(overwrite.load())] == [3]
    version = lambda v: SparkDeltaTableDataset(filepath=path, load_args={"version": v})  # noqa: E731
    assert [r[0] for r in _sorted_rows(version(0).load())] == [1]
    assert [r[0] for r in _sorted_rows(version(1).load())] == [1, 2]
    assert DeltaTable(path).version() == 2
    assert next(h["operation"] for h in DeltaTable(path).history()) in ("WRITE", "CREATE TABLE")


def test_versions_counted_back_skip_maintenance_and_start_empty(spark, tmp_path):
    """``version: -1`` is what the table held before its latest write: nothing (the columns,
    no rows) after the first write; the first write's rows after the second, also once
    OPTIMIZE and a constraint (commits that change no rows) came after it."""
    path = str(tmp_path / "counted")
    table = SparkDeltaTableDataset(filepath=path)
    previous = SparkDeltaTableDataset(filepath=path, load_args={"version": -1})
    table.save(_frame(spark, ROWS[:2]))
    before_first = previous.load()
    assert before_first.columns == ["id", "name", "amount", "day", "ts"]
    assert before_first.count() == 0
    table.save(_frame(spark, ROWS[2:]))
    assert [r[0] for r in _sorted_rows(previous.load())] == [1, 2]
    DeltaTable(path).optimize.compact()
    DeltaTable(path).alter.add_constraint({"id_positive": "id > 0"})
    operations = [h["operation"] for h in DeltaTable(path).history()]
    assert operations == ["ADD CONSTRAINT", "OPTIMIZE", "WRITE", "CREATE TABLE"]
    assert [r[0] for r in _sorted_rows(previous.load())] == [1, 2]
    assert [r[0] for r in _sorted_rows(table.load())] == [3]
    two_back = SparkDeltaTableDataset(filepath=path, load_args={"version": -2})
    assert two_back.load().count() == 0


def test_overwrite_may_change_the_schema(spark, tmp_path):
    path = str(tmp_path / "schema")
    dataset = SparkDeltaTableDataset(filepath=path)
    dataset.save(_frame(spark))
    dataset.save(spark.createDataFrame([("only",)], "word string"))
    assert dataset.load().columns == ["word"]
    assert DeltaTable(path).to_pandas()["word"].tolist() == ["only"]


def test_the_run_after_an_upgrade_adds_its_columns_and_the_version_before_keeps_its_own(
    spark, tmp_path
):
    """A customer table written before an upgrade that adds a column: the next run's overwrite
    holds that run's customers only, with the new column, and the drift report's "before"
    (``version: -1``) still reads as it was written."""
    path = str(tmp_path / "churn_predictions")
    before_upgrade = "customer_id long, churn_probability double"
    after_upgrade = f"{before_upgrade}, churn_reason_text string"
    table = SparkDeltaTableDataset(filepath=path)
    table.save(spark.createDataFrame([(1, 0.9), (2, 0.2), (3, 0.7)], before_upgrade))
    table.save(spark.createDataFrame([(2, 0.25, None), (4, 0.75, "bought less")], after_upgrade))

    assert table.load().columns == ["customer_id", "churn_probability", "churn_reason_text"]
    assert _sorted_rows(table.load()) == [(2, 0.25, None), (4, 0.75, "bought less")]
    from_rust = DeltaTable(path).to_pandas().sort_values("customer_id")
    assert from_rust["churn_reason_text"].tolist() == [None, "bought less"]
    previous = SparkDeltaTableDataset(filepath=path, load_args={"version": -1}).load()
    assert previous.columns == ["customer_id", "churn_probability"]
    assert _sorted_rows(previous) == [(1, 0.9), (2, 0.2), (3, 0.7)]


def test_append_with_another_schema_fails_and_keeps_the_table(spark, tmp_path):
    path = str(tmp_path / "strict")
    SparkDeltaTableDataset(filepath=path).save(_frame(spark))
    append = SparkDeltaTableDataset(filepath=path, save_args={"mode": "append"})
    with pytest.raises(DatasetError):
        append.save(spark.createDataFrame([("x",)], "word string"))
    assert DeltaTable(path).version() == 0
    assert len(DeltaTable(path).to_pandas()) == 3
    assert not list(Path(path).glob("_staging-*"))


def test_failed_save_leaves_previous_version_readable(spark, tmp_path, monkeypatch):
    path = tmp_path / "atomic"
    dataset = SparkDeltaTableDataset(filepath=str(path))
    dataset.save(_frame(spark))
    files_before = sorted(p.name for p in path.glob("*.parquet"))

    def crash(*args, **kwargs):
        raise RuntimeError("disk full while committing")

    # data files are written and moved into place; the commit itself fails
    monkeypatch.setattr(SparkDeltaTableDataset, "_commit", crash)
    with pytest.raises(DatasetError, match="disk full"):
        dataset.save(_frame(spark, ROWS[:1]))
    monkeypatch.undo()

    assert DeltaTable(str(path)).version() == 0
    assert len(DeltaTable(str(path)).to_pandas()) == 3
    assert _sorted_rows(dataset.load()) == _sorted_rows(_frame(spark))
    # no orphans from the failed attempt are left beside the table's files
    assert sorted(p.name for p in path.glob("*.parquet")) == files_before
    assert not list(path.glob("_staging-*"))


def test_failure_while_spark_writes_leaves_no_table(spark, tmp_path):
    path = tmp_path / "never"
    failing = spark.range(5).selectExpr("raise_error('boom in a task') AS x")
    with pytest.raises(DatasetError, match="boom in a task"):
        SparkDeltaTableDataset(filepath=str(path)).save(failing)
    assert not DeltaTable.is_deltatable(str(path))
    assert not list(path.rglob("*.parquet"))


def test_empty_frame_round_trip(spark, tmp_path):
    path = str(tmp_path / "empty")
    dataset = SparkDeltaTableDataset(filepath=path)
    dataset.save(spark.createDataFrame([], SCHEMA))
    loaded = dataset.load()
    assert loaded.count() == 0
    assert loaded.schema.simpleString() == _frame(spark).schema.simpleString()


def test_preview_needs_no_spark(tmp_path):
    """kedro-viz previews a table without Spark: in a fresh interpreter the preview is read and
    no Java gateway, let alone a SparkContext, was ever started."""
    path = str(tmp_path / "preview")
    write_deltalake(
        path,
        pa.table({"id": list(range(10)), "ts": pa.array(range(10), pa.timestamp("us", tz="UTC"))}),
    )
    script = f"""
import json
from pyspark import SparkContext
from cltv.datasets import SparkDeltaTableDataset
preview = SparkDeltaTableDataset(filepath={path!r}).preview(nrows=3)
assert SparkContext._gateway is None and SparkContext._active_spark_context is None, "Spark ran"
print(json.dumps(preview))  # kedro-viz sends it as JSON
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    preview = json.loads(done.stdout.strip().splitlines()[-1])
    assert preview["columns"] == ["id", "ts"]
    assert [row[0] for row in preview["data"]] == [0, 1, 2]
    assert preview["data"][1][1].startswith("1970-01-01T00:00:00")


def test_missing_table_and_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="not a Delta table"):
        SparkDeltaTableDataset(filepath=str(tmp_path / "nothing")).load()
    with pytest.raises(DatasetError, match=r"save_args\.mode"):
        SparkDeltaTableDataset(filepath="x", save_args={"mode": "upsert"})
    with pytest.raises(DatasetError, match="engine"):
        SparkDeltaTableDataset(filepath="x", engine="parquet")
    assert not SparkDeltaTableDataset(filepath=str(tmp_path / "nothing")).exists()


def test_partitioned_table_written_by_deltalake_is_read_by_dataset(spark, tmp_path):
    path = str(tmp_path / "rust_partitioned")
    values = ["United Kingdom", "a/b=c", "x%y", None]
    write_deltalake(
        path,
        pa.table({"id": pa.array([1, 2, 3, 4], pa.int64()), "country": values}),
        partition_by=["country"],
    )
    loaded = SparkDeltaTableDataset(filepath=path).load()
    assert loaded.columns == ["id", "country"]
    assert _sorted_rows(loaded) == sorted(zip([1, 2, 3, 4], values, strict=True))
