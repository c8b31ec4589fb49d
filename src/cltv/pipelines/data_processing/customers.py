"""The per-customer tables: purchase days, the analysis period, the calibration / holdout
summary and the churn features."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cltv.pipelines.data_processing.parsing import InputDataError

logger = logging.getLogger(__name__)

DAYS_PER_UNIT = {"D": 1.0, "W": 7.0}


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

    The lines are shuffled once, by customer: the first sightings are window functions and
    the sums aggregations keyed by the customer, so all of them run within those partitions.
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
    ).repartition("customer_id")
    sold = F.col("units") > 0

    def first_sold(key: str) -> Column:
        # the customer's first sold line of this invoice (stock code): its earliest day, once
        earliest = Window.partitionBy("customer_id", key).orderBy((~sold).cast("int"), "day")
        return (sold & (F.row_number().over(earliest) == 1)).cast("int")

    by_country = (
        lines.select(
            "customer_id",
            "day",
            "country",
            "revenue",
            "units",
            first_sold("invoice").alias("new_invoice"),
            first_sold("stock_code").alias("new_product"),
        )
        .groupBy("customer_id", "day", "country")
        .agg(
            F.sum("revenue").alias("revenue"),
            F.count(F.when(sold, 1)).alias("n"),
            F.sum(F.when(sold, F.col("units"))).alias("units"),
            F.sum("new_invoice").alias("new_invoices"),
            F.sum("new_product").alias("new_products"),
        )
    )
    return by_country.groupBy("customer_id", "day").agg(
        F.sum("revenue").alias("revenue"),
        F.sum("n").alias("sold_lines"),
        F.coalesce(F.sum("units"), F.lit(0)).alias("sold_items"),
        F.sum("new_invoices").alias("new_invoices"),
        F.sum("new_products").alias("new_products"),
        F.filter(F.collect_list(F.struct("country", "n")), lambda c: c["n"] > 0).alias(
            "country_lines"
        ),
    )


def is_purchase_occasion(until: str) -> Column:
    """Whether a row of ``purchase_days`` is a purchase occasion (SPEC: a calendar day whose
    summed revenue is positive) up to ``until``."""
    return (F.col("day") <= F.lit(until).cast("date")) & (F.col("revenue") > 0)


def purchase_occasions(purchase_days: DataFrame, until: str) -> DataFrame:
    """One row per (customer, calendar day) up to ``until`` whose summed revenue is positive."""
    return purchase_days.filter(is_purchase_occasion(until)).select("customer_id", "day", "revenue")


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
# the two dates features are computed as of: the training features stop at calibration_end,
# the scoring features at observation_end
CUTOFFS = {"calibration": "calibration_end", "current": "observation_end"}


def customer_history(
    purchase_days: DataFrame, cutoffs: dict[str, str], windows_days: list[int]
) -> DataFrame:
    """Per customer, one struct column per entry of ``cutoffs`` (name: date) holding the sums
    the RFM features need from the days up to that date: ``purchase_days`` is read and shuffled
    once, by customer, however many cutoffs there are.

    Every customer of ``purchase_days`` has a row; a struct's ``n_purchase_days`` is 0, or its
    ``n_lines`` null or 0, when the customer had no purchase occasion or no sold line by its
    date (:func:`rfm_features` leaves those customers out).
    """
    trend_window = max(windows_days)
    day, revenue = F.col("day"), F.col("revenue")

    def sums_up_to(cutoff: str) -> Column:
        cutoff_day = F.lit(cutoff).cast("date")
        known = day <= cutoff_day
        occasion = is_purchase_occasion(cutoff)

        def revenue_where(condition: Column) -> Column:
            return F.coalesce(F.sum(F.when(occasion & condition, revenue)), F.lit(0.0))

        recent = []
        for window in sorted(windows_days):
            in_window = day > F.date_sub(cutoff_day, window)
            recent += [
                F.count(F.when(occasion & in_window, 1)).alias(f"purchases_last_{window}d"),
                revenue_where(in_window).alias(f"revenue_last_{window}d"),
            ]
        previous = (day <= F.date_sub(cutoff_day, trend_window)) & (
            day > F.date_sub(cutoff_day, 2 * trend_window)
        )
        return F.struct(
            F.count(F.when(occasion, 1)).alias("n_purchase_days"),
            F.min(F.when(occasion, day)).alias("first_day"),
            F.max(F.when(occasion, day)).alias("last_day"),
            F.sum(F.when(occasion, revenue)).alias("monetary_total"),
            *recent,
            revenue_where(previous).alias("revenue_prev"),
            # the sold lines (units left after returns) of the known days
            F.sum(F.when(known, F.col("new_invoices"))).alias("n_invoices"),
            F.sum(F.when(known, F.col("sold_lines"))).alias("n_lines"),
            F.sum(F.when(known, F.col("sold_items"))).alias("n_items"),
            F.sum(F.when(known, F.col("new_products"))).alias("distinct_products"),
            F.flatten(F.collect_list(F.when(known, F.col("country_lines")))).alias("country_lines"),
        )

    return purchase_days.groupBy("customer_id").agg(
        *[sums_up_to(cutoff).alias(name) for name, cutoff in cutoffs.items()]
    )


def _main_country(country_lines: Column) -> Column:
    """The country most of the customer's sold lines came from (ties: the last name)."""
    countries = F.array_distinct(F.transform(country_lines, lambda c: c["country"]))
    per_country = F.transform(
        countries,
        lambda name: F.struct(
            F.aggregate(
                F.filter(country_lines, lambda c: c["country"].eqNullSafe(name)),
                F.lit(0).cast("long"),
                lambda total, c: total + c["n"],
            ).alias("n"),
            name.alias("country"),
        ),
    )
    return F.array_max(per_country)["country"]


