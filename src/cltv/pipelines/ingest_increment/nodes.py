"""Nodes of ``ingest_increment``."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from cltv.pipelines.data_processing.nodes import (
    match_returns,
    parsed_line_values,
    with_netted_quantities,
)

# what cleaning derives from a line and the others around it: not part of the line's identity
NETTING_COLUMNS = ("returned_quantity", "revenue", "reason", "matched_quantity")


def merge_new_lines(existing: DataFrame, batch: DataFrame) -> DataFrame:
    """``existing`` plus the lines of ``batch`` it does not hold yet.

    A line is the same line when every column it was read with is equal (nulls equal nulls);
    what netting derived (returned or matched quantity, revenue, the reason) is ignored, since
    the batch was netted on its own. Adding a batch twice adds nothing the second time. The
    result replaces the table: Delta keeps the previous version readable by time travel.
    """
    if existing.columns != batch.columns:
        raise ValueError(
            f"the batch's columns {batch.columns} differ from the table's {existing.columns}"
        )
    identity = [c for c in batch.columns if c not in NETTING_COLUMNS]
    known = existing.select([F.col(c).alias(f"_known_{c}") for c in identity])
    same_line = [F.col(c).eqNullSafe(F.col(f"_known_{c}")) for c in identity]
    new_lines = batch.join(known, same_line, "left_anti")
    return existing.unionByName(new_lines)


def renet_returns(
    clean: DataFrame,
    quarantine: DataFrame,
    timestamp_formats: list[str],
    returns: dict[str, Any],
) -> tuple[DataFrame, DataFrame]:
    """Net every return again over the merged lines, as cleaning the whole history would.

    A batch's returns may reverse sales already in the table, and its sales may be reversed
    by returns already quarantined: the sales (clean lines and ``non_product`` lines) and the
    returns of both tables go through :func:`match_returns` together, and each sale's
    ``returned_quantity`` and ``revenue``, and each return's reason and ``matched_quantity``,
    are set afresh. Every other column is kept as it is.
    """
    clean_row, quarantine_row = F.struct(*clean.columns), F.struct(*quarantine.columns)
    clean_type = clean.select(clean_row.alias("row")).schema["row"].dataType
    quarantine_type = quarantine.select(quarantine_row.alias("row")).schema["row"].dataType
    sales = clean.select(
        clean_row.alias("clean_row"),
        F.lit(None).cast(quarantine_type).alias("quarantine_row"),
        F.lit(None).cast("string").alias("reason"),
        "invoice",
        "stock_code",
        F.col("customer_id").alias("customer_key"),
        F.col("quantity").alias("quantity_value"),
        F.col("invoice_date").alias("invoice_ts"),
        F.col("price").alias("price_value"),
    )
    set_apart = quarantine.select(
        F.lit(None).cast(clean_type).alias("clean_row"),
        quarantine_row.alias("quarantine_row"),
        "reason",
        "invoice",
        "stock_code",
        *parsed_line_values(timestamp_formats),
        # netting reads a sale's price for the report of clean sales only: never these
        F.lit(None).cast("double").alias("price_value"),
    )
    lines = (
        sales.unionByName(set_apart)
        .withColumn("line_id", F.monotonically_increasing_id())
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    netting = returns.get("mode", "net") == "net"
    netted = with_netted_quantities(lines, match_returns(lines, returns), netting)

    refreshed = {
        "returned_quantity": F.col("returned_quantity"),
        "revenue": (F.col("clean_row.quantity") - F.col("returned_quantity"))
        * F.col("clean_row.price"),
        "reason": F.col("reason"),
        "matched_quantity": F.col("matched_quantity"),
    }

    def columns(table: DataFrame, row: str) -> list:
        return [refreshed.get(c, F.col(f"{row}.{c}")).alias(c) for c in table.columns]

    new_clean = netted.filter(F.col("clean_row").isNotNull()).select(columns(clean, "clean_row"))
    new_quarantine = netted.filter(F.col("quarantine_row").isNotNull()).select(
        columns(quarantine, "quarantine_row")
    )
    return new_clean, new_quarantine
