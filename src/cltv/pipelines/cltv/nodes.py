"""Nodes of ``cltv``: BG/NBD + Gamma-Gamma customer value, a naive baseline, holdout validation.

The models are fitted on the driver from the distinct (frequency, recency, T) and
(frequency, monetary_value) rows with their counts, aggregated in Spark; predictions run in
Spark over all customers (``mapInPandas``), never by collecting them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cltv import metrics
from cltv.models import BetaGeoModel, ConvergenceError, GammaGammaModel
from cltv.pipelines.data_processing.nodes import days_per_unit

logger = logging.getLogger(__name__)

# time units in a month, as lifetimes' customer_lifetime_value counts them
MONTH_IN_UNITS = {"W": 4.345, "D": 30.0}
FREQUENCY_BUCKETS = 7  # calibration table rows: 0, 1, ..., 6 and "7+"
# |corr(frequency, spend)| above this questions Gamma-Gamma's independence assumption
INDEPENDENCE_WARNING = 0.3


# ------------------------------------------------------------------ fitting
def _fit(model, parameter: str, *columns):
    """``model.fit(*columns)``; a failure names the parameter that usually cures it."""
    try:
        return model.fit(*columns)
    except ConvergenceError as exc:
        raise ConvergenceError(
            f"{exc}. A small penalty usually helps: add {parameter}=0.001 to the run's "
            f"parameters, e.g. kedro run --params {parameter}=0.001"
        ) from exc


def _report_boundary(name: str, model) -> None:
    if model.boundary_:
        logger.warning(
            "%s: optimum on the boundary (%s). %s", name, ", ".join(model.boundary_), model.note_
        )


def fit_cltv_models(
    summary: DataFrame, bgnbd: dict[str, Any], gamma_gamma: dict[str, Any], time_unit: str
) -> dict[str, Any]:
    """BG/NBD on every customer and Gamma-Gamma on repeat customers, with fit diagnostics.

    ``bgnbd`` and ``gamma_gamma`` are the models' parameters (``penalizer``). A fit whose
    optimum is on a boundary (e.g. no dropout detectable) is reported with a warning, and its
    JSON carries ``boundary`` and ``note``.
    """
    histories = summary.groupBy("frequency", "recency", "T").count().toPandas()
    purchases = _fit(
        BetaGeoModel(bgnbd["penalizer"]),
        "cltv.bgnbd.penalizer",
        histories["frequency"],
        histories["recency"],
        histories["T"],
        histories["count"],
    )
    _report_boundary("BG/NBD", purchases)
    repeat = summary.filter((F.col("frequency") > 0) & (F.col("monetary_value") > 0))
    correlation = repeat.agg(F.corr("frequency", "monetary_value")).first()[0]
    spends = repeat.groupBy("frequency", "monetary_value").count().toPandas()
    spend = _fit(
        GammaGammaModel(gamma_gamma["penalizer"]),
        "cltv.gamma_gamma.penalizer",
        spends["frequency"],
        spends["monetary_value"],
        spends["count"],
    )
    _report_boundary("Gamma-Gamma", spend)
    if correlation is not None and abs(correlation) > INDEPENDENCE_WARNING:
        logger.warning(
            "Gamma-Gamma assumes spend is independent of frequency, but their correlation "
            "among repeat customers is %.3f",
            correlation,
        )
    logger.info(
        "BG/NBD %s (log-likelihood %.1f, %d customers); Gamma-Gamma %s (%d repeat customers, "
        "frequency-spend correlation %s)",
        {k: None if v is None else round(v, 4) for k, v in purchases.params_.items()},
        purchases.log_likelihood_,
        purchases.n_customers_,
        {k: round(v, 4) for k, v in spend.params_.items()},
        spend.n_customers_,
        "n/a" if correlation is None else f"{correlation:.3f}",
    )
    return {
        "time_unit": time_unit,
        "bgnbd": purchases.summary(),
        "gamma_gamma": {**spend.summary(), "frequency_monetary_correlation": correlation},
    }


def model_parameters(fit: dict[str, Any]) -> dict[str, Any]:
    """``cltv_model_params.json`` exactly as the SPEC defines it."""
    bgnbd, gamma_gamma = fit["bgnbd"], fit["gamma_gamma"]
    return {
        "time_unit": fit["time_unit"],
        "bgnbd": {
            key: bgnbd[key] for key in ("r", "alpha", "a", "b", "log_likelihood", "n_customers")
        },
        "gamma_gamma": {key: gamma_gamma[key] for key in ("p", "q", "gamma", "n_customers")},
    }


# ------------------------------------------------------------------ naive baseline
def naive_baseline(summary: DataFrame, analysis_period: dict[str, Any]) -> dict[str, Any]:
    """The seed's formula needs a churn rate and a fallback order value; both from data.

    Monthly churn rate: the share of customers with no purchase in the holdout, as a rate per
    30 days; expected lifespan = 1 / rate (months). One-time buyers have no repeat order
    value, so they get the repeat customers' mean.
    """
    row = summary.agg(
        F.avg("churned").alias("churned_share"),
        F.avg(F.when(F.col("frequency") > 0, F.col("monetary_value"))).alias("mean_order_value"),
    ).first()
    share = float(row["churned_share"])
    monthly = 1.0 - (1.0 - share) ** (30.0 / analysis_period["holdout_days"])
    return {
        "holdout_churned_share": share,
        "monthly_churn_rate": monthly,
        "expected_lifespan_months": None if monthly == 0 else 1.0 / monthly,  # None: forever
        "mean_repeat_order_value": float(row["mean_order_value"] or 0.0),
    }


def _naive_rate(frequency: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """Repeat purchases per time unit so far: the rate a no-dropout model extrapolates."""
    return np.where(big_t > 0, frequency / np.where(big_t > 0, big_t, 1.0), 0.0)


# ------------------------------------------------------------------ prediction
CLTV_COLUMNS = (
    "customer_id string, frequency long, recency double, T double, monetary_value double, "
    "p_alive double, expected_purchases double, expected_average_order_value double, "
    "clv double, naive_clv double"
)


def _customer_values(
    batches: Iterator[pd.DataFrame],
    fit: dict[str, Any],
    naive: dict[str, Any],
    valuation: dict[str, Any],
    month: float,
) -> Iterator[pd.DataFrame]:
    purchases = BetaGeoModel.from_params(fit["bgnbd"])
    spend = GammaGammaModel.from_params(fit["gamma_gamma"])
    months, rate, margin = (
        valuation["horizon_months"],
        valuation["discount_rate"],
        valuation["margin"],
    )
    lifespan = min(months, naive["expected_lifespan_months"] or math.inf)
    for batch in batches:
        x, t_x, big_t, m = (
            batch[c].to_numpy(float) for c in ("frequency", "recency", "T", "monetary_value")
        )
        order_value = spend.predict_average_order_value(x, m)
        # lifetimes' customer_lifetime_value: each month's expected purchases, discounted
        clv = np.zeros(len(batch))
        previous = np.zeros(len(batch))
        for i in range(1, months + 1):
            cumulative = purchases.predict_purchases(i * month, x, t_x, big_t)
            clv += order_value * (cumulative - previous) / (1.0 + rate) ** i
            previous = cumulative
        own_order_value = np.where(x > 0, m, naive["mean_repeat_order_value"])
        values = batch[["customer_id", "frequency", "recency", "T", "monetary_value"]].assign(
            p_alive=purchases.predict_probability_alive(x, t_x, big_t),
            expected_purchases=previous,
            expected_average_order_value=order_value,
            clv=margin * clv,
            naive_clv=margin * own_order_value * _naive_rate(x, big_t) * month * lifespan,
        )
        _stop_on_invalid(values)
        yield values


VALUE_COLUMNS = ("p_alive", "expected_purchases", "expected_average_order_value", "clv")


def _stop_on_invalid(values: pd.DataFrame) -> None:
    """No table gets a negative, NaN or infinite value: stop, naming the first customer."""
    numbers = values[list(VALUE_COLUMNS)].to_numpy()
    invalid = ~np.isfinite(numbers) | (numbers < 0)
    if invalid.any():
        row, column = np.argwhere(invalid)[0]
        customer = values.iloc[row]
        raise ValueError(
            f"customer {customer['customer_id']} (frequency {customer['frequency']}, recency "
            f"{customer['recency']}, T {customer['T']}, monetary_value "
            f"{customer['monetary_value']}): {VALUE_COLUMNS[column]} = {numbers[row, column]}; "
            "no table is written with such a value (see cltv_model_fit.json)"
        )


def predict_customer_value(
    summary_current: DataFrame,
    fit: dict[str, Any],
    naive: dict[str, Any],
    valuation: dict[str, Any],
    analysis_period: dict[str, Any],
) -> DataFrame:
    """``customer_cltv``: P(alive), expected purchases, order value, discounted CLV over
    ``horizon_months``, the naive CLV, and value tiers, for every customer at observation_end.

    Tiers (``valuation.value_tiers``, largest CLV first): a customer ranked within the top
    ``share`` of customers gets the first tier whose share covers their rank; else ``rest``.
    """
    month = MONTH_IN_UNITS[fit["time_unit"]]
    values = summary_current.select(
        "customer_id", "frequency", "recency", "T", "monetary_value"
    ).mapInPandas(
        lambda batches: _customer_values(batches, fit, naive, valuation, month),
        schema=CLTV_COLUMNS,
    )
    n_customers = summary_current.count()
    rank = F.row_number().over(Window.orderBy(F.desc("clv"), "customer_id"))
    tier = F.lit("rest")
    for rule in sorted(valuation["value_tiers"], key=lambda r: -r["share"]):
        tier = F.when(
            F.col("clv_rank") <= math.ceil(rule["share"] * n_customers), rule["name"]
        ).otherwise(tier)
    return (
        values.withColumn("clv_rank", rank)
        .withColumn("value_tier", tier)
        .withColumn("horizon_months", F.lit(valuation["horizon_months"]))
        .withColumn("scored_at", F.lit(analysis_period["observation_end"]).cast("date"))
    )


# ------------------------------------------------------------------ validation
def _holdout_predictions(
    batches: Iterator[pd.DataFrame], fit: dict[str, Any], horizon: float
) -> Iterator[pd.DataFrame]:
    purchases = BetaGeoModel.from_params(fit["bgnbd"])
    for batch in batches:
        x, t_x, big_t = (batch[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        yield pd.DataFrame(
            {
                "frequency": batch["frequency"],
                "actual": batch["frequency_holdout"].astype(float),
                "bgnbd": purchases.predict_purchases(horizon, x, t_x, big_t),
                "naive": _naive_rate(x, big_t) * horizon,
            }
        )


def validate_on_holdout(
    summary: DataFrame, calibration_fit: dict[str, Any], analysis_period: dict[str, Any]
) -> dict[str, Any]:
    """Purchases predicted for the holdout window from the calibration fit, against actuals.

    Per customer: BG/NBD's conditional expectation and the naive extrapolation
    (repeat purchases so far / T x holdout length). MAE, RMSE and totals over all customers;
    the calibration table averages them by calibration frequency (0 … 6, 7+).
    """
    horizon = analysis_period["holdout_days"] / days_per_unit(calibration_fit["time_unit"])
    predictions = summary.select("frequency", "recency", "T", "frequency_holdout").mapInPandas(
        lambda batches: _holdout_predictions(batches, calibration_fit, horizon),
        schema="frequency long, actual double, bgnbd double, naive double",
    )
    error = {m: F.col(m) - F.col("actual") for m in ("bgnbd", "naive")}
    row = predictions.agg(
        F.count(F.lit(1)).alias("n_customers"),
        F.sum("actual").alias("total_actual"),
        *[F.sum(m).alias(f"total_{m}") for m in error],
        *[F.avg(F.abs(e)).alias(f"mae_{m}") for m, e in error.items()],
        *[F.sqrt(F.avg(e * e)).alias(f"rmse_{m}") for m, e in error.items()],
    ).first()
    bucket = F.least(F.col("frequency"), F.lit(FREQUENCY_BUCKETS))
    table = (
        predictions.groupBy(bucket.alias("bucket"))
        .agg(
            F.count(F.lit(1)).alias("n_customers"),
            F.avg("actual").alias("actual"),
            F.avg("bgnbd").alias("bgnbd"),
            F.avg("naive").alias("naive"),
        )
        .orderBy("bucket")
        .collect()
    )
    validation = {
        **row.asDict(),
        "holdout_days": analysis_period["holdout_days"],
        "calibration_end": analysis_period["calibration_end"],
        "time_unit": calibration_fit["time_unit"],
        "by_calibration_frequency": [
            {
                "frequency": str(r["bucket"]) + ("+" if r["bucket"] == FREQUENCY_BUCKETS else ""),
                "n_customers": r["n_customers"],
                "actual": r["actual"],
                "bgnbd": r["bgnbd"],
                "naive": r["naive"],
            }
            for r in table
        ],
    }
    logger.info(
        "Holdout (%d days): MAE BG/NBD %.4f vs naive %.4f; total purchases %.0f actual, "
        "%.0f BG/NBD, %.0f naive",
        analysis_period["holdout_days"],
        validation["mae_bgnbd"],
        validation["mae_naive"],
        validation["total_actual"],
        validation["total_bgnbd"],
        validation["total_naive"],
    )
    return validation


def cltv_mlflow_metrics(
    model_fit: dict[str, Any], validation: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Parameters, standard errors, log-likelihood, the frequency-spend correlation and the
    holdout accuracy as MLflow metrics (``cltv.*``)."""
    return metrics.as_mlflow_metrics(
        {
            "bgnbd": model_fit["bgnbd"],
            "gamma_gamma": model_fit["gamma_gamma"],
            "validation": {k: v for k, v in validation.items() if k != "by_calibration_frequency"},
        }
    )


