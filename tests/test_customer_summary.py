"""customer_summary equals lifetimes' calibration_and_holdout_data, and a hand-computed case."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from lifetimes.utils import calibration_and_holdout_data

from cltv.pipelines.data_processing.nodes import (
    build_current_customer_features,
    build_customer_features,
    build_customer_history,
    build_customer_summary,
    compute_rfm_features,
    resolve_analysis_period,
    summarise_purchase_days,
)
from cltv.synthetic import write_csv

from .test_cleaning import clean_csv

CLEAN_SCHEMA = (
    "invoice string, stock_code string, description string, quantity bigint, "
    "returned_quantity bigint, invoice_date timestamp, price double, customer_id string, "
    "country string, revenue double"
)


def _clean_frame(spark, lines):
    """Clean lines, as the purchase days the summaries read."""
    rows = [
        (f"I{n}", "S", "D", qty, 0, dt.datetime.fromisoformat(ts), price, cid, "UK", qty * price)
        for n, (cid, ts, qty, price) in enumerate(lines)
    ]
    return summarise_purchase_days(spark.createDataFrame(rows, CLEAN_SCHEMA))


def test_hand_computed_summary(spark):
    clean = _clean_frame(
        spark,
        [
            ("a", "2011-01-01 10:00:00", 1, 10.0),  # first occasion
            ("a", "2011-01-01 15:00:00", 1, 5.0),  # same day: same occasion
            ("a", "2011-01-08 09:00:00", 2, 10.0),  # repeat: 20
            ("a", "2011-01-15 09:00:00", 1, 40.0),  # repeat: 40
            ("a", "2011-02-10 09:00:00", 1, 1.0),  # holdout
            ("b", "2011-01-29 12:00:00", 3, 1.0),  # one-time buyer
            ("c", "2011-02-05 12:00:00", 1, 9.0),  # first seen in the holdout: excluded
        ],
    )
    period = {"calibration_end": "2011-01-29", "observation_end": "2011-02-26", "holdout_days": 28}
    days = build_customer_summary(clean, period, "D").toPandas().set_index("customer_id")
    assert sorted(days.index) == ["a", "b"]
    a, b = days.loc["a"].to_dict(), days.loc["b"].to_dict()
    cal = ("frequency", "recency", "T", "monetary_value")
    # a: occasions on day 0 (15), 7 (20), 14 (40); repeats 20 and 40 average 30
    assert [a[k] for k in cal] == [2, 14.0, 28.0, 30.0]
    assert [a[k] for k in ("frequency_holdout", "duration_holdout", "churned")] == [1, 28.0, 0]
    assert [b[k] for k in cal] == [0, 0.0, 0.0, 0.0]
    assert [b[k] for k in ("frequency_holdout", "churned")] == [0, 1]

    weeks = build_customer_summary(clean, period, "W").toPandas().set_index("customer_id")
    assert weeks.loc["a", "recency"] == 2.0 and weeks.loc["a", "T"] == 4.0
    assert weeks.loc["a", "duration_holdout"] == 4.0


def test_period_defaults_follow_the_spec(spark):
    clean = _clean_frame(
        spark, [("a", "2011-01-01 10:00:00", 1, 1.0), ("a", "2011-12-09 10:00:00", 1, 1.0)]
    )
    period = resolve_analysis_period(clean, None, None, 90)
    assert period["observation_end"] == "2011-12-09"
    assert period["calibration_end"] == "2011-09-10"
    assert period["holdout_days"] == 90
    custom = resolve_analysis_period(clean, "2011-11-30", "2011-06-30", 90)
    assert (custom["calibration_end"], custom["holdout_days"]) == ("2011-06-30", 153)


@pytest.mark.parametrize("time_unit", ["D", "W"])
def test_summary_matches_lifetimes_on_generated_data(spark, tmp_path, time_unit):
    csv = tmp_path / "generated.csv"
    write_csv(20_000, csv, seed=7)
    clean, _, _ = clean_csv(csv)
    days = summarise_purchase_days(clean)
    period = resolve_analysis_period(days, None, None, 90)
    ours = build_customer_summary(days, period, time_unit).toPandas().set_index("customer_id")

    lines = clean.select("customer_id", "invoice_date", "revenue").toPandas()
    # lifetimes compares timestamps with midnight of calibration_end; the SPEC's ends are whole
    # days (inclusive), which is lifetimes on transaction dates
    lines["invoice_date"] = lines["invoice_date"].dt.normalize()
    # one row per purchase occasion: lifetimes' holdout mean is over its input rows
    occasions = lines.groupby(["customer_id", "invoice_date"], as_index=False)["revenue"].sum()
    expected = calibration_and_holdout_data(
        occasions,
        "customer_id",
        "invoice_date",
        calibration_period_end=period["calibration_end"],
        observation_period_end=period["observation_end"],
        freq="D",
        monetary_value_col="revenue",
    )
    scale = 7.0 if time_unit == "W" else 1.0
    assert len(ours) == len(expected) > 500
    ours = ours.loc[expected.index]
    np.testing.assert_array_equal(ours["frequency"], expected["frequency_cal"])
    np.testing.assert_allclose(ours["recency"], expected["recency_cal"] / scale, rtol=1e-12)
    np.testing.assert_allclose(ours["T"], expected["T_cal"] / scale, rtol=1e-12)
    np.testing.assert_allclose(ours["monetary_value"], expected["monetary_value_cal"], rtol=1e-9)
    np.testing.assert_array_equal(ours["frequency_holdout"], expected["frequency_holdout"])
    np.testing.assert_allclose(
        ours["monetary_value_holdout"], expected["monetary_value_holdout"], rtol=1e-9
    )
    np.testing.assert_allclose(ours["duration_holdout"], expected["duration_holdout"] / scale)
    assert (ours["churned"] == (expected["frequency_holdout"] == 0).astype(int)).all()


def test_purchase_days_and_features_by_hand(spark):
    """The purchase days hold what the features count: distinct invoices and products of sold
    lines up to a cutoff, sold lines and units, the main country; a line returned in full
    sells nothing (its day is no occasion)."""
    line = dt.datetime.fromisoformat
    lines = spark.createDataFrame(
        [
            ("a", "A1", "S1", "UK", line("2011-01-02 10:00"), 2, 0, 20.0),
            ("a", "A1", "S2", "UK", line("2011-01-02 10:00"), 1, 0, 5.0),
            ("a", "A2", "S2", "UK", line("2011-01-05 11:00"), 1, 0, 5.0),
            ("a", "A2", "S3", "France", line("2011-01-05 11:00"), 3, 1, 20.0),  # 2 kept
            ("a", "A3", "S4", "France", line("2011-01-09 09:00"), 2, 2, 0.0),  # all returned
            ("a", "A5", "S1", "France", line("2011-02-10 09:00"), 1, 0, 10.0),  # after cutoff
            ("b", "B1", "S1", "UK", line("2011-01-03 09:00"), 1, 0, 3.0),
            ("b", "B2", "S1", "Germany", line("2011-01-04 09:00"), 1, 0, 4.0),
        ],
        "customer_id string, invoice string, stock_code string, country string, "
        "invoice_date timestamp, quantity bigint, returned_quantity bigint, revenue double",
    )
    days = summarise_purchase_days(lines).toPandas().set_index(["customer_id", "day"]).sort_index()
    a = days.loc["a"]
    assert a["revenue"].tolist() == [25.0, 25.0, 0.0, 10.0]
    assert a["sold_lines"].tolist() == [2, 2, 0, 1]
    assert a["sold_items"].tolist() == [3, 3, 0, 1]
    assert a["new_invoices"].tolist() == [1, 1, 0, 1]  # A3 sold nothing
    assert a["new_products"].tolist() == [2, 1, 0, 0]  # S2 and S1 seen before
    features = (
        compute_rfm_features(summarise_purchase_days(lines), "2011-01-31", [30])
        .toPandas()
        .set_index("customer_id")
    )
    first = features.loc["a"]
    assert (first["n_purchase_days"], first["monetary_total"]) == (2, 50.0)
    assert (first["recency_days"], first["tenure_days"]) == (26, 29)
    assert (first["n_invoices"], first["distinct_products"]) == (2, 3)
    assert (first["avg_lines_per_invoice"], first["avg_items_per_invoice"]) == (2.0, 3.0)
    assert (first["purchases_last_30d"], first["revenue_last_30d"]) == (2, 50.0)
    assert first["country"] == "UK"  # 3 sold lines from the UK, 1 from France
    # a tie (one line each): the last name, as before
    assert features.loc["b", "country"] == "UK"
    later = compute_rfm_features(summarise_purchase_days(lines), "2011-02-28", [30]).toPandas()
    later = later.set_index("customer_id").loc["a"]
    assert (later["n_invoices"], later["distinct_products"], later["country"]) == (3, 3, "UK")

    # the nodes: both tables from one history, each as of its own date
    period = {"calibration_end": "2011-01-31", "observation_end": "2011-02-28"}
    parameters = {"windows_days": [30], "rfm_segments": []}
    history = build_customer_history(summarise_purchase_days(lines), period, parameters)
    training = build_customer_features(history, period, parameters).toPandas()
    current = build_current_customer_features(history, period, parameters).toPandas()
    training, current = training.set_index("customer_id"), current.set_index("customer_id")
    assert training.loc["a", "n_purchase_days"] == 2 and current.loc["a", "n_purchase_days"] == 3
    assert (training.loc["a", "monetary_total"], current.loc["a", "monetary_total"]) == (50, 60)
    assert (training.loc["a", "recency_days"], current.loc["a", "recency_days"]) == (26, 18)
    assert current.loc["a", "revenue_last_30d"] == 10.0  # only 10 Feb is within 30 days
    assert (training.loc["b", "country"], current.loc["b", "country"]) == ("UK", "UK")


def test_purchase_days_shuffle_the_clean_lines_once(spark, tmp_path):
    """Every aggregation of summarise_purchase_days is keyed by the customer, so the lines
    cross the network once: one scan of the table, one exchange (AQE off, to read the plan
    Spark would run before adapting it)."""
    lines = spark.createDataFrame(
        [("a", "A1", "S1", "UK", dt.datetime(2011, 1, 2), 2, 0, 20.0)],
        "customer_id string, invoice string, stock_code string, country string, "
        "invoice_date timestamp, quantity bigint, returned_quantity bigint, revenue double",
    )
    lines.write.parquet(str(tmp_path / "clean"))
    adaptive = spark.conf.get("spark.sql.adaptive.enabled")
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try:
        days = summarise_purchase_days(spark.read.parquet(str(tmp_path / "clean")))
        plan = days._jdf.queryExecution().executedPlan().toString()
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", adaptive)
    assert plan.count("Exchange") == 1 and plan.count("FileScan parquet") == 1, plan
    assert days.count() == 1


def test_both_feature_tables_read_the_purchase_days_once(spark, tmp_path):
    """The training and the current features come from one history per customer: one scan
    and one exchange of the purchase days, persisted, which both tables then read."""
    lines = spark.createDataFrame(
        [("a", "A1", "S1", "UK", dt.datetime(2011, 1, 2), 2, 0, 20.0)],
        "customer_id string, invoice string, stock_code string, country string, "
        "invoice_date timestamp, quantity bigint, returned_quantity bigint, revenue double",
    )
    summarise_purchase_days(lines).write.parquet(str(tmp_path / "days"))
    period = {"calibration_end": "2011-01-31", "observation_end": "2011-02-28"}
    parameters = {"windows_days": [30], "rfm_segments": []}
    adaptive = spark.conf.get("spark.sql.adaptive.enabled")
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try:
        history = build_customer_history(
            spark.read.parquet(str(tmp_path / "days")), period, parameters
        )
        plan = history._jdf.queryExecution().executedPlan().toString()
        tables = [
            build(history, period, parameters)
            for build in (build_customer_features, build_current_customer_features)
        ]
        # the leaves a table's plan reads from (a cached relation is a leaf of its own)
        leaves = [t._jdf.queryExecution().executedPlan().collectLeaves() for t in tables]
        table_leaves = [{seq.apply(i).nodeName() for i in range(seq.size())} for seq in leaves]
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", adaptive)
        history.unpersist()
    assert plan.count("Exchange") == 1 and plan.count("FileScan parquet") == 1, plan
    assert table_leaves == [{"InMemoryTableScan"}] * 2
    assert [t.count() for t in tables] == [1, 1]
