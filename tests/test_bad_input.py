"""The bad-input catalogue: each kind ends quarantined with a reason, or in one clear error.

Every case goes through the project's reader and cleaning nodes on a real file. Where rows
are quarantined, raw rows = clean + quarantine, and the quarantine keeps the raw text.
"""

from __future__ import annotations

import pytest
from kedro.io.core import DatasetError

from cltv.pipelines.data_processing.nodes import InputDataError

from .test_cleaning import GOOD, HEADER, PROJECT_CLEANING, clean_csv, own_case, rows_by_case

COLUMNS = HEADER.split(",")
PROJECT_FORMATS = PROJECT_CLEANING["timestamp_formats"]


def _line(invoice: str, **fields: str) -> str:
    """GOOD with another invoice number and some fields replaced (``Customer_ID`` = column)."""
    values = dict(zip(COLUMNS, GOOD.split(","), strict=True))
    values["Invoice"] = invoice
    values.update({name.replace("_", " "): value for name, value in fields.items()})
    return ",".join(values.values())


CANCEL = "C{},85123A,WHITE HANGING HEART,-6,2010-12-01 09:00:00,2.55,17850.0,United Kingdom"

# kind -> (lines after the header, {reason: rows} in quarantine, clean rows)
QUARANTINED = {
    "too_few_fields": ([GOOD, "536400,85123A,SHORT,6"], {"malformed_record": 1}, 1),
    "too_many_fields": ([GOOD, GOOD + ",extra,more"], {"malformed_record": 1}, 1),
    "fractional_quantity": ([GOOD, _line("1", Quantity="6.5")], {"unparseable_quantity": 1}, 1),
    "text_price": ([GOOD, _line("2", Price="two")], {"unparseable_price": 1}, 1),
    "bad_timestamp": (
        [GOOD, _line("3", InvoiceDate="2010-12-01 25:61:00")],
        {"unparseable_invoice_date": 1},
        1,
    ),
    "bad_customer_id": (
        [GOOD, _line("4", Customer_ID="17850;DROP")],
        {"unparseable_customer_id": 1},
        1,
    ),
    "iso_and_uci_timestamps": (
        [
            GOOD,
            _line("5", InvoiceDate="2010-12-01T08:26:00"),
            _line("6", InvoiceDate="12/1/2010 8:26"),
            _line("7", InvoiceDate="2010-12-01 08:26"),
        ],
        {},
        4,
    ),
    # a negative quantity with a customer is a return: it nets the sale at or before it
    "negative_quantity": ([GOOD, _line("8", Quantity="-6")], {"cancellation": 1}, 1),
    "zero_quantity": ([GOOD, _line("9", Quantity="0")], {"non_positive_quantity": 1}, 1),
    "zero_price": ([GOOD, _line("10", Price="0")], {"non_positive_price": 1}, 1),
    "negative_price": ([GOOD, _line("11", Price="-2.55")], {"non_positive_price": 1}, 1),
    "overflowing_quantity": (
        [GOOD, _line("12", Quantity="99999999999999999999")],
        {"unparseable_quantity": 1},
        1,
    ),
    "absurd_price": ([GOOD, _line("13", Price="1e308")], {"unparseable_price": 1}, 1),
    "not_a_number_price": ([GOOD, _line("14", Price="NaN")], {"unparseable_price": 1}, 1),
    "future_timestamp": (
        [GOOD, _line("15", InvoiceDate="2030-01-01 00:00:00")],
        {"future_date": 1},
        1,
    ),
    # returns match the customer's earlier sales of the stock code, whatever the invoice number;
    # the sale stays in the clean table with its returned quantity
    "cancellation_of_a_known_invoice": ([GOOD, CANCEL.format("536365")], {"cancellation": 1}, 1),
    "cancellation_of_another_invoice": ([GOOD, CANCEL.format("999999")], {"cancellation": 1}, 1),
    "cancellation_before_any_sale": (
        [GOOD, CANCEL.format("999999").replace("2010-12-01", "2010-11-30")],
        {"unmatched_cancellation": 1},
        1,
    ),
    "exact_duplicate_lines": ([GOOD, GOOD, GOOD], {"duplicate_line": 2}, 1),
    "missing_customer_id": ([GOOD, _line("16", Customer_ID="")], {"missing_customer_id": 1}, 1),
}


