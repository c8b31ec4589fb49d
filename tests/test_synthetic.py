"""The generator: deterministic, sized as asked, and its occasions survive cleaning exactly."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv
import pytest
from pyspark.sql import functions as F

from cltv.pipelines.data_processing.nodes import (
    is_non_product,
    purchase_occasions,
    summarise_purchase_days,
)
from cltv.synthetic import (
    RAW_COLUMNS,
    RAW_SCHEMA,
    GeneratorSettings,
    _split_into_lines,
    generate_chunks,
    write_csv,
)

from .test_cleaning import PROJECT_CLEANING, clean_csv


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deterministic_sized_and_with_truth(tmp_path):
    first, second, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    truth = write_csv(30_000, first, seed=3)
    write_csv(30_000, second, seed=3)
    write_csv(30_000, other, seed=4)
    assert _digest(first) == _digest(second) != _digest(other)
    lines = first.read_text().splitlines()
    assert abs(len(lines) - 1 - 30_000) <= 300
    assert lines[0].replace('"', "").split(",") == RAW_COLUMNS
    stored = json.loads((tmp_path / "a.csv.truth.json").read_text())
    assert stored == truth
    assert stored["time_unit"] == "W"
    assert set(stored["bgnbd"]) >= {"r", "alpha", "a", "b", "n_customers"}
    assert set(stored["gamma_gamma"]) >= {"p", "q", "gamma", "n_customers"}


def test_regimes_are_opt_in_sized_and_recorded(tmp_path):
    plain, real = tmp_path / "plain.csv", tmp_path / "real.csv"
    truth = write_csv(30_000, plain, seed=3)
    real_truth = write_csv(30_000, real, seed=3, regimes=("returns", "non_product"))
    assert "regimes" not in truth and "expected_reasons" not in truth
    assert real_truth["regimes"] == ["non_product", "returns"]
    # the process and its parameters do not move; only the lines around it do
    for model in ("bgnbd", "gamma_gamma"):
        del truth[model]["n_customers"], real_truth[model]["n_customers"]
        assert real_truth[model] == truth[model]
    rows = real.read_text().splitlines()
    assert abs(len(rows) - 1 - 30_000) <= 300 and real_truth["rows"] == len(rows) - 1
    assert sum(real_truth["expected_reasons"].values()) == real_truth["rows"]
    codes = {line.split(",")[1] for line in rows[1:]}
    assert {"POST", "DOT", "C2", "AMAZONFEE", "BANK CHARGES", "m"} <= codes


def test_all_kinds_of_dirt_are_present(tmp_path):
    chunk = next(generate_chunks(20_000, seed=1))
    lines = chunk.lines
    assert pc.any(pc.starts_with(lines["Invoice"], "C")).as_py()
    assert pc.any(pc.equal(lines["Customer ID"], "")).as_py()
    prices = pc.cast(lines["Price"], pa.float64())
    assert pc.any(pc.less_equal(prices, 0)).as_py()
    rows = lines.to_pylist()
    assert len({tuple(r.values()) for r in rows}) < len(rows)  # exact duplicates


@pytest.mark.parametrize(
    "regimes", [(), ("returns",), ("non_product",), ("returns", "non_product")], ids=str
)
def test_occasions_after_cleaning_are_the_drawn_ones(spark, tmp_path, regimes):
    """Cleaning and netting recover exactly what the process drew, under every regime: each
    added line lands in the reason the generator meant, and no returned order is a purchase."""
    path = tmp_path / "process.csv"
    chunks = list(generate_chunks(15_000, seed=11, settings=GeneratorSettings(regimes=regimes)))
    lines = pa.concat_tables([c.lines for c in chunks])
    pa.csv.write_csv(lines.cast(RAW_SCHEMA), str(path))
    drawn = pa.concat_tables([c.occasions for c in chunks]).to_pandas()
    drawn = {(r.customer_id, r.day, r.revenue_pence_sum) for r in drawn.itertuples()}
    expected = sum((Counter(c.expected_reasons) for c in chunks), Counter())

    clean, quarantine, report = clean_csv(path, latest="2030-01-01")
    found = {
        (r["customer_id"], r["day"], round(r["revenue"] * 100))
        for r in purchase_occasions(summarise_purchase_days(clean), "2100-01-01").collect()
    }
    assert found == drawn
    assert report["clean_rows"] == expected.pop("clean")
    assert report["by_reason"] == dict(expected)
    assert report["rows"] == lines.num_rows

    if "non_product" in regimes:
        codes = PROJECT_CLEANING["non_product_stock_codes"]
        non_product = quarantine.filter(F.col("reason") == "non_product")
        assert non_product.count() == expected["non_product"] > 0
        # every line with a non-product code and no return sign is one of them
        marked = is_non_product(F.col("StockCode"), codes)
        positive = lines.filter(pc.greater(pc.cast(lines["Quantity"], pa.int64()), 0))
        table = spark.createDataFrame(positive.to_pandas()).filter(
            marked & (F.col("Customer ID") != "")
        )
        assert table.count() == expected["non_product"]
    if "returns" in regimes:
        returned = report["returns"]
        assert returned["sale_lines_fully_returned"] > 0 and returned["unmatched_lines"] > 0
        # customers whose one order was cancelled within the hour are nobody's customers
        assert not {c for c, _, _ in found if c.startswith("9000")}
        assert clean.filter(F.col("customer_id").startswith("9000")).count() > 0


def test_every_basket_balances_even_when_most_are_overdrawn():
    # 2-3 pence over ~4 lines: most baskets' other lines reach the value at a penny a unit
    rng = np.random.default_rng(0)
    values = rng.integers(2, 4, size=20_000)
    invoice, position, quantity, unit_pence = _split_into_lines(rng, values, GeneratorSettings())
    totals = np.bincount(invoice, weights=quantity * unit_pence, minlength=values.size)
    assert (totals == values).all()
    assert (unit_pence >= 1).all() and (quantity >= 1).all()
    # the lines stay in invoice order, numbered 0, 1, ... within each (products are drawn
    # from the position, distinct within an invoice)
    lines = np.bincount(invoice, minlength=values.size)
    assert (np.diff(invoice) >= 0).all()
    assert (position == np.arange(invoice.size) - np.repeat(np.cumsum(lines) - lines, lines)).all()
    # an overdrawn basket is one line of quantity 1 carrying its whole value
    single = lines[invoice] == 1
    assert 0.3 < single.mean() < 1 and (quantity[single] == 1).all()
    assert (unit_pence[single] == values[invoice[single]]).all()