def rfm_features(history: DataFrame, name: str, cutoff: str, windows_days: list[int]) -> DataFrame:
    """RFM and behaviour features per customer as of ``cutoff``, from the struct ``name`` of
    :func:`customer_history`: customers with a purchase occasion and a sold line by then."""
    cutoff_day = F.lit(cutoff).cast("date")
    sums = history.select("customer_id", f"{name}.*").filter(
        (F.col("n_purchase_days") > 0) & (F.col("n_lines") > 0)
    )
    trend_window = max(windows_days)
    last_recent = F.col(f"revenue_last_{trend_window}d")
    repeat_span = F.datediff("last_day", "first_day")
    return sums.select(
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
        F.coalesce(_main_country(F.col("country_lines")), F.lit("Unknown")).alias("country"),
    )


def compute_rfm_features(
    purchase_days: DataFrame, cutoff: str, windows_days: list[int]
) -> DataFrame:
    """RFM and behaviour features per customer from the days up to ``cutoff`` only."""
    history = customer_history(purchase_days, {"features": cutoff}, windows_days)
    return rfm_features(history, "features", cutoff, windows_days)


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


def build_customer_history(
    purchase_days: DataFrame, analysis_period: dict[str, Any], features: dict[str, Any]
) -> DataFrame:
    """:func:`customer_history` as of ``calibration_end`` and ``observation_end``, persisted:
    both feature tables come from this one read of ``purchase_days`` (the run's hook
    releases it)."""
    cutoffs = {name: analysis_period[end] for name, end in CUTOFFS.items()}
    return customer_history(purchase_days, cutoffs, features["windows_days"]).persist(
        StorageLevel.MEMORY_AND_DISK
    )


