"""The report tables: Spark aggregates the gold tables; only the small results leave it.

The cost of a report is its Spark actions, so the tables that read the same rows are made by
one aggregate: :func:`summarise_sales` makes the monthly revenue, the cohort retention and the
sales KPIs from ``purchase_days`` in one pass; :func:`summarise_customers` makes the segment,
country, value-concentration, CLV-distribution and value-tier tables and the customer KPIs
from the reporting base (``customer_features_current``, ``churn_predictions`` and
``customer_cltv``, one row per customer) in one pass after one look at ``customer_cltv``
(how many customers, its 99th percentile). Each table is a pandas DataFrame of a few dozen rows
at most.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cltv.parameters import TARGET_RANKINGS

CLV_BINS = 20

# the reason in the retention list of a target without one in words
NO_SINGLE_RISK = "no single risk stands out"


# ------------------------------------------------------------------ purchase days
def summarise_sales(
    purchase_days: DataFrame, max_months: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Net revenue, invoices and active customers per calendar month; the share of each
    monthly acquisition cohort buying again k months (at most ``max_months``) after its first
    month; and the sales KPIs (revenue, customers, invoices). Days with a sale only: lines
    returned in full are no sale.

    One aggregate over each customer's sold months, by month, by cohort and month, and over
    all (a customer's first month counts it once).
    """
    month = F.trunc("day", "month")
    sold = purchase_days.filter(F.col("sold_lines") > 0).select(
        "customer_id", month.alias("month"), "revenue", "new_invoices"
    )
    # the cohort is a customer's first month; the months of a customer then sum in place
    customer_months = (
        sold.withColumn("cohort", F.min("month").over(Window.partitionBy("customer_id")))
        .groupBy("customer_id", "cohort", "month")
        .agg(F.sum("revenue").alias("revenue"), F.sum("new_invoices").alias("invoices"))
    )
    rows = (
        customer_months.groupingSets([["month"], ["cohort", "month"], []], "cohort", "month")
        .agg(
            F.grouping_id().alias("set"),
            F.sum("revenue").alias("revenue"),
            F.sum("invoices").alias("invoices"),
            F.count(F.lit(1)).alias("customers"),
            F.count(F.when(F.col("month") == F.col("cohort"), 1)).alias("first_months"),
        )
        .select(
            "*",
            F.months_between("month", "cohort").cast("int").alias("months_since"),
            F.date_format("month", "yyyy-MM").alias("month_label"),
            F.date_format("cohort", "yyyy-MM").alias("cohort_label"),
        )
        .toPandas()
    )
    # grouping_id's bits: cohort (2) and month (1) grouped out
    by_month, by_cohort, everything = (rows[rows["set"] == s] for s in (2, 0, 3))
    revenue = (
        by_month[["month_label", "revenue", "invoices", "customers"]]
        .rename(columns={"month_label": "month", "customers": "active_customers"})
        .sort_values("month")
        .astype({"invoices": "int64", "active_customers": "int64"})
        .reset_index(drop=True)
    )
    cohorts = by_cohort.loc[
        by_cohort["months_since"] <= max_months, ["cohort_label", "months_since", "customers"]
    ].rename(columns={"cohort_label": "cohort"})
    sizes = cohorts.loc[cohorts["months_since"] == 0, ["cohort", "customers"]]
    cohorts = cohorts.merge(sizes.rename(columns={"customers": "cohort_size"}), on="cohort")
    cohorts["retention"] = cohorts["customers"] / cohorts["cohort_size"]
    cohorts = (
        cohorts.sort_values(["cohort", "months_since"])[
            ["cohort", "months_since", "customers", "cohort_size", "retention"]
        ]
        .astype({"months_since": "int32", "customers": "int64", "cohort_size": "int64"})
        .reset_index(drop=True)
    )
    total = everything.iloc[0] if len(everything) else None
    sales = {
        "revenue": float(total["revenue"]) if total is not None else None,
        "customers": int(total["first_months"]) if total is not None else 0,
        "invoices": int(total["invoices"]) if total is not None else 0,
    }
    return revenue, cohorts, sales