def _write(tmp_path, text: str | bytes):
    path = tmp_path / "input.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _counts(quarantine) -> dict[str, int]:
    return {r["reason"]: r["count"] for r in quarantine.groupBy("reason").count().collect()}


@pytest.fixture(scope="module")
def every_kind_at_once(spark, tmp_path_factory):
    """Every kind of :data:`QUARANTINED` cleaned in one file, as separate as separate files
    (:func:`own_case`): per kind, its rows in quarantine by reason and its clean rows."""
    kinds = sorted(QUARANTINED)
    lines = [own_case(i, line) for i, kind in enumerate(kinds) for line in QUARANTINED[kind][0]]
    path = tmp_path_factory.mktemp("bad_input") / "input.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    clean, quarantine, report = clean_csv(
        path, latest="2012-01-01", max_fraction=1.0, formats=PROJECT_FORMATS
    )
    return rows_by_case(clean, quarantine, kinds), report, len(lines)


def test_the_shared_file_keeps_the_cases_apart(spark, tmp_path):
    """The shared file's rewriting changes nothing a case tests: the sale a known invoice's
    cancellation returns, cleaned on its own with the rewriting, is still netted."""
    case = "cancellation_of_a_known_invoice"
    lines = [own_case(7, line) for line in QUARANTINED[case][0]]
    path = _write(tmp_path, "\n".join([HEADER, *lines]))
    clean, quarantine, _ = clean_csv(path, latest="2012-01-01", max_fraction=1.0)
    assert _counts(quarantine) == {"cancellation": 1}
    (sale,) = clean.collect()
    assert (sale["invoice"], sale["customer_id"]) == ("07-536365", "90007")
    assert sale["returned_quantity"] == 6


def test_every_row_of_the_shared_file_is_accounted_for(every_kind_at_once):
    found, report, n_lines = every_kind_at_once
    assert report["rows"] == n_lines
    assert sum(f["clean"] + sum(f["quarantined"].values()) for f in found.values()) == n_lines


@pytest.mark.parametrize("kind", sorted(QUARANTINED))
def test_bad_rows_are_quarantined_with_a_reason(every_kind_at_once, kind):
    lines, reasons, clean_rows = QUARANTINED[kind]
    found = every_kind_at_once[0][kind]
    assert found["quarantined"] == reasons
    assert found["clean"] == clean_rows
    assert clean_rows + sum(reasons.values()) == len(lines)


def test_extra_columns_are_ignored(spark, tmp_path):
    header = HEADER + ",Channel,Notes"
    path = _write(tmp_path, f"{header}\n{GOOD},web,gift\n")
    clean, quarantine, _ = clean_csv(path, max_fraction=1.0)
    assert clean.count() == 1 and quarantine.count() == 0
    assert "Channel" not in clean.columns


def test_latin_1_text_is_quarantined_not_mangled(spark, tmp_path):
    # "CAFÉ" and "Côte" in Latin-1: bytes that are not UTF-8
    text = f"{HEADER}\n{GOOD}\n" + _line("17", Description="CAFÉ AU LAIT") + "\n"
    path = _write(tmp_path, text.encode("latin-1"))
    clean, quarantine, report = clean_csv(path, max_fraction=1.0)
    assert clean.count() == 1
    assert _counts(quarantine) == {"invalid_encoding": 1}
    assert report["rows"] == 2


def test_latin_1_file_reads_with_its_encoding(spark, tmp_path):
    text = f"{HEADER}\n{GOOD}\n" + _line("17", Description="CAFÉ AU LAIT") + "\n"
    path = _write(tmp_path, text.encode("latin-1"))
    clean, quarantine, _ = clean_csv(path, max_fraction=1.0, load_args={"encoding": "iso-8859-1"})
    assert quarantine.count() == 0
    assert "CAFÉ AU LAIT" in {r["description"] for r in clean.collect()}


