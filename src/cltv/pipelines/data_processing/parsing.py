"""Reading the raw lines: the project's column names, each line parsed, and the reasons its own
text gives for keeping it out of the clean table."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import reduce
from operator import or_
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from cltv.datasets.invoice_csv_dataset import CORRUPT_RECORD_COLUMN

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
REGEX_PREFIX = "re:"


class InputDataError(ValueError):
    """The input cannot be processed; the message names the file, column and reason."""


# the reasons a line's own text gives, in the order they are checked (label_transactions)
TEXT_REASONS = (
    "malformed_record",
    "invalid_encoding",
    "missing_customer_id",
    "unparseable_customer_id",
    "unparseable_quantity",
    "unparseable_price",
    "unparseable_invoice_date",
    "future_date",
)
# the reasons a parseable line is not a sale (after duplicate_line, split.mark_duplicate_lines)
SALE_REASONS = ("cancellation", "non_product", "non_positive_quantity", "non_positive_price")


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
    reasons before duplicate_line; ``sale_reason``, those after it).

    The CSV is parsed once per run: the lines are persisted in Spark's cache (on local disk),
    the first step that reads them (the search for copies) fills it, and the
    later ones (returns, the clean and quarantine writes) read the columns they need from it.
    No table is written: the run's hook releases the cache at its end.
    """
    latest = latest_valid_date or datetime.now(timezone.utc).date().isoformat()
    # each value is parsed once, in a projection of its own, and the reasons read the parsed
    # columns: written inline, the later branches of the reasons would parse again
    parsed = standardised.withColumn("line_id", F.monotonically_increasing_id()).select(
        *RAW_TEXT_COLUMNS,
        "raw_record",
        "line_id",
        *[value.alias(name) for name, value in _parsed_values(timestamp_formats).items()],
    )
    quantity, price = F.col("_quantity"), F.col("price_value")
    blank = lambda c: F.col(c).isNull() | (F.trim(F.col(c)) == "")  # noqa: E731

    # undecodable bytes (a Latin-1 file read as UTF-8) arrive as U+FFFD: keep such rows apart
    # rather than analyse mangled text; `load_args: {encoding: iso-8859-1}` reads them right
    mangled = reduce(or_, [F.col(c).contains("\ufffd") for c in RAW_TEXT_COLUMNS])
    is_return = F.upper(F.trim(F.col("invoice"))).startswith("C") | (quantity < 0)
    text_reason = (
        F.when(F.col("raw_record").isNotNull(), "malformed_record")
        .when(mangled, "invalid_encoding")
        .when(blank("customer_id"), "missing_customer_id")
        .when(~F.col("customer_key").rlike(r"^[A-Za-z0-9_-]{1,64}$"), "unparseable_customer_id")
        .when(quantity.isNull() | (quantity != F.floor(quantity)), "unparseable_quantity")
        .when(price.isNull(), "unparseable_price")
        .when(F.col("invoice_ts").isNull(), "unparseable_invoice_date")
        .when(F.to_date("invoice_ts") > F.lit(latest).cast("date"), "future_date")
    )
    sale_reason = (
        F.when(is_return, "cancellation")
        .when(is_non_product(F.col("stock_code"), non_product_stock_codes or []), "non_product")
        .when(quantity <= 0, "non_positive_quantity")
        .when(price <= 0, "non_positive_price")
    )
    labelled = parsed.select(
        *RAW_TEXT_COLUMNS,
        "raw_record",
        "line_id",
        "customer_key",
        quantity.cast("bigint").alias("quantity_value"),
        "invoice_ts",
        "price_value",
        text_reason.alias("text_reason"),
        sale_reason.alias("sale_reason"),
        *_content_key(),
    )
    # on local disk: as fast to fill as a Parquet write here, and the JVM's heap stays free
    return labelled.persist(StorageLevel.DISK_ONLY)


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
    ``unparseable_quantity``), ``invoice_ts``. :func:`label_transactions` adds them to every
    line, and ``ingest_increment`` parses quarantined lines' text with them again."""
    values = _parsed_values(timestamp_formats)
    return [
        values["customer_key"].alias("customer_key"),
        values["_quantity"].cast("bigint").alias("quantity_value"),
        values["invoice_ts"].alias("invoice_ts"),
    ]


def _parsed_values(timestamp_formats: list[str]) -> dict[str, Column]:
    """The parsed fields of a raw line by name (the quantity still a double, so that a
    fraction can be told from whole units)."""
    return {
        "customer_key": _normalised_customer_id(F.col("customer_id")),
        "_quantity": _parsed_amount(F.col("quantity")),
        "price_value": _parsed_amount(F.col("price")),
        "invoice_ts": _parsed_timestamp(F.col("invoice_date"), timestamp_formats),
    }


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
