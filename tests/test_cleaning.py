"""Cleaning: every raw row ends in exactly one of clean or quarantine, with the right reason."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from cltv.datasets import InvoiceCSVDataset
from cltv.pipelines.data_processing.nodes import (
    RAW_TEXT_COLUMNS,
    InputDataError,
    label_transactions,
    mark_duplicate_lines,
    match_returns,
    split_clean_and_quarantine,
    standardise_columns,
)

from .conftest import PROJECT_ROOT

FORMATS = ["yyyy-MM-dd HH:mm:ss", "M/d/yyyy H:mm"]
II_COLUMNS = {
    "invoice": "Invoice",
    "stock_code": "StockCode",
    "description": "Description",
    "quantity": "Quantity",
    "invoice_date": "InvoiceDate",
    "price": "Price",
    "customer_id": "Customer ID",
    "country": "Country",
}
HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country"
GOOD = "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom"

# one raw line per quarantine reason, with the reason a person would give it
CASES = {
    "malformed_record": "536365,85123A,TOO FEW FIELDS,6",
    "missing_customer_id": "536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,,United Kingdom",
    "unparseable_customer_id": "536367,84879,BIRD,32,2010-12-01 08:34:00,1.69,17 850,France",
    "unparseable_quantity": "536368,22960,JAM,six,2010-12-01 08:34:00,4.25,13047.0,France",
    "unparseable_price": "536369,21756,BATH,3,2010-12-01 08:35:00,£5.95,13047.0,France",
    "unparseable_invoice_date": "536370,22728,ALARM,24,yesterday,3.75,12583.0,France",
    "unmatched_cancellation": "C536379,22961,JAM,-1,2010-12-01 09:41:00,1.45,14527.0,France",
    "non_positive_quantity": "536380,22961,JAM,0,2010-12-01 09:41:00,1.45,14527.0,France",
    "non_product": "536383,POST,POSTAGE,3,2010-12-01 09:41:00,18.0,12583.0,France",
    "non_positive_price": "536381,22139,RETROSPOT,5,2010-12-01 09:41:00,0.0,15311.0,France",
    "future_date": "536382,22139,RETROSPOT,5,2099-12-01 09:41:00,4.95,15311.0,France",
}


PROJECT_CLEANING = yaml.safe_load(
    (PROJECT_ROOT / "conf" / "base" / "parameters_data_processing.yml").read_text()
)["cleaning"]
NET = {"mode": "net", "max_days": None}


def clean_standardised(
    standardised,
    latest=None,
    max_fraction=0.5,
    formats=FORMATS,
    returns=NET,
    non_product=None,
    source="input.csv",
):
    """label -> mark copies -> match_returns -> split, as data_processing wires them:
    (clean, quarantine, report).

    ``non_product`` defaults to the project's list of non-product stock codes.
    """
    codes = PROJECT_CLEANING["non_product_stock_codes"] if non_product is None else non_product
    labelled, line_counts = mark_duplicate_lines(
        label_transactions(standardised, formats, latest, codes)
    )
    matches = match_returns(labelled, returns)
    return split_clean_and_quarantine(labelled, matches, line_counts, returns, max_fraction, source)


def clean_csv(
    path,
    mapping=II_COLUMNS,
    latest=None,
    max_fraction=0.5,
    load_args=None,
    formats=FORMATS,
    returns=NET,
    non_product=None,
):
    """The cleaning nodes of data_processing on one CSV: (clean, quarantine, report)."""
    # the copies found in a path are persisted; the pipeline's hook clears them after a run
    SparkSession.getActiveSession().catalog.clearCache()
    raw = InvoiceCSVDataset(filepath=str(path), load_args=load_args).load()
    return clean_standardised(
        standardise_columns(raw, mapping, str(path)),
        latest,
        max_fraction,
        formats,
        returns,
        non_product,
        str(path),
    )


def _run_cleaning(spark, tmp_path, lines, latest="2012-01-01", max_fraction=1.0, header=HEADER):
    path = tmp_path / "input.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return clean_csv(path, latest=latest, max_fraction=max_fraction)


def own_case(index: int, line: str) -> str:
    """``line`` as case ``index`` of one shared file: its invoice number prefixed with the case
    (a C for cancellations stays first) and every well-formed customer id replaced by the
    case's own, so that no two cases share a line (duplicates) or a customer (returns), and each
    row can be told apart by its invoice. A malformed or missing id stays as it is."""
    fields = line.split(",")
    cancelled = fields[0].startswith("C")
    fields[0] = ("C" if cancelled else "") + f"{index:02d}-" + fields[0].removeprefix("C")
    if len(fields) > 6 and re.fullmatch(r"\d+(\.0)?", fields[6]):
        fields[6] = f"{90000 + index}.0"
    return ",".join(fields)


def case_of(invoice: str | None, raw_record: str | None) -> int:
    text = invoice if raw_record is None else raw_record.split(",", 1)[0]
    return int(text.removeprefix("C").split("-", 1)[0])


def rows_by_case(clean, quarantine, cases: list[str]) -> dict[str, dict]:
    """The rows of a file of :func:`own_case` lines, per case: its quarantined rows counted by
    reason, and its clean rows."""
    found = {case: {"quarantined": Counter(), "clean": 0} for case in cases}
    for row in quarantine.select("invoice", "raw_record", "reason").collect():
        found[cases[case_of(row["invoice"], row["raw_record"])]]["quarantined"][row["reason"]] += 1
    for row in clean.select("invoice").collect():
        found[cases[case_of(row["invoice"], None)]]["clean"] += 1
    return found


@pytest.fixture(scope="module")
def every_case_at_once(spark, tmp_path_factory):
    """GOOD and each line of :data:`CASES`, every pair a case of one file (:func:`own_case`):
    per case, the reasons its rows were quarantined for and its clean rows; and the report."""
    reasons = sorted(CASES)
    lines = [
        own_case(i, line) for i, reason in enumerate(reasons) for line in (GOOD, CASES[reason])
    ]
    clean, quarantine, report = _run_cleaning(spark, tmp_path_factory.mktemp("cases"), lines)
    return rows_by_case(clean, quarantine, reasons), report


@pytest.mark.parametrize("reason", sorted(CASES))
def test_each_bad_line_is_quarantined_with_its_reason(every_case_at_once, reason):
    found = every_case_at_once[0][reason]
    assert found["clean"] == 1
    assert found["quarantined"] == {reason: 1}


def test_the_report_counts_each_reason_once(every_case_at_once):
    report = every_case_at_once[1]
    assert report["by_reason"] == dict.fromkeys(CASES, 1)
    assert report["rows"] == 2 * len(CASES) and report["clean_rows"] == len(CASES)


def test_quarantine_keeps_the_raw_text(spark, tmp_path):
    _, quarantine, _ = _run_cleaning(spark, tmp_path, [CASES["unparseable_price"]])
    row = quarantine.collect()[0]
    assert row["price"] == "£5.95" and row["customer_id"] == "13047.0"
    _, quarantine, _ = _run_cleaning(spark, tmp_path, [CASES["malformed_record"]])
    assert quarantine.collect()[0]["raw_record"] == CASES["malformed_record"]


def test_exact_duplicates_keep_one_copy(spark, tmp_path):
    clean, quarantine, report = _run_cleaning(spark, tmp_path, [GOOD, GOOD, GOOD])
    assert clean.count() == 1
    assert quarantine.count() == 2
    assert report["by_reason"] == {"duplicate_line": 2}


def test_lines_that_differ_only_in_which_field_is_empty_are_not_copies(spark, tmp_path):
    # Spark's hashes skip nulls: without the null mask in the content key these two lines (the
    # same text, once as the stock code and once as the description) would hash alike
    moved = [
        "536365,SAMEWORD,,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
        "536365,,SAMEWORD,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
    ]
    clean, quarantine, _ = _run_cleaning(spark, tmp_path, moved)
    assert clean.count() == 2 and quarantine.count() == 0


def test_the_earliest_copy_is_the_one_kept(spark, tmp_path):
    path = tmp_path / "input.csv"
    path.write_text("\n".join([HEADER, GOOD, GOOD, GOOD]) + "\n")
    raw = InvoiceCSVDataset(filepath=str(path)).load()
    standardised = standardise_columns(raw, II_COLUMNS, str(path))
    labelled, line_counts = mark_duplicate_lines(
        label_transactions(standardised, FORMATS, "2012-01-01", [])
    )
    rows = labelled.orderBy("line_id").collect()
    assert [r["reason"] for r in rows] == [None, "duplicate_line", "duplicate_line"]
    # counted as read: three sales, two of them copies of the first
    assert line_counts["rows"] == 3 and line_counts["by_reason"]["clean"] == 3
    assert line_counts["copies_by_sale_reason"] == {"clean": 2}


def test_clean_line_is_parsed(spark, tmp_path):
    us_date = "536365,85123A,HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom"
    clean, _, _ = _run_cleaning(spark, tmp_path, [GOOD, us_date.replace("536365", "536366")])
    rows = sorted(clean.collect(), key=lambda r: r["invoice"])
    assert rows[0]["customer_id"] == "17850"  # "17850.0" normalised
    assert rows[0]["invoice_date"] == dt.datetime(2010, 12, 1, 8, 26)
    assert rows[1]["invoice_date"] == dt.datetime(2010, 12, 1, 8, 26)
    assert rows[0]["quantity"] == 6 and rows[0]["price"] == 2.55
    assert rows[0]["revenue"] == pytest.approx(15.3)


def test_missing_required_column_names_file_and_column(spark, tmp_path):
    header = HEADER.replace(",Price,", ",Cost,")
    with pytest.raises(InputDataError) as error:
        _run_cleaning(spark, tmp_path, [GOOD], header=header)
    message = str(error.value)
    assert "input.csv" in message and "'Price'" in message and "missing" in message


def test_online_retail_i_names_work_through_the_mapping(spark, tmp_path):
    path = tmp_path / "retail_i.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        + GOOD
        + "\n"
    )
    mapping = {
        **II_COLUMNS,
        "invoice": "InvoiceNo",
        "price": "UnitPrice",
        "customer_id": "CustomerID",
    }
    clean, _, _ = clean_csv(path, mapping)
    assert clean.collect()[0]["customer_id"] == "17850"


def test_too_much_junk_stops_the_run(spark, tmp_path):
    junk = [CASES["missing_customer_id"].replace("536366", str(n)) for n in range(3)]
    with pytest.raises(
        InputDataError,
        match=r"input\.csv: 75\.0% of 4 rows quarantined.*"
        r"missing_customer_id \(3\)",
    ):
        _run_cleaning(spark, tmp_path, [GOOD, *junk], max_fraction=0.5)


def test_missing_file_is_named(spark, tmp_path):
    from kedro.io.core import DatasetError

    with pytest.raises(DatasetError, match=r"nowhere\.csv: input file not found"):
        InvoiceCSVDataset(filepath=str(tmp_path / "nowhere.csv")).load()


# ---------------------------------------------------------------- property
_field = st.one_of(
    st.sampled_from(
        [
            "",
            "1",
            "-2",
            "0",
            "2.5",
            "x",
            "C1",
            "17850.0",
            "2010-12-01 08:26:00",
            "12/1/2010 8:26",
            "2099-01-01 00:00:00",
            "United Kingdom",
        ]
    ),
    st.text(alphabet="abcXYZ019 .-/:", max_size=6),
)
_row = st.lists(_field, min_size=8, max_size=8)


# few examples of up to 120 rows rather than many of up to 40: a row is lost or duplicated
# as easily among more rows, and each example costs one cleaning run, whatever its size
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(_row, min_size=1, max_size=120))
def test_no_row_is_lost_or_duplicated(spark, rows):
    spark.catalog.clearCache()
    raw = spark.createDataFrame(
        [(*row, None) for row in rows],
        StructType(
            [StructField(c, StringType()) for c in (*II_COLUMNS.values(), "_corrupt_record")]
        ),
    )
    clean, quarantine, report = clean_standardised(
        standardise_columns(raw, II_COLUMNS, "gen.csv"), "2012-01-01", 1.0, source="gen.csv"
    )
    n_clean, n_quarantine = clean.count(), quarantine.count()
    assert n_clean + n_quarantine == len(rows) == report["rows"]
    assert n_clean == report["clean_rows"]
    assert quarantine.filter("reason IS NULL").count() == 0
    # every quarantined row is an input row, kept as raw text, at most as often as it came in
    quarantined = Counter(tuple(r[c] for c in RAW_TEXT_COLUMNS) for r in quarantine.collect())
    assert not quarantined - Counter(tuple(r) for r in rows)