def check_holdout(customer_history: DataFrame, analysis_period: dict[str, Any]) -> dict[str, Any]:
    """``analysis_period`` once its holdout can train the models: the training run's
    ``customer_summary`` and ``customer_features`` are built from what this returns, so a
    holdout no model can learn from stops the run before either fit and before they are
    written, with one line giving the dates, the churned and not churned customers and what
    to change (:func:`holdout_problem`).

    The counts are one aggregate over :func:`build_customer_history`'s persisted table, whose
    calibration and current structs count each customer's purchase occasions up to
    ``calibration_end`` and ``observation_end``: no pass over the purchase days of its own
    (whichever node reads the table first fills the cache). Scoring does not call it: it
    needs no holdout.
    """
    before = F.col("calibration.n_purchase_days")
    bought_in_holdout = F.col("current.n_purchase_days") > before
    counts = customer_history.agg(
        F.count(F.when((before > 0) & ~bought_in_holdout, 1)).alias("churned"),
        F.count(F.when((before > 0) & bought_in_holdout, 1)).alias("not_churned"),
        # customers first seen in the holdout too: a holdout with none has no purchase at all
        F.count(F.when(bought_in_holdout, 1)).alias("holdout_buyers"),
    ).first()
    churned, not_churned, holdout_buyers = (int(n) for n in counts)
    problem = holdout_problem(analysis_period, churned, not_churned, holdout_buyers)
    if problem:
        raise InputDataError(problem)
    logger.info(
        "Holdout %s to %s: %d customers of the calibration period churned, %d did not",
        analysis_period["calibration_end"],
        analysis_period["observation_end"],
        churned,
        not_churned,
    )
    return analysis_period


def holdout_problem(
    analysis_period: dict[str, Any], churned: int, not_churned: int, holdout_buyers: int
) -> str | None:
    """Why no churn model can learn from this holdout, on one line with the dates, the
    counts and what to change; None when it can: ``observation_end`` after the last purchase
    (customers would be labelled churned for days with no data), no customer by
    ``calibration_end``, no purchase at all in the holdout, or one class only."""
    first = analysis_period["first_transaction_date"]
    last = analysis_period["last_transaction_date"]
    cal_end, obs_end = analysis_period["calibration_end"], analysis_period["observation_end"]
    if obs_end > last:  # ISO dates order as text
        why = f"observation_end {obs_end} is after the last purchase in the data"
        fix = f"set observation_end on or before {last}, or leave it null"
    elif churned + not_churned == 0:
        why = "no customer bought on or before calibration_end"
        fix = f"set calibration_end on or after {first}, or a shorter holdout_days"
    elif holdout_buyers == 0:
        why = "nobody bought in the holdout, after calibration_end up to observation_end"
        fix = "move the holdout to a period with purchases, or leave both dates null"
    elif not_churned == 0:
        why = "every customer of the calibration period churned"
        fix = "lengthen the holdout (holdout_days, or an earlier calibration_end)"
    elif churned == 0:
        why = "no customer of the calibration period churned"
        fix = "shorten the holdout (holdout_days, or a later calibration_end)"
    else:
        return None
    return (
        f"the holdout cannot train the models: {why}; purchases from {first} to {last}, "
        f"calibration_end {cal_end}, observation_end {obs_end}; churned customers: {churned}, "
        f"not churned: {not_churned}; {fix}"
    )


def _customer_features_as_of(
    history: DataFrame, analysis_period: dict[str, Any], features: dict[str, Any], name: str
) -> DataFrame:
    cutoff = analysis_period[CUTOFFS[name]]
    rfm = rfm_features(history, name, cutoff, features["windows_days"])
    return add_rfm_segments(rfm, features["rfm_segments"])


def build_customer_features(
    history: DataFrame, analysis_period: dict[str, Any], features: dict[str, Any]
) -> DataFrame:
    """Churn-model training features from calibration-period data only (the history's
    calibration struct sums nothing after ``calibration_end``), with RFM scores and segments."""
    return _customer_features_as_of(history, analysis_period, features, "calibration")


def build_current_customer_features(
    history: DataFrame, analysis_period: dict[str, Any], features: dict[str, Any]
) -> DataFrame:
    """The same features as of ``observation_end``: what the churn model scores today."""
    return _customer_features_as_of(history, analysis_period, features, "current")
