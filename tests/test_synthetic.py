"""The generator: deterministic, sized as asked, and its occasions survive cleaning exactly."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv

from cltv.pipelines.data_processing.nodes import (
    purchase_occasions,
)
from cltv.synthetic import (
    RAW_COLUMNS,
    RAW_SCHEMA,
    GeneratorSettings,
    _split_into_lines,
    generate_chunks,
    write_csv,
)

from .test_cleaning import clean_csv


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


def test_all_kinds_of_dirt_are_present(tmp_path):
    chunk = next(generate_chunks(20_000, seed=1))
    lines = chunk.lines
    assert pc.any(pc.starts_with(lines["Invoice"], "C")).as_py()
    assert pc.any(pc.equal(lines["Customer ID"], "")).as_py()
    prices = pc.cast(lines["Price"], pa.float64())
    assert pc.any(pc.less_equal(prices, 0)).as_py()
    rows = lines.to_pylist()
    assert len({tuple(r.values()) for r in rows}) < len(rows)  # exact duplicates


def test_occasions_after_cleaning_are_the_drawn_ones(spark, tmp_path):
    path = tmp_path / "process.csv"
    chunks = list(generate_chunks(15_000, seed=11))
    pa.csv.write_csv(pa.concat_tables([c.lines for c in chunks]).cast(RAW_SCHEMA), str(path))
    drawn = pa.concat_tables([c.occasions for c in chunks]).to_pandas()
    drawn = {(r.customer_id, r.day, r.revenue_pence_sum) for r in drawn.itertuples()}

    clean, _, _ = clean_csv(path)
    found = {
        (r["customer_id"], r["day"], round(r["revenue"] * 100))
        for r in purchase_occasions(clean, "2100-01-01").collect()
    }
    assert found == drawn


def test_every_basket_balances_even_when_many_must_be_redrawn():
    # 2-3 pence over ~4 lines: most baskets fail the first draw, some fail again after it
    rng = np.random.default_rng(0)
    values = rng.integers(2, 4, size=20_000)
    invoice, _, quantity, unit_pence = _split_into_lines(rng, values, GeneratorSettings())
    totals = np.bincount(invoice, weights=quantity * unit_pence, minlength=values.size)
    assert (totals == values).all()
    assert (unit_pence >= 1).all() and (quantity >= 1).all()
