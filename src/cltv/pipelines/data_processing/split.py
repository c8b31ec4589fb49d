"""The split: copies of earlier lines found, every line given its one reason, clean sales and
quarantined lines apart, and the counts per reason."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame, Observation, Window
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from cltv.metrics import as_mlflow_metrics
from cltv.pipelines.data_processing.parsing import (
    CONTENT_KEY,
    RAW_TEXT_COLUMNS,
    SALE_REASONS,
    TEXT_REASONS,
    InputDataError,
)
from cltv.pipelines.data_processing.returns import with_netted_quantities

logger = logging.getLogger(__name__)


def mark_duplicate_lines(labelled_lines: DataFrame) -> tuple[DataFrame, dict[str, Any]]:
    """The lines with their one quarantine ``reason`` (null for a clean sale): the first of
    ``text_reason``, duplicate_line (an exact copy of an earlier raw line; the earliest goes on)
    and ``sale_reason``; and the lines counted by those reasons (``line_counts``).

    Copies are found without moving the text: only the 128-bit content key and the line id
    are shuffled, and the copies found (few: a re-exported batch at most) are a broadcast
    lookup. Two different lines share a key with probability about n² / 2¹²⁹ (below 1e-23 at
    50M lines). The copies are persisted (the pipeline's hook releases them after the run).

    This is the first step that reads every line, so it counts them as it goes (an
    ``Observation`` of that job: rows, text reasons, sale reasons), and counts the copies by
    sale reason from the small persisted table: :func:`split_clean_and_quarantine` reports
    and checks the quarantine from these, before anything is written.
    """
    seen = Observation("labelled_lines")
    usable = F.col("text_reason").isNull()
    counted = labelled_lines.observe(
        seen,
        F.count(F.lit(1)).alias("rows"),
        *[F.count(F.when(F.col("text_reason") == r, 1)).alias(r) for r in TEXT_REASONS],
        *[F.count(F.when(usable & (F.col("sale_reason") == r), 1)).alias(r) for r in SALE_REASONS],
        F.count(F.when(usable & F.col("sale_reason").isNull(), 1)).alias("clean"),
    )
    # Spark's adaptive execution drops a cached stage that turned out empty, and the counts
    # observed in it with it: one row that is no line (id -1; ids start at 0) keeps the copies
    # from ever being empty
    no_line = labelled_lines.sparkSession.range(1).select(
        *[F.lit(0).cast("long").alias(key) for key in CONTENT_KEY],
        F.lit(-1).cast("long").alias("line_id"),
        F.lit(None).cast("string").alias("sale_reason"),
    )
    earlier_copy = F.row_number().over(Window.partitionBy(*CONTENT_KEY).orderBy("line_id")) > 1
    copies = (
        # a line with a text reason cannot equal a usable line: their text differs
        counted.filter(usable)
        .select(*CONTENT_KEY, "line_id", "sale_reason")
        .unionByName(no_line)
        .withColumn("is_copy", earlier_copy & (F.col("line_id") >= 0))
        .filter(F.col("is_copy") | (F.col("line_id") < 0))
        .select("line_id", "is_copy", "sale_reason")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    copies_by_sale_reason = {
        row["sale_reason"] or "clean": row["n"]
        for row in copies.groupBy("sale_reason")
        .agg(F.count(F.when(F.col("is_copy"), 1)).alias("n"))
        .collect()
        if row["n"]
    }
    line_counts = {
        "rows": seen.get["rows"],
        "by_reason": {r: seen.get[r] for r in (*TEXT_REASONS, *SALE_REASONS, "clean")},
        "copies_by_sale_reason": copies_by_sale_reason,
    }
    reason = F.coalesce(
        F.col("text_reason"), F.when(F.col("is_copy"), "duplicate_line"), F.col("sale_reason")
    )
    lines = labelled_lines.join(
        F.broadcast(copies.select("line_id", "is_copy")), "line_id", "left"
    ).select(
        *RAW_TEXT_COLUMNS,
        "raw_record",
        "line_id",
        "customer_key",
        "quantity_value",
        "invoice_ts",
        "price_value",
        reason.alias("reason"),
    )
    return lines, line_counts


def reason_counts(line_counts: dict[str, Any], matched_returns: int, netting: bool) -> dict:
    """Rows per final reason ("clean" for clean sales) from :func:`mark_duplicate_lines`'s
    counts and the number of returns netting matched; reasons with no rows left out."""
    observed, copies = line_counts["by_reason"], line_counts["copies_by_sale_reason"]
    counts = {r: observed[r] for r in TEXT_REASONS}
    counts["duplicate_line"] = sum(copies.values())
    for reason in (*SALE_REASONS, "clean"):
        counts[reason] = observed[reason] - copies.get(reason, 0)
    if netting:
        counts["unmatched_cancellation"] = counts["cancellation"] - matched_returns
        counts["cancellation"] = matched_returns
    if sum(counts.values()) != line_counts["rows"]:
        raise RuntimeError(f"line counts do not add up to the rows read: {line_counts}")
    return {reason: n for reason, n in counts.items() if n}


def split_clean_and_quarantine(
    labelled: DataFrame,
    return_matches: DataFrame,
    line_counts: dict[str, Any],
    returns: dict[str, Any],
    max_quarantine_fraction: float,
    input_path: str,
) -> tuple[DataFrame, DataFrame, dict[str, Any]]:
    """Split labelled rows into clean sales and quarantine, returns netted; stop on too much junk.

    Clean sales keep their original ``quantity`` beside the ``returned_quantity`` matched to
    them, and ``revenue`` is on the net quantity. A return goes to quarantine as
    ``cancellation`` when some of it was matched (``matched_quantity`` says how much) or as
    ``unmatched_cancellation`` when there was no earlier sale to reverse; with
    ``returns.mode: ignore`` every return is a plain ``cancellation``.

    The counts come from :func:`mark_duplicate_lines` (``line_counts``) and the small table of
    matches, not from another pass over the lines. So when the quarantined share exceeds
    ``max_quarantine_fraction`` the run stops here, naming the file and the main reasons,
    before either table is written: nothing is committed, whichever engine writes Delta.
    """
    netting = returns.get("mode", "net") == "net"
    returns_report = _returns_report(return_matches, returns)
    counts = reason_counts(line_counts, returns_report["matched_lines"], netting)
    returns_report["unmatched_lines"] = counts.get("unmatched_cancellation", 0)
    total = line_counts["rows"]
    clean_rows = counts.pop("clean", 0)
    quarantined = total - clean_rows
    share = quarantined / total if total else 0.0
    by_reason = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    for reason, rows_with_reason in by_reason.items():
        logger.info("Quarantine: %-26s %d rows", reason, rows_with_reason)
    logger.info(
        "%s: %d rows, %d clean, %d quarantined (%.1f%%)",
        input_path,
        total,
        clean_rows,
        quarantined,
        100 * share,
    )
    if total == 0:
        raise InputDataError(f"{input_path}: the file has a header but no rows")
    if share > max_quarantine_fraction:
        top = ", ".join(f"{reason} ({n})" for reason, n in list(by_reason.items())[:3])
        raise InputDataError(
            f"{input_path}: {100 * share:.1f}% of {total} rows quarantined, above "
            f"max_quarantine_fraction {max_quarantine_fraction}; main reasons: {top}"
        )
    if netting:
        logger.info(
            "Returns: %d matched (%d units), %d unmatched; %d sale lines netted (%d fully "
            "returned), %.2f of revenue netted",
            returns_report["matched_lines"],
            returns_report["matched_quantity"],
            returns_report["unmatched_lines"],
            returns_report["sale_lines_netted"],
            returns_report["sale_lines_fully_returned"],
            returns_report["netted_revenue"],
        )
    rows = with_netted_quantities(labelled, return_matches, netting)
    net_quantity = F.col("quantity_value") - F.col("returned_quantity")
    clean = rows.filter(F.col("reason").isNull()).select(
        F.trim("invoice").alias("invoice"),
        F.trim("stock_code").alias("stock_code"),
        F.trim("description").alias("description"),
        F.col("quantity_value").alias("quantity"),
        "returned_quantity",
        F.col("invoice_ts").alias("invoice_date"),
        F.col("price_value").alias("price"),
        F.col("customer_key").alias("customer_id"),
        F.trim("country").alias("country"),
        (net_quantity * F.col("price_value")).alias("revenue"),
    )
    quarantine = rows.filter(F.col("reason").isNotNull()).select(
        *RAW_TEXT_COLUMNS,
        "raw_record",
        "reason",
        "matched_quantity",
    )
    report = {
        "input_path": input_path,
        "rows": total,
        "clean_rows": clean_rows,
        "quarantined_rows": quarantined,
        "quarantined_fraction": share,
        "by_reason": by_reason,
        "returns": returns_report,
    }
    return clean, quarantine, report


def _returns_report(return_matches: DataFrame, returns: dict[str, Any]) -> dict[str, Any]:
    """What netting did: returns matched or not, sale lines and revenue netted; from the matches
    (the lines returns touched), one small job. ``unmatched_lines`` is left for the caller,
    who knows how many returns there were."""
    is_return, clean_sale = F.col("_is_return") == 1, F.col("_is_clean_sale")
    netted = F.col("netted_quantity")
    row = return_matches.agg(
        F.count(F.when(is_return, 1)).alias("matched_lines"),
        F.sum(F.when(is_return, netted)).alias("matched_quantity"),
        F.count(F.when(clean_sale, 1)).alias("sale_lines_netted"),
        F.count(F.when(clean_sale & (netted == F.col("_units")), 1)).alias(
            "sale_lines_fully_returned"
        ),
        F.sum(F.when(clean_sale, netted)).alias("returned_quantity"),
        F.sum(F.when(clean_sale, netted * F.col("_price"))).alias("netted_revenue"),
    ).first()
    return {
        "mode": returns.get("mode", "net"),
        "max_days": returns.get("max_days"),
        "matched_lines": int(row["matched_lines"]),
        "unmatched_lines": 0,
        "matched_quantity": int(row["matched_quantity"] or 0),
        "sale_lines_netted": int(row["sale_lines_netted"]),
        "sale_lines_fully_returned": int(row["sale_lines_fully_returned"]),
        "returned_quantity": int(row["returned_quantity"] or 0),
        "netted_revenue": float(row["netted_revenue"] or 0.0),
    }


def quarantine_metrics(quarantine_report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Row counts (total, clean, quarantined, per reason) as MLflow metrics."""
    return as_mlflow_metrics(quarantine_report)