def test_header_only_is_one_clear_error(spark, tmp_path):
    path = _write(tmp_path, HEADER + "\n")
    with pytest.raises(InputDataError, match=r"input\.csv: the file has a header but no rows"):
        clean_csv(path)


def test_blank_lines_are_not_rows(spark, tmp_path):
    """Empty lines anywhere (before the header too), CRLF ones, and lines of only spaces or a
    tab: nothing is read from them, so nothing is quarantined for them either."""
    second = _line("18")
    text = f"\n{HEADER}\r\n\r\n{GOOD}\n\n   \n\t\n{second}\n\n\n"
    clean, quarantine, report = clean_csv(_write(tmp_path, text.encode()), max_fraction=1.0)
    assert (report["rows"], report["clean_rows"], quarantine.count()) == (2, 2, 0)
    assert clean.count() == 2
    only_blank = _write(tmp_path, f"{HEADER}\n\n  \n\r\n".encode())
    with pytest.raises(InputDataError, match=r"the file has a header but no rows"):
        clean_csv(only_blank)


def test_empty_file_is_one_clear_error(spark, tmp_path):
    path = _write(tmp_path, "")
    with pytest.raises(DatasetError, match=r"input\.csv: the file is empty"):
        clean_csv(path)


def test_wrong_delimiter_names_file_column_and_delimiter(spark, tmp_path):
    path = _write(tmp_path, HEADER.replace(",", ";") + "\n" + GOOD.replace(",", ";") + "\n")
    with pytest.raises(InputDataError) as error:
        clean_csv(path)
    message = str(error.value)
    assert "input.csv" in message and "'Invoice'" in message and "';'" in message


def test_a_file_that_is_98_percent_junk_stops_with_its_main_reason(spark, tmp_path):
    junk = [_line(str(n), Customer_ID="") for n in range(98)]
    good = [_line(str(1000 + n)) for n in range(2)]
    path = _write(tmp_path, "\n".join([HEADER, *good, *junk]) + "\n")
    with pytest.raises(
        InputDataError,
        match=r"input\.csv: 98\.0% of 100 rows quarantined.*missing_customer_id \(98\)",
    ):
        clean_csv(path)


@pytest.mark.parametrize(
    ("text", "load_args", "without_spark"),
    [
        (f"{HEADER}\n{GOOD}\n", {}, True),
        (f"\n  \r\n{HEADER}\r\n{GOOD}\r\n", {}, True),  # blank lines, then a CRLF header
        ("Invoice,,Price,price,PRICE,Qty,\n1,2,3,4,5,6,7\n", {}, True),  # empty, repeated names
        ("Invoice;StockCode;Customer ID\n1;2;3\n", {"sep": ";"}, True),
        ("Invoice\tPrice\n1\t2\n", {"sep": "\t", "encoding": "iso-8859-1"}, True),
        ('"Invoice","Stock,Code",Price\n1,2,3\n', {}, True),  # quoted names, one with a comma
        ('"In""voice",Price\n1,2\n', {}, False),  # a quote in a name: Spark reads it
        ("Invo\\ice,Price\n1,2\n", {}, False),  # an escape character: Spark reads it
        ("\ufeffInvoice,Price\n1,2\n", {}, False),  # a byte order mark: Spark reads it
        ("Invoice,Price\n1,2\n", {"comment": "#"}, False),  # another reader option
    ],
)
def test_the_header_read_without_spark_names_columns_as_spark_does(
    spark, tmp_path, text, load_args, without_spark
):
    from cltv.datasets import InvoiceCSVDataset

    path = tmp_path / "input.csv"
    path.write_bytes(text.encode("utf-8"))
    dataset = InvoiceCSVDataset(filepath=str(path), load_args=load_args)
    spark_names = spark.read.options(**dataset._load_args).csv(str(path), header=True).columns
    assert dataset.header(spark) == spark_names
    assert (dataset._plain_local_header(path) is not None) == without_spark