def plot_cltv_validation(validation: dict[str, Any]) -> dict[str, Figure]:
    """Holdout purchases by calibration frequency, and in total: actual, BG/NBD, naive."""
    table = validation["by_calibration_frequency"]
    labels = [row["frequency"] for row in table]
    by_frequency = Figure(figsize=(7, 4.5), layout="constrained")
    axes = by_frequency.subplots()
    positions = np.arange(len(labels))
    for offset, (key, label) in zip(
        (-0.27, 0.0, 0.27),
        (("actual", "actual"), ("bgnbd", "BG/NBD"), ("naive", "naive")),
        strict=True,
    ):
        axes.bar(positions + offset, [row[key] for row in table], width=0.27, label=label)
    axes.set_xticks(positions, labels)
    axes.set(
        xlabel="Repeat purchases in the calibration period",
        ylabel="Mean purchases per customer in the holdout",
        title=f"Holdout ({validation['holdout_days']} days): predicted vs actual",
    )
    axes.legend()

    totals = Figure(figsize=(5, 4), layout="constrained")
    axes = totals.subplots()
    names = ["actual", "BG/NBD", "naive"]
    values = [validation[k] for k in ("total_actual", "total_bgnbd", "total_naive")]
    axes.bar(names, values, color=["grey", "tab:orange", "tab:green"])
    axes.set(ylabel="Purchases in the holdout, all customers", title="Holdout totals")
    return {"holdout_by_frequency.png": by_frequency, "holdout_totals.png": totals}
