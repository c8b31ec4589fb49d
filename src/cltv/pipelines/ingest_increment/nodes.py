"""Nodes of ``ingest_increment``."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def merge_new_lines(existing: DataFrame, batch: DataFrame) -> DataFrame:
    """``existing`` plus the lines of ``batch`` it does not hold yet.

    A line is the same line when every column is equal (nulls equal nulls), so adding a batch
    twice adds nothing the second time. The result replaces the table: Delta keeps the
    previous version readable by time travel.
    """
    if existing.columns != batch.columns:
        raise ValueError(
            f"the batch's columns {batch.columns} differ from the table's {existing.columns}"
        )
    known = existing.select([F.col(c).alias(f"_known_{c}") for c in existing.columns])
    same_line = [F.col(c).eqNullSafe(F.col(f"_known_{c}")) for c in batch.columns]
    new_lines = batch.join(known, same_line, "left_anti")
    return existing.unionByName(new_lines)
