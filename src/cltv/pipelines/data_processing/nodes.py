"""Nodes of ``data_processing``: small pure functions of Spark DataFrames and parameters."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from cltv.datasets.invoice_csv_dataset import CORRUPT_RECORD_COLUMN
from cltv.metrics import as_mlflow_metrics

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("invoice", "quantity", "invoice_date", "price", "customer_id")
OPTIONAL_COLUMNS = ("stock_code", "description", "country")
RAW_TEXT_COLUMNS = (
    "invoice",
    "stock_code",
    "description",
    "quantity",
    "invoice_date",
    "price",
    "customer_id",
    "country",
)
# Values beyond this are typos or overflow, not invoice lines (and stay exact as doubles).
MAX_ABS_AMOUNT = 1e9
DAYS_PER_UNIT = {"D": 1.0, "W": 7.0}
RETURN_MODES = ("net", "ignore")
REGEX_PREFIX = "re:"


class InputDataError(ValueError):
    """The input cannot be processed; the message names the file, column and reason."""


# ------------------------------------------------------------------ cleaning
def standardise_columns(raw: DataFrame, columns: dict[str, str], input_path: str) -> DataFrame:
    """Rename the CSV's columns to the project's names (``columns`` maps ours to theirs).

    Required columns missing from the file stop the run; optional ones become nulls.
    """
    problem = column_mapping_problem(columns)
    if problem:
        raise InputDataError(f"parameter columns: {problem}")
    present = set(raw.columns)
    for name in REQUIRED_COLUMNS:
        source = columns.get(name, name)
        if source not in present:
            found = [c for c in raw.columns if c != CORRUPT_RECORD_COLUMN]
            raise InputDataError(
                f"{input_path}: required column '{source}' ({name}) is missing; "
                f"the file has: {', '.join(found)}{_delimiter_hint(found)}"
            )
    selected = [
        (
            F.col(f"`{columns.get(name, name)}`")
            if columns.get(name, name) in present
            else F.lit(None)
        )
        .cast("string")
        .alias(name)
        for name in RAW_TEXT_COLUMNS
    ]
    return raw.select(*selected, F.col(CORRUPT_RECORD_COLUMN).alias("raw_record"))


def column_mapping_problem(columns: dict[str, Any]) -> str | None:
    """What is wrong with the ``columns`` parameter (our names -> the CSV's), if anything."""
    unknown = sorted(set(columns) - set(RAW_TEXT_COLUMNS))
    if unknown:
        return f"unknown key(s) {', '.join(unknown)}; expected {', '.join(RAW_TEXT_COLUMNS)}"
    empty = sorted(key for key, source in columns.items() if not str(source or "").strip())
    if empty:
        return f"no CSV column given for {', '.join(empty)}"
    return None


def _delimiter_hint(header: list[str]) -> str:
    """A hint when the whole header landed in one column: the file uses another delimiter."""
    if len(header) == 1:
        for delimiter in (";", "\t", "|"):
            if delimiter in header[0]:
                return (
                    f" (one column: the file looks delimited by {delimiter!r}; set "
                    f"load_args: {{sep: {delimiter!r}}} on raw_transactions in the catalog)"
                )
    return ""


def _normalised_customer_id(raw_id: Column) -> Column:
    # exports through spreadsheets turn 13085 into "13085.0"
    return F.regexp_replace(F.trim(raw_id), r"^(\d+)\.0+$", "$1")


def _parsed_amount(raw: Column) -> Column:
    value = F.trim(raw).try_cast("double")
    return F.when(value.isNotNull() & ~F.isnan(value) & (F.abs(value) <= MAX_ABS_AMOUNT), value)


def _parsed_timestamp(raw: Column, formats: list[str]) -> Column:
    text = F.trim(raw)
    return F.coalesce(*[F.try_to_timestamp(text, F.lit(fmt)) for fmt in formats])


def label_transactions(
    standardised: DataFrame,
    timestamp_formats: list[str],
    latest_valid_date: str | None,
    non_product_stock_codes: list[str] | None = None,
) -> DataFrame:
    """Parse every row and find what keeps it from being a sale: its quarantine reasons.

    The first matching reason wins, in this order: malformed_record, invalid_encoding (bytes
    that are not text in the file's encoding), missing_customer_id, unparseable_customer_id,
    unparseable_quantity, unparseable_price, unparseable_invoice_date, future_date (after
    ``latest_valid_date``, default today in UTC), duplicate_line (an exact copy of an earlier
    raw line; the first copy goes on), cancellation (a return: a ``C`` invoice or a negative
    quantity; :func:`match_returns` nets it against the sales it reverses and
    :func:`split_clean_and_quarantine` tells matched from ``unmatched_cancellation``),
    non_product (postage, fees, adjustments: ``non_product_stock_codes``),
    non_positive_quantity and non_positive_price; :func:`mark_duplicate_lines` gives each line
    the first, ``reason`` (null for clean sales).

    Returns come before non-product codes because a ``C`` line for ``POST`` is a refund of
    postage: it is a return, and it nets against the postage line, never against a product.

    Every line keeps its text and gets its parsed values, a content key for
    :func:`mark_duplicate_lines` and the reasons its own text gives (``text_reason``, the
    reasons before duplicate_line; ``sale_reason``, those after it). The pipeline writes these
    lines once, as a Delta table (``labelled_lines``): the later steps read the few columns
    each needs from it rather than scanning the CSV again or holding all lines in memory.
    """
    latest = latest_valid_date or datetime.now(timezone.utc).date().isoformat()
    customer_id = _normalised_customer_id(F.col("customer_id"))
    quantity = _parsed_amount(F.col("quantity"))
    price = _parsed_amount(F.col("price"))
    invoice_ts = _parsed_timestamp(F.col("invoice_date"), timestamp_formats)
    blank = lambda c: F.col(c).isNull() | (F.trim(F.col(c)) == "")  # noqa: E731

    # undecodable bytes (a Latin-1 file read as UTF-8) arrive as U+FFFD: keep such rows apart
    # rather than analyse mangled text; `load_args: {encoding: iso-8859-1}` reads them right
    mangled = F.concat_ws("", *[F.col(c) for c in RAW_TEXT_COLUMNS]).contains("\ufffd")
    is_return = F.upper(F.trim(F.col("invoice"))).startswith("C") | (quantity < 0)
    text_reason = (
        F.when(F.col("raw_record").isNotNull(), "malformed_record")
        .when(mangled, "invalid_encoding")
        .when(blank("customer_id"), "missing_customer_id")
        .when(~customer_id.rlike(r"^[A-Za-z0-9_-]{1,64}$"), "unparseable_customer_id")
        .when(quantity.isNull() | (quantity != F.floor(quantity)), "unparseable_quantity")
        .when(price.isNull(), "unparseable_price")
        .when(invoice_ts.isNull(), "unparseable_invoice_date")
        .when(F.to_date(invoice_ts) > F.lit(latest).cast("date"), "future_date")
    )
    sale_reason = (
        F.when(is_return, "cancellation")
        .when(is_non_product(F.col("stock_code"), non_product_stock_codes or []), "non_product")
        .when(quantity <= 0, "non_positive_quantity")
        .when(price <= 0, "non_positive_price")
    )
    # the id is drawn at the scan, so it follows the file's order and stays put
    return standardised.withColumn("line_id", F.monotonically_increasing_id()).select(
        *RAW_TEXT_COLUMNS,
        "raw_record",
        "line_id",
        *parsed_line_values(timestamp_formats),
        price.alias("price_value"),
        text_reason.alias("text_reason"),
        sale_reason.alias("sale_reason"),
        *_content_key(),
    )


def mark_duplicate_lines(labelled_lines: DataFrame) -> DataFrame:
    """The lines with their one quarantine ``reason`` (null for a clean sale): the first of
    ``text_reason``, duplicate_line (an exact copy of an earlier raw line; the earliest goes on)
    and ``sale_reason``.

    Copies are found without moving the text: only the 128-bit content key and the line id
    are shuffled, and the copies found (few: a re-exported batch at most) are a broadcast
    lookup. Two different lines share a key with probability about n² / 2¹²⁹ (below 1e-23 at
    50M lines). The copies are persisted, the lines are not: each later step reads the columns
    it needs (the pipeline's hook releases the copies after the run).
    """
    earlier_copy = F.row_number().over(Window.partitionBy(*CONTENT_KEY).orderBy("line_id")) > 1
    copies = (
        # a line with a text reason cannot equal a usable line: their text differs
        labelled_lines.filter(F.col("text_reason").isNull())
        .select(*CONTENT_KEY, "line_id")
        .withColumn("is_copy", earlier_copy)
        .filter("is_copy")
        .select("line_id", "is_copy")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    reason = F.coalesce(
        F.col("text_reason"), F.when(F.col("is_copy"), "duplicate_line"), F.col("sale_reason")
    )
    return labelled_lines.join(F.broadcast(copies), "line_id", "left").select(
        *RAW_TEXT_COLUMNS,
        "raw_record",
        "line_id",
        "customer_key",
        "quantity_value",
        "invoice_ts",
        "price_value",
        reason.alias("reason"),
    )


CONTENT_KEY = ("_key_a", "_key_b")


def _content_key() -> list[Column]:
    """Two seeded 64-bit hashes of a line's raw text. Spark's hashes skip nulls, so which
    fields are null goes in as a bit mask: ("x", null) and (null, "x") differ."""
    text = [F.col(c) for c in (*RAW_TEXT_COLUMNS, "raw_record")]
    nulls = sum(
        (F.col(c).isNull().cast("long") * (1 << i))
        for i, c in enumerate((*RAW_TEXT_COLUMNS, "raw_record"))
    )
    return [
        F.xxhash64(F.lit(seed), nulls, *text).alias(name)
        for seed, name in zip((0x5EED_0001, 0x5EED_0002), CONTENT_KEY, strict=True)
    ]


def parsed_line_values(timestamp_formats: list[str]) -> list[Column]:
    """The customer id, quantity and timestamp of a raw line as cleaning reads them (null
    where they do not parse): ``customer_key``, ``quantity_value`` (whole units: a fraction is
    ``unparseable_quantity``), ``invoice_ts``. :func:`label_transactions` writes them, and
    ``ingest_increment`` reads them back from quarantined lines."""
    return [
        _normalised_customer_id(F.col("customer_id")).alias("customer_key"),
        _parsed_amount(F.col("quantity")).cast("bigint").alias("quantity_value"),
        _parsed_timestamp(F.col("invoice_date"), timestamp_formats).alias("invoice_ts"),
    ]


def is_non_product(stock_code: Column, codes: list[str]) -> Column:
    """Whether a stock code is a non-product line (postage, fees, adjustments...).

    ``codes`` holds exact codes, compared case-insensitively after trimming, and regular
    expressions written ``re:<pattern>`` (Java syntax, searched case-insensitively: anchor
    them with ``^`` / ``$``). An empty list marks nothing.
    """
    exact = [c.strip().upper() for c in codes if not c.startswith(REGEX_PREFIX)]
    patterns = [c[len(REGEX_PREFIX) :] for c in codes if c.startswith(REGEX_PREFIX)]
    code = F.trim(stock_code)
    marked = F.upper(code).isin(exact) if exact else F.lit(False)
    if patterns:
        marked = marked | code.rlike("(?i)" + "|".join(f"(?:{p})" for p in patterns))
    return F.coalesce(marked, F.lit(False))


def non_product_codes_problem(codes: Any) -> str | None:
    """What is wrong with ``cleaning.non_product_stock_codes``, if anything."""
    if not isinstance(codes, list) or not all(isinstance(c, str) and c.strip() for c in codes):
        return f"{codes!r} must be a list of stock codes and re:<pattern> entries"
    for code in codes:
        if code.startswith(REGEX_PREFIX):
            try:
                re.compile(code[len(REGEX_PREFIX) :])
            except re.error as exc:
                return f"{code!r} is not a regular expression ({exc})"
    return None


# ------------------------------------------------------------------ returns
def match_returns(labelled: DataFrame, returns: dict[str, Any]) -> DataFrame:
    """Net each return against the sales it reverses: ``line_id``, ``netted_quantity``.

    A return (a line labelled ``cancellation``, or ``unmatched_cancellation`` by an earlier
    netting) is matched to the same customer's sales of the same stock code at or before its
    time, most recent first, up to its quantity — the rule a till applies when a customer
    brings goods back, and the one that keeps a phantom order cancelled minutes later from
    counting as a purchase. With ``returns.max_days``, a sale more
    than that many days before the return is not matched. Sales are the clean lines and the
    ``non_product`` lines (a refund of postage nets against postage).

    Per (customer, stock code) this is a stack: a sale pushes its units, a return pops units
    from the top, down to the most recent sale it may not reach. It runs in Spark as a
    higher-order ``aggregate`` over the time-ordered lines of each (customer, stock code) that
    has a return; every other line is left alone. Rows: the lines that netted something — for
    a sale, the units returned; for a return, the units matched. With ``returns.mode: ignore``
    nothing is matched (no rows).
    """
    mode = returns.get("mode", "net")
    if mode not in RETURN_MODES:
        raise InputDataError(f"parameter cleaning.returns.mode: {mode!r} is not one of net, ignore")
    sale = F.col("reason").isNull() | (F.col("reason") == "non_product")
    is_return = F.col("reason").isin("cancellation", "unmatched_cancellation")
    lines = labelled.filter((sale | is_return) & F.col("stock_code").isNotNull()).select(
        "customer_key",
        F.trim("stock_code").alias("stock_key"),
        F.col("invoice_ts").cast("long").alias("ts"),
        is_return.cast("int").alias("is_return"),
        F.trim("invoice").alias("invoice"),
        "line_id",
        F.abs("quantity_value").alias("qty"),
    )
    if mode == "ignore":
        return lines.filter(F.lit(False)).select("line_id", F.col("qty").alias("netted_quantity"))
    keys = ["customer_key", "stock_key"]
    with_returns = lines.filter(F.col("is_return") == 1).select(*keys).distinct()
    groups = (
        # returns are a few percent of the lines: broadcasting their keys spares a shuffle of all
        lines.join(F.broadcast(with_returns), keys, "left_semi")
        .groupBy(*keys)
        # sales before returns at the same second: a sale is "at or before" its return
        .agg(F.sort_array(F.collect_list(F.struct(*LINE_EVENT_FIELDS))).alias("events"))
    )
    netted = groups.select(F.explode(_net_events(F.col("events"), returns.get("max_days"))))
    # only lines something happened to: a line absent here netted nothing
    return (
        netted.select("col.line_id", "col.netted_quantity")
        .filter(F.col("netted_quantity") > 0)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )


LINE_EVENT_FIELDS = ("ts", "is_return", "invoice", "line_id", "qty")
_STACK = "array<struct<ts:bigint,line_id:bigint,qty:bigint,lo:bigint,hi:bigint>>"
_NETTED = "array<struct<line_id:bigint,netted_quantity:bigint>>"


def _net_events(events: Column, max_days: float | None) -> Column:
    """Run the return stack over one group's time-ordered events (see :func:`match_returns`).

    The stack holds every sale as the interval of levels [lo, hi) its units occupy; ``level``
    is the top. A return of q units may pop down to ``floor`` (the top of the sales older than
    ``max_days``, which lie below the younger ones), so it matches m = min(q, level - floor)
    and every interval is cut at level - m. Each event costs one pass over the stack.
    """
    oldest_allowed = None if max_days is None else round(float(max_days) * 86400)

    def step(state: Column, event: Column) -> Column:
        level, stack = state["level"], state["stack"]
        pushed = F.struct(
            (level + event["qty"]).alias("level"),
            F.concat(
                stack,
                F.array(
                    F.struct(
                        event["ts"].alias("ts"),
                        event["line_id"].alias("line_id"),
                        event["qty"].alias("qty"),
                        level.alias("lo"),
                        (level + event["qty"]).alias("hi"),
                    )
                ),
            ).alias("stack"),
            state["netted"].alias("netted"),
        )
        if oldest_allowed is None:
            floor = F.lit(0).cast("bigint")
        else:
            too_old = F.filter(stack, lambda s: s["ts"] < event["ts"] - oldest_allowed)
            floor = F.aggregate(
                too_old, F.lit(0).cast("bigint"), lambda a, s: F.greatest(a, s["hi"])
            )
        matched = F.least(event["qty"], level - floor)
        top = level - matched
        popped = F.struct(
            top.alias("level"),
            F.transform(
                stack,
                lambda s: F.struct(
                    s["ts"].alias("ts"),
                    s["line_id"].alias("line_id"),
                    s["qty"].alias("qty"),
                    F.least(s["lo"], top).alias("lo"),
                    F.least(s["hi"], top).alias("hi"),
                ),
            ).alias("stack"),
            F.concat(
                state["netted"],
                F.array(
                    F.struct(event["line_id"].alias("line_id"), matched.alias("netted_quantity"))
                ),
            ).alias("netted"),
        )
        return F.when(event["is_return"] == 1, popped).otherwise(pushed)

    start = F.struct(
        F.lit(0).cast("bigint").alias("level"),
        F.array().cast(_STACK).alias("stack"),
        F.array().cast(_NETTED).alias("netted"),
    )

    def finish(state: Column) -> Column:
        returned = F.transform(
            state["stack"],
            lambda s: F.struct(
                s["line_id"].alias("line_id"),
                (s["qty"] - (s["hi"] - s["lo"])).alias("netted_quantity"),
            ),
        )
        return F.concat(returned, state["netted"])

    return F.aggregate(events, start, step, finish)


def split_clean_and_quarantine(
    labelled: DataFrame,
    return_matches: DataFrame,
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

    Raises before anything is written when the quarantined share exceeds
    ``max_quarantine_fraction``, naming the file and the main reasons.
    """
    netting = returns.get("mode", "net") == "net"
    rows = with_netted_quantities(labelled, return_matches, netting).select(
        *RAW_TEXT_COLUMNS,
        "raw_record",
        "customer_key",
        "quantity_value",
        "price_value",
        "invoice_ts",
        "reason",
        "returned_quantity",
        "matched_quantity",
    )
    sale_returned = F.col("returned_quantity") > 0
    tally = {
        row["reason"] or "clean": row
        for row in rows.groupBy("reason")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.when(sale_returned, 1)).alias("sale_lines_netted"),
            F.count(F.when(F.col("returned_quantity") == F.col("quantity_value"), 1)).alias(
                "sale_lines_fully_returned"
            ),
            F.sum(F.col("returned_quantity")).alias("returned_quantity"),
            F.sum(F.col("returned_quantity") * F.col("price_value")).alias("netted_revenue"),
            F.sum("matched_quantity").alias("matched_quantity"),
        )
        .collect()
    }
    counts = {reason: row["rows"] for reason, row in tally.items()}
    total = sum(counts.values())
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
    returns_report = _returns_report(tally, returns)
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


def with_netted_quantities(lines: DataFrame, return_matches: DataFrame, netting: bool) -> DataFrame:
    """``lines`` (with ``line_id`` and ``reason``) given what netting did to them: a sale's
    ``returned_quantity``, a return's ``matched_quantity``, and ``unmatched_cancellation`` for
    a return that matched nothing."""
    netted = F.coalesce(F.col("netted_quantity"), F.lit(0))
    is_return = F.col("reason").isin("cancellation", "unmatched_cancellation")
    # the matches are the few lines returns touched (long keys): a broadcast lookup, no shuffle
    joined = lines.join(F.broadcast(return_matches), "line_id", "left")
    if netting:
        matched = F.when(netted > 0, "cancellation").otherwise("unmatched_cancellation")
    else:
        matched = F.lit("cancellation")
    return joined.select(
        *[c for c in lines.columns if c != "reason"],
        F.when(is_return, matched).otherwise(F.col("reason")).alias("reason"),
        F.when(F.col("reason").isNull(), netted).cast("bigint").alias("returned_quantity"),
        F.when(is_return & F.lit(netting), netted).cast("bigint").alias("matched_quantity"),
    )


def _returns_report(tally: dict[str, Any], returns: dict[str, Any]) -> dict[str, Any]:
    """What netting did: returns matched or not, sale lines and revenue netted."""

    def value(reason: str, column: str) -> int | float:
        row = tally.get(reason)
        return (row[column] or 0) if row is not None else 0

    return {
        "mode": returns.get("mode", "net"),
        "max_days": returns.get("max_days"),
        "matched_lines": value("cancellation", "rows")
        if returns.get("mode", "net") == "net"
        else 0,
        "unmatched_lines": value("unmatched_cancellation", "rows"),
        "matched_quantity": int(value("cancellation", "matched_quantity")),
        "sale_lines_netted": int(value("clean", "sale_lines_netted")),
        "sale_lines_fully_returned": int(value("clean", "sale_lines_fully_returned")),
        "returned_quantity": int(value("clean", "returned_quantity")),
        "netted_revenue": float(value("clean", "netted_revenue")),
    }


# ------------------------------------------------------------------ periods
def resolve_analysis_period(
    purchase_days: DataFrame,
    observation_end: str | None,
    calibration_end: str | None,
    holdout_days: int,
) -> dict[str, Any]:
    """Fix the observation and calibration ends (SPEC defaults: last transaction day, and
    ``observation_end - holdout_days``)."""
    bounds = purchase_days.agg(F.min("day").alias("first"), F.max("day").alias("last")).first()
    if bounds is None or bounds["last"] is None:
        raise InputDataError("transactions_clean is empty: no clean rows to analyse")
    obs_end = date.fromisoformat(str(observation_end)) if observation_end else bounds["last"]
    cal_end = (
        date.fromisoformat(str(calibration_end))
        if calibration_end
        else obs_end - timedelta(days=int(holdout_days))
    )
    if cal_end >= obs_end:
        raise InputDataError(
            f"parameter calibration_end ({cal_end}) must be before observation_end ({obs_end})"
        )
    period = {
        "first_transaction_date": bounds["first"].isoformat(),
        "last_transaction_date": bounds["last"].isoformat(),
        "calibration_end": cal_end.isoformat(),
        "observation_end": obs_end.isoformat(),
        "holdout_days": (obs_end - cal_end).days,
    }
    logger.info("Analysis period: %s", period)
    return period


def summarise_purchase_days(clean: DataFrame) -> DataFrame:
    """One row per (customer, calendar day) with clean lines, holding the sums that every
    per-customer table and report needs, so each of them reads this table once instead of
    the lines (which grow with the input; this grows with purchase days).

    * ``revenue``: the day's net revenue (a purchase occasion when positive, SPEC);
    * ``sold_lines``, ``sold_items``: lines with units left after returns, and those units;
    * ``new_invoices``, ``new_products``: invoices and stock codes of sold lines first seen
      for the customer that day, so their sum up to any day counts the distinct ones (an
      invoice has one date; were it spread over days, it counts on its first);
    * ``country_lines``: sold lines per country (``country``, ``n``), for the main country.
    """
    units = F.col("quantity") - F.col("returned_quantity")
    lines = clean.select(
        "customer_id",
        F.to_date("invoice_date").alias("day"),
        "invoice",
        "stock_code",
        "country",
        "revenue",
        units.alias("units"),
    )
    sold = lines.filter(F.col("units") > 0)
    by_country = lines.groupBy("customer_id", "day", "country").agg(
        F.sum("revenue").alias("revenue"),
        F.count(F.when(F.col("units") > 0, 1)).alias("n"),
        F.sum(F.when(F.col("units") > 0, F.col("units"))).alias("units"),
    )
    days = by_country.groupBy("customer_id", "day").agg(
        F.sum("revenue").alias("revenue"),
        F.sum("n").alias("sold_lines"),
        F.coalesce(F.sum("units"), F.lit(0)).alias("sold_items"),
        F.filter(F.collect_list(F.struct("country", "n")), lambda c: c["n"] > 0).alias(
            "country_lines"
        ),
    )

    def first_seen(key: str, name: str) -> DataFrame:
        return (
            sold.groupBy("customer_id", key)
            .agg(F.min("day").alias("day"))
            .groupBy("customer_id", "day")
            .agg(F.count(F.lit(1)).alias(name))
        )

    return (
        days.join(first_seen("invoice", "new_invoices"), ["customer_id", "day"], "left")
        .join(first_seen("stock_code", "new_products"), ["customer_id", "day"], "left")
        .fillna(0, subset=["new_invoices", "new_products"])
        .select(
            "customer_id",
            "day",
            "revenue",
            "sold_lines",
            "sold_items",
            "new_invoices",
            "new_products",
            "country_lines",
        )
    )


def purchase_occasions(purchase_days: DataFrame, until: str) -> DataFrame:
    """One row per (customer, calendar day) up to ``until`` whose summed revenue is positive."""
    return purchase_days.filter(
        (F.col("day") <= F.lit(until).cast("date")) & (F.col("revenue") > 0)
    ).select("customer_id", "day", "revenue")


# ------------------------------------------------------------------ summary
def build_customer_summary(
    purchase_days: DataFrame, analysis_period: dict[str, Any], time_unit: str
) -> DataFrame:
    """Calibration/holdout summary per customer, as lifetimes' ``calibration_and_holdout_data``.

    frequency = repeat occasions, recency = first to last occasion, T = first occasion to
    ``calibration_end`` (in ``time_unit``), monetary_value = mean revenue of repeat occasions
    (0 without any), frequency_holdout = occasions after ``calibration_end`` and
    monetary_value_holdout their mean revenue (0 without any), churned = none.
    """
    unit_days = days_per_unit(time_unit)
    cal_end = F.lit(analysis_period["calibration_end"]).cast("date")
    occasions = purchase_occasions(purchase_days, analysis_period["observation_end"])
    calibration = (
        occasions.filter(F.col("day") <= cal_end)
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("n_occasions"),
            F.min("day").alias("first_day"),
            F.max("day").alias("last_day"),
            F.sum("revenue").alias("total_revenue"),
            F.min_by("revenue", "day").alias("first_revenue"),
        )
    )
    holdout = (
        occasions.filter(F.col("day") > cal_end)
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("frequency_holdout"),
            F.avg("revenue").alias("monetary_value_holdout"),
        )
    )
    frequency = F.col("n_occasions") - 1
    return (
        calibration.join(holdout, "customer_id", "left")
        .fillna(0, subset=["frequency_holdout", "monetary_value_holdout"])
        .select(
            "customer_id",
            frequency.alias("frequency"),
            (F.datediff("last_day", "first_day") / unit_days).alias("recency"),
            (F.datediff(cal_end, "first_day") / unit_days).alias("T"),
            F.when(frequency > 0, (F.col("total_revenue") - F.col("first_revenue")) / frequency)
            .otherwise(0.0)
            .alias("monetary_value"),
            F.col("frequency_holdout").cast("bigint").alias("frequency_holdout"),
            F.col("monetary_value_holdout").cast("double").alias("monetary_value_holdout"),
            F.lit(analysis_period["holdout_days"] / unit_days).alias("duration_holdout"),
            (F.col("frequency_holdout") == 0).cast("int").alias("churned"),
        )
    )


def build_current_customer_summary(
    purchase_days: DataFrame, analysis_period: dict[str, Any], time_unit: str
) -> DataFrame:
    """frequency, recency, T and monetary_value as of ``observation_end``: the history the CLV
    models predict from (``customer_summary`` stops at ``calibration_end`` for validation)."""
    as_of_end = {**analysis_period, "calibration_end": analysis_period["observation_end"]}
    return build_customer_summary(purchase_days, as_of_end, time_unit).select(
        "customer_id", "frequency", "recency", "T", "monetary_value"
    )


def days_per_unit(time_unit: str) -> float:
    """Days in one ``time_unit`` (SPEC: D = 1, W = 7)."""
    if time_unit not in DAYS_PER_UNIT:
        raise InputDataError(
            f"parameter time_unit: {time_unit!r} is not one of {', '.join(DAYS_PER_UNIT)}"
        )
    return DAYS_PER_UNIT[time_unit]


# ------------------------------------------------------------------ features
def compute_rfm_features(
    purchase_days: DataFrame, cutoff: str, windows_days: list[int]
) -> DataFrame:
    """RFM and behaviour features per customer from the days up to ``cutoff`` only."""
    cutoff_day = F.lit(cutoff).cast("date")
    days = purchase_days.filter(F.col("day") <= cutoff_day)
    occasions = purchase_occasions(purchase_days, cutoff)
    recent = []
    for window in sorted(windows_days):
        in_window = F.col("day") > F.date_sub(cutoff_day, window)
        recent += [
            F.count(F.when(in_window, 1)).alias(f"purchases_last_{window}d"),
            F.coalesce(F.sum(F.when(in_window, F.col("revenue"))), F.lit(0.0)).alias(
                f"revenue_last_{window}d"
            ),
        ]
    trend_window = max(windows_days)
    previous = (F.col("day") <= F.date_sub(cutoff_day, trend_window)) & (
        F.col("day") > F.date_sub(cutoff_day, 2 * trend_window)
    )
    per_occasion = occasions.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("n_purchase_days"),
        F.min("day").alias("first_day"),
        F.max("day").alias("last_day"),
        F.sum("revenue").alias("monetary_total"),
        *recent,
        F.coalesce(F.sum(F.when(previous, F.col("revenue"))), F.lit(0.0)).alias("revenue_prev"),
    )
    # customers with sold lines (units left after returns) up to the cutoff
    per_line = (
        days.groupBy("customer_id")
        .agg(
            F.sum("new_invoices").alias("n_invoices"),
            F.sum("sold_lines").alias("n_lines"),
            F.sum("sold_items").alias("n_items"),
            F.sum("new_products").alias("distinct_products"),
        )
        .filter(F.col("n_lines") > 0)
    )
    # the country most of the customer's sold lines came from (ties: the last name)
    country = (
        days.select("customer_id", F.explode("country_lines").alias("c"))
        .groupBy("customer_id", F.col("c.country").alias("country"))
        .agg(F.sum("c.n").alias("n"))
        .groupBy("customer_id")
        .agg(F.max(F.struct("n", "country"))["country"].alias("country"))
    )
    last_recent = F.col(f"revenue_last_{trend_window}d")
    repeat_span = F.datediff("last_day", "first_day")
    return (
        per_occasion.join(per_line, "customer_id")
        .join(country, "customer_id")
        .select(
            "customer_id",
            F.datediff(cutoff_day, "last_day").alias("recency_days"),
            F.datediff(cutoff_day, "first_day").alias("tenure_days"),
            "n_purchase_days",
            (F.col("n_purchase_days") > 1).cast("int").alias("is_repeat_customer"),
            "monetary_total",
            (F.col("monetary_total") / F.col("n_purchase_days")).alias("monetary_mean"),
            "n_invoices",
            (F.col("n_lines") / F.col("n_invoices")).alias("avg_lines_per_invoice"),
            (F.col("n_items") / F.col("n_invoices")).alias("avg_items_per_invoice"),
            "distinct_products",
            F.when(F.col("n_purchase_days") > 1, repeat_span / (F.col("n_purchase_days") - 1))
            .otherwise(0.0)
            .alias("mean_days_between_purchases"),
            *[
                c
                for window in sorted(windows_days)
                for c in (f"purchases_last_{window}d", f"revenue_last_{window}d")
            ],
            # in [-1, 1]: last window against the one before it, 0 when both are empty
            F.when(
                (last_recent + F.col("revenue_prev")) > 0,
                (last_recent - F.col("revenue_prev")) / (last_recent + F.col("revenue_prev")),
            )
            .otherwise(0.0)
            .alias(f"revenue_trend_{trend_window}d"),
            F.coalesce(F.col("country"), F.lit("Unknown")).alias("country"),
        )
    )


def add_rfm_segments(features: DataFrame, segments: list[dict[str, Any]]) -> DataFrame:
    """Quintile scores (5 = best) for recency, frequency and monetary, and named segments.

    Segments follow the usual R x F grid (``parameters_data_processing.yml``): the first
    segment whose recency and frequency score lists both match names the customer.
    """
    quantiles = [0.2, 0.4, 0.6, 0.8]
    bounds = features.agg(
        *[
            F.percentile_approx(column, quantiles, 100_000).alias(column)
            for column in ("recency_days", "n_purchase_days", "monetary_total")
        ]
    )

    def rank(column: str) -> Column:
        # 1 + number of quintile boundaries strictly below the value
        return F.lit(1) + sum(
            (F.col(column) > F.col(f"_bounds.{column}")[i]).cast("int") for i in range(4)
        )

    scored = features.crossJoin(F.broadcast(bounds.select(F.struct("*").alias("_bounds"))))
    scored = scored.select(
        *features.columns,
        (F.lit(6) - rank("recency_days")).alias("r_score"),
        rank("n_purchase_days").alias("f_score"),
        rank("monetary_total").alias("m_score"),
    )
    segment = F.lit("Other")
    for rule in reversed(segments):
        matches = F.col("r_score").isin(rule["recency"]) & F.col("f_score").isin(rule["frequency"])
        segment = F.when(matches, rule["name"]).otherwise(segment)
    return scored.withColumn(
        "rfm_score", F.concat_ws("", "r_score", "f_score", "m_score")
    ).withColumn("rfm_segment", segment)


def _customer_features_at(
    purchase_days: DataFrame, cutoff: str, features: dict[str, Any]
) -> DataFrame:
    rfm = compute_rfm_features(purchase_days, cutoff, features["windows_days"])
    return add_rfm_segments(rfm, features["rfm_segments"])


def build_customer_features(
    purchase_days: DataFrame, analysis_period: dict[str, Any], features: dict[str, Any]
) -> DataFrame:
    """Churn-model training features from calibration-period data only (nothing after
    ``calibration_end`` is read), with RFM scores and segments."""
    return _customer_features_at(purchase_days, analysis_period["calibration_end"], features)


def build_current_customer_features(
    purchase_days: DataFrame, analysis_period: dict[str, Any], features: dict[str, Any]
) -> DataFrame:
    """The same features as of ``observation_end``: what the churn model scores today."""
    return _customer_features_at(purchase_days, analysis_period["observation_end"], features)


def quarantine_metrics(quarantine_report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Row counts (total, clean, quarantined, per reason) as MLflow metrics."""
    return as_mlflow_metrics(quarantine_report)