# ------------------------------------------------------------------ customers
def summarise_customers(
    current_features: DataFrame,
    churn_predictions: DataFrame,
    customer_cltv: DataFrame,
    top_countries: int,
    value_tiers: list[dict[str, Any]],
    bins: int = CLV_BINS,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The report tables of the customer tables, and the customer KPIs:

    - per RFM segment (customers with features and a churn score), largest revenue so far
      first: customers, revenue so far, predicted CLV (total and mean) and churn risk;
    - churn risk in the ``top_countries`` countries with the most scored customers;
    - the share of predicted CLV, and of revenue so far, held by the top 1 / 5 / 20 % of the
      valued customers (by ``clv_rank``);
    - a histogram of predicted CLV on ``bins`` equal-width bins up to the 99th percentile
      (+ overflow);
    - per value tier (largest CLV first): customers, total and mean CLV, the mean of the
      customers' CLV interval bounds, and how wide the intervals are: the mean width and the
      width as a share of the tier's CLV (the parameters' uncertainty, tier by tier);
    - the KPIs: predicted CLV and purchases, the repeat-customer rate, the mean churn
      probability and the high-risk customers.

    Two Spark aggregates: ``customer_cltv``'s size and 99th percentile (the cuts), then one
    over the reporting base, grouped by segment, country, tier, CLV bin and not at all.
    """
    cuts = customer_cltv.agg(
        F.count(F.lit(1)).alias("n"),
        F.percentile_approx("clv", 0.99, 10_000).alias("upper"),
    ).first()
    n, upper = cuts["n"], cuts["upper"] or 1.0
    width = upper / bins
    shares = sorted(tier["share"] for tier in value_tiers)
    base = reporting_base(current_features, churn_predictions, customer_cltv)
    segment = F.col("in_features") & F.col("in_churn")
    scored, valued = F.col("in_churn"), F.col("in_cltv")
    high = (F.col("risk_band") == "high").cast("double")
    interval = F.col("clv_upper") - F.col("clv_lower")
    top = [valued & (F.col("clv_rank") <= math.ceil(s * n)) for s in shares]
    clv_bin = F.least(F.floor(F.col("clv") / F.lit(width)), F.lit(bins)).cast("int")

    def when(condition: Column, column: str | Column) -> Column:
        # a name is a column here (F.when reads a bare string as a literal)
        return F.when(condition, F.col(column) if isinstance(column, str) else column)

    rows = (
        base.withColumn("bin", F.when(valued, clv_bin))
        .groupingSets(
            [["rfm_segment"], ["country"], ["value_tier"], ["bin"], []],
            "rfm_segment",
            "country",
            "value_tier",
            "bin",
        )
        .agg(
            F.grouping_id().alias("set"),
            # segments
            F.count(when(segment, 1)).alias("segment_customers"),
            F.sum(when(segment, "monetary_total")).alias("segment_revenue"),
            F.sum(when(segment, "clv")).alias("segment_clv"),
            F.avg(when(segment, "clv")).alias("segment_mean_clv"),
            F.avg(when(segment, "churn_probability")).alias("segment_churn"),
            F.avg(when(segment, high)).alias("segment_high"),
            # countries, and the churn KPIs
            F.count(when(scored, 1)).alias("scored_customers"),
            F.avg(when(scored, "churn_probability")).alias("scored_churn"),
            F.avg(when(scored, high)).alias("scored_high"),
            F.sum(when(scored, high.cast("int"))).alias("scored_high_total"),
            # tiers, bins, concentration and the value KPIs
            F.count(when(valued, 1)).alias("valued_customers"),
            F.min(when(valued, "clv_rank")).alias("first_rank"),
            F.sum(when(valued, "clv")).alias("clv_total"),
            F.avg(when(valued, "clv")).alias("clv_mean"),
            F.avg(when(valued, "clv_lower")).alias("clv_lower_mean"),
            F.avg(when(valued, "clv_upper")).alias("clv_upper_mean"),
            F.avg(when(valued, interval)).alias("interval_width_mean"),
            F.sum(when(valued, interval)).alias("width_total"),
            F.sum(when(valued, "monetary_total")).alias("revenue_total"),
            F.avg(when(valued, (F.col("frequency") > 0).cast("double"))).alias("repeat_rate"),
            F.sum(when(valued, "expected_purchases")).alias("purchases"),
            *[F.sum(when(t, "clv")).alias(f"clv_{i}") for i, t in enumerate(top)],
            *[F.sum(when(t, "monetary_total")).alias(f"revenue_{i}") for i, t in enumerate(top)],
        )
        .toPandas()
    )
    # grouping_id's bits, one per key (rfm_segment 8, country 4, value_tier 2, bin 1) grouped out
    by_set = {key: rows[rows["set"] == 15 - bit] for key, bit in _KEY_BITS.items()}
    everything = rows[rows["set"] == 15].iloc[0]
    segments = _segments(by_set["rfm_segment"])
    countries = _countries(by_set["country"], top_countries)
    concentration = pd.DataFrame(
        [
            {
                "top_share": s,
                "group": f"top {s:.0%}",
                "customers": math.ceil(s * n),
                "clv_share": _or_zero(everything[f"clv_{i}"]) / everything["clv_total"],
                "revenue_share": _or_zero(everything[f"revenue_{i}"]) / everything["revenue_total"],
            }
            for i, s in enumerate(shares)
        ]
    )
    distribution = _distribution(by_set["bin"], bins, width)
    tiers = _tiers(by_set["value_tier"])
    figures = {
        "repeat_customer_rate": float(everything["repeat_rate"]),
        "predicted_clv_total": float(everything["clv_total"]),
        "predicted_purchases": float(everything["purchases"]),
        "mean_churn_probability": float(everything["scored_churn"]),
        "high_risk_customers": int(_or_zero(everything["scored_high_total"])),
    }
    return segments, countries, concentration, distribution, tiers, figures


_KEY_BITS = {"rfm_segment": 8, "country": 4, "value_tier": 2, "bin": 1}


def reporting_base(
    current_features: DataFrame, churn_predictions: DataFrame, customer_cltv: DataFrame
) -> DataFrame:
    """One row per customer in any of the three tables, with what the reports read of each
    and whether it is in each (``in_features``, ``in_churn``, ``in_cltv``): one shuffle by
    customer, where two joins would take one per table."""
    parts = [
        current_features.select(
            "customer_id", "rfm_segment", "monetary_total", F.lit(True).alias("in_features")
        ),
        churn_predictions.select(
            "customer_id",
            "country",
            "churn_probability",
            "risk_band",
            F.lit(True).alias("in_churn"),
        ),
        customer_cltv.select(
            "customer_id",
            "clv",
            "clv_rank",
            "value_tier",
            "clv_lower",
            "clv_upper",
            "frequency",
            "expected_purchases",
            F.lit(True).alias("in_cltv"),
        ),
    ]
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part, allowMissingColumns=True)
    columns = [name for name in union.columns if name != "customer_id"]
    return union.groupBy("customer_id").agg(
        *[
            (
                F.coalesce(F.max(name), F.lit(False))
                if name.startswith("in_")
                else F.first(name, ignorenulls=True)
            ).alias(name)
            for name in columns
        ]
    )


def _or_zero(value: Any) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)


def _segments(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows[rows["segment_customers"] > 0]
    return (
        rows.rename(
            columns={
                "segment_customers": "customers",
                "segment_revenue": "revenue",
                "segment_clv": "predicted_clv",
                "segment_mean_clv": "mean_clv",
                "segment_churn": "mean_churn_probability",
                "segment_high": "high_risk_share",
            }
        )
        .sort_values("revenue", ascending=False)[
            [
                "rfm_segment",
                "customers",
                "revenue",
                "predicted_clv",
                "mean_clv",
                "mean_churn_probability",
                "high_risk_share",
            ]
        ]
        .reset_index(drop=True)
    )


def _countries(rows: pd.DataFrame, top_countries: int) -> pd.DataFrame:
    rows = rows[rows["scored_customers"] > 0]
    return (
        rows.rename(
            columns={
                "scored_customers": "customers",
                "scored_churn": "mean_churn_probability",
                "scored_high": "high_risk_share",
            }
        )
        .sort_values(["customers", "country"], ascending=[False, True], na_position="first")[
            ["country", "customers", "mean_churn_probability", "high_risk_share"]
        ]
        .head(top_countries)
        .reset_index(drop=True)
    )


def _distribution(rows: pd.DataFrame, bins: int, width: float) -> pd.DataFrame:
    counts = (
        rows[rows["valued_customers"] > 0]
        .sort_values("bin", na_position="first")[["bin", "valued_customers"]]
        .rename(columns={"valued_customers": "customers"})
        .astype({"bin": "int32"})
        .reset_index(drop=True)
    )
    counts["clv_from"] = counts["bin"] * width
    counts["label"] = [
        f"{lo:,.0f}+" if b == bins else f"{lo:,.0f}–{lo + width:,.0f}"
        for b, lo in zip(counts["bin"], counts["clv_from"], strict=True)
    ]
    return counts


def _tiers(rows: pd.DataFrame) -> pd.DataFrame:
    table = (
        rows[rows["valued_customers"] > 0]
        .rename(columns={"valued_customers": "customers"})
        .sort_values("first_rank")[
            [
                "value_tier",
                "customers",
                "clv_total",
                "clv_mean",
                "clv_lower_mean",
                "clv_upper_mean",
                "interval_width_mean",
                "width_total",
            ]
        ]
        .reset_index(drop=True)
    )
    clv, width = table["clv_total"], table.pop("width_total")
    table["interval_width_share"] = (width / clv.where(clv > 0)).fillna(0.0)
    return table


# ------------------------------------------------------------------ retention targets
def retention_targets(
    churn_predictions: DataFrame,
    customer_cltv: DataFrame,
    min_probability: float,
    limit: int,
    rank_by: str = "value_at_risk",
) -> pd.DataFrame:
    """High-value customers (top 20% by CLV) most at risk: who to call first.

    Among customers whose churn probability reaches ``min_probability``, ordered by
    ``rank_by``: ``value_at_risk`` (CLV x churn probability) or ``value_at_risk_lower``
    (the lower bound of the CLV's interval x churn probability); with, last, the advice in
    words: each one's first churn reason (``churn_reason_text``) and strongest actionable
    retention lever (``retention_lever_text``).
    """
    if rank_by not in TARGET_RANKINGS:
        raise ValueError(
            f"reporting.targets.rank_by is {rank_by!r}; use one of {', '.join(TARGET_RANKINGS)}"
        )
    targets = (
        churn_predictions.filter(F.col("churn_probability") >= min_probability)
        .select(
            "customer_id",
            "country",
            "rfm_segment",
            "churn_probability",
            "risk_band",
            "churn_reason_text",
            "retention_lever_text",
        )
        .join(
            customer_cltv.filter(F.col("value_tier") != "rest").select(
                "customer_id", "clv", "clv_lower", "clv_upper", "value_tier", "p_alive"
            ),
            "customer_id",
        )
        .withColumn("value_at_risk", F.col("clv") * F.col("churn_probability"))
        .withColumn("value_at_risk_lower", F.col("clv_lower") * F.col("churn_probability"))
        .orderBy(F.desc(rank_by), "customer_id")
        .limit(limit)
        .toPandas()
    )
    # a target whose risk comes only from inputs not shown (the base rate, a segment named
    # for praise: reasons.shown_where) has no reason in words; the list says so rather than
    # leave the agent a blank
    targets["churn_reason_text"] = targets["churn_reason_text"].fillna(NO_SINGLE_RISK)
    # the advice last: the list reads who, how much, then why and what to build on
    advice = ["churn_reason_text", "retention_lever_text"]
    return targets[[*targets.columns.drop(advice), *advice]]
