"""Nodes of ``cltv``: BG/NBD + Gamma-Gamma customer value, a naive baseline, holdout validation.

The models are fitted on the driver from the distinct (frequency, recency, T) and
(frequency, monetary_value) rows with their counts, aggregated in Spark; predictions run in
Spark over all customers (``mapInPandas``). Nothing per customer comes to the driver: the
holdout's scores and calibration table are one aggregate over the customers' predictions, and
the rankings (the holdout's and the promotion's) one query (:func:`cltv.metrics.value_rankings`).
At 50M lines (2.66M customers) the holdout check's collect of one row per customer took the
driver's Python to 2.85 GB.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import LongType
from pyspark.storagelevel import StorageLevel

from cltv import metrics
from cltv import promotion as promotion_in_registry
from cltv.datasets.mlflow_cltv_model_dataset import load_value_model
from cltv.models import (
    ConvergenceError,
    GammaGammaModel,
)
from cltv.models.uncertainty import central_interval, randomised_coverage
from cltv.models.value_model import (
    INPUT_COLUMNS,
    PURCHASE_MODELS,
    VALUED_CUSTOMERS_SCHEMA,
    CustomerValueModel,
    naive_rate,
    purchase_model,
)
from cltv.parameters import BTYD_CHURN_FEATURES, SELECTION_RULES
from cltv.pipelines.data_processing.nodes import days_per_unit

logger = logging.getLogger(__name__)

MODEL_LABELS = {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD", "pnbd": "Pareto/NBD", "naive": "naive"}
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
    summary: DataFrame,
    cltv: dict[str, Any],
    time_unit: str,
    purchase_models: list[str] | None = None,
) -> dict[str, Any]:
    """Each purchase model (``cltv.candidates`` unless ``purchase_models`` says which) on every
    customer and Gamma-Gamma on repeat customers, with fit diagnostics.

    Each model's parameters (``penalizer``) are under its name in ``cltv``. A fit whose optimum
    is on a boundary (e.g. no dropout detectable) is reported with a warning, and its JSON
    carries ``boundary`` and ``note``.
    """
    names = list(purchase_models or cltv["candidates"])
    histories = summary.groupBy("frequency", "recency", "T").count().toPandas()
    fits: dict[str, Any] = {}
    for name in names:
        purchases = _fit(
            PURCHASE_MODELS[name](cltv[name]["penalizer"]),
            f"cltv.{name}.penalizer",
            histories["frequency"],
            histories["recency"],
            histories["T"],
            histories["count"],
        )
        _report_boundary(MODEL_LABELS[name], purchases)
        fits[name] = purchases.summary()
        logger.info(
            "%s %s (log-likelihood %.1f, %d customers)",
            MODEL_LABELS[name],
            {k: None if v is None else round(v, 4) for k, v in purchases.params_.items()},
            purchases.log_likelihood_,
            purchases.n_customers_,
        )
    repeat = summary.filter((F.col("frequency") > 0) & (F.col("monetary_value") > 0))
    spends = repeat.groupBy("frequency", "monetary_value").count().toPandas()
    correlation = weighted_correlation(
        spends["frequency"], spends["monetary_value"], spends["count"]
    )
    spend = _fit(
        GammaGammaModel(cltv["gamma_gamma"]["penalizer"]),
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
        "Gamma-Gamma %s (%d repeat customers, frequency-spend correlation %s)",
        {k: round(v, 4) for k, v in spend.params_.items()},
        spend.n_customers_,
        "n/a" if correlation is None else f"{correlation:.3f}",
    )
    return {
        "time_unit": time_unit,
        "candidates": names,
        **fits,
        "gamma_gamma": {**spend.summary(), "frequency_monetary_correlation": correlation},
    }


def weighted_correlation(x: pd.Series, y: pd.Series, weights: pd.Series) -> float | None:
    """Pearson's correlation of ``x`` and ``y`` over rows counted ``weights`` times (distinct
    rows with their counts), as Spark's ``corr`` gives it over one row per count: None for
    fewer than two, NaN when either does not vary."""
    w, x, y = (np.asarray(column, dtype=float) for column in (weights, x, y))
    n = w.sum()
    if n < 2:
        return None
    dx, dy = x - (w @ x) / n, y - (w @ y) / n
    spread = math.sqrt((w @ (dx * dx)) * (w @ (dy * dy)))
    return float((w @ (dx * dy)) / spread) if spread > 0 else math.nan


def fit_chosen_model(
    summary_current: DataFrame,
    cltv: dict[str, Any],
    time_unit: str,
    validation: dict[str, Any],
) -> dict[str, Any]:
    """The fit that values customers: the purchase model chosen on the holdout, refitted on
    everything up to observation_end (and BG/NBD beside it, whose parameters the SPEC's
    ``cltv_model_params.json`` always holds), with Gamma-Gamma."""
    chosen = validation["selection"]["chosen"]
    names = list(dict.fromkeys(["bgnbd", chosen]))
    fit = fit_cltv_models(summary_current, cltv, time_unit, purchase_models=names)
    return {**fit, "purchase_model": chosen}


def model_parameters(fit: dict[str, Any]) -> dict[str, Any]:
    """``cltv_model_params.json`` as the SPEC defines it, plus ``purchase_model``: which model
    values the customers (its parameters too when it is not BG/NBD)."""
    bgnbd, gamma_gamma = fit["bgnbd"], fit["gamma_gamma"]
    chosen = fit.get("purchase_model", "bgnbd")
    parameters = {
        "time_unit": fit["time_unit"],
        "purchase_model": chosen,
        "bgnbd": {
            key: bgnbd[key] for key in ("r", "alpha", "a", "b", "log_likelihood", "n_customers")
        },
        "gamma_gamma": {key: gamma_gamma[key] for key in ("p", "q", "gamma", "n_customers")},
    }
    if chosen != "bgnbd":
        model = fit[chosen]
        names = (*PURCHASE_MODELS[chosen].param_names, "log_likelihood", "n_customers")
        parameters[chosen] = {key: model[key] for key in names}
    return parameters


# ------------------------------------------------------------------ naive baseline
def naive_baseline(summary: DataFrame, analysis_period: dict[str, Any]) -> dict[str, Any]:
    """The seed's formula needs a churn rate and a fallback order value; both from data.

    Monthly churn rate: the share of customers with no purchase in the holdout, as a rate per
    30 days; expected lifespan = 1 / rate (months). One-time buyers have no repeat order
    value, so they get the repeat customers' mean.

    ``summary``: the calibration period's customers (``frequency``, ``monetary_value``,
    ``churned``). :func:`validate_on_holdout` computes the same from its own aggregate.
    """
    repeat = F.col("frequency") > 0
    counted = summary.agg(
        F.count(F.lit(1)).alias("n"),
        F.count(F.when(F.col("churned") == 1, 1)).alias("n_churned"),
        F.count(F.when(repeat, 1)).alias("n_repeat"),
        F.sum(F.when(repeat, F.col("monetary_value"))).alias("sum_repeat_order_value"),
    ).first()
    return _naive_baseline_from(
        _per(counted["n_churned"], counted["n"]),
        _per(counted["sum_repeat_order_value"], counted["n_repeat"]),
        analysis_period,
    )


def _naive_baseline_from(
    churned_share: float, mean_repeat_order_value: float | None, analysis_period: dict[str, Any]
) -> dict[str, Any]:
    monthly = 1.0 - (1.0 - churned_share) ** (30.0 / analysis_period["holdout_days"])
    return {
        "holdout_churned_share": churned_share,
        "monthly_churn_rate": monthly,
        "expected_lifespan_months": None if monthly == 0 else 1.0 / monthly,  # None: forever
        "mean_repeat_order_value": mean_repeat_order_value or 0.0,
    }


# ------------------------------------------------------------------ prediction
def cltv_value_model(
    fit: dict[str, Any],
    naive: dict[str, Any],
    valuation: dict[str, Any],
    uncertainty: dict[str, Any],
) -> CustomerValueModel:
    """The CLV model that values customers: the fit up to observation_end, the naive
    baseline and the valuation and interval settings, as one MLflow pyfunc model (logged and
    registered by the ``cltv_value_model`` catalog entry)."""
    return CustomerValueModel(fit, naive, valuation, uncertainty)


def customer_values(
    summary: pd.DataFrame,
    fit: dict[str, Any],
    naive: dict[str, Any],
    valuation: dict[str, Any],
    uncertainty: dict[str, Any],
) -> pd.DataFrame:
    """:func:`predict_customer_value`'s per-customer values and intervals for a summary that is
    already a pandas frame (a notebook's sample, a study over many generated data sets),
    without tiers and the total."""
    model = CustomerValueModel(fit, naive, valuation, uncertainty)
    return pd.concat(model.value_batches(iter([summary])), ignore_index=True).drop(
        columns="clv_draw_sums"
    )


def predict_customer_value(
    summary_current: DataFrame,
    value_model: CustomerValueModel,
    value_tiers: list[dict[str, Any]],
    analysis_period: dict[str, Any],
) -> tuple[DataFrame, dict[str, Any]]:
    """``customer_cltv``: P(alive), expected purchases, order value, discounted CLV over
    ``horizon_months``, each with its central ``uncertainty.interval`` interval over the
    parameters' uncertainty; the naive CLV; value tiers, for every customer at
    observation_end. And the total CLV with its interval (``cltv_total_value``).

    ``value_model`` is this run's CLV model (training) or the registry's champion (scoring):
    its own code values each batch of customers in Spark, the code its MLflow ``predict``
    runs.

    Intervals: ``uncertainty.draws`` seeded draws of the chosen purchase model's parameters
    and of Gamma-Gamma's, from each fit's covariance (:func:`parameter_draws`). Gamma-Gamma's
    order value is evaluated at every draw; the purchase model's predictions at every draw to
    first order in the log-parameters (:class:`LinearisedDraws`: 1 + k evaluations instead of
    one per draw), and the CLV of a draw is their product. A boundary fit holds its
    unidentified parameters, so their part of the interval is empty, not NaN.

    Tiers (``value_tiers``, largest CLV first): a customer ranked within the top ``share`` of
    customers gets the first tier whose share covers their rank; else ``rest``.
    """
    values = (
        summary_current.select("customer_id", *INPUT_COLUMNS)
        .mapInPandas(value_model.value_batches, schema=VALUED_CUSTOMERS_SCHEMA)
        .persist()
    )
    # one pass: how many customers (value_batches keeps every one), the total CLV and each
    # batch's CLV at every draw
    counted = values.agg(
        F.count(F.lit(1)).alias("n_customers"),
        F.sum("clv").alias("clv"),
        F.collect_list("clv_draw_sums").alias("draw_sums"),
    ).first()
    n_customers, sums = counted["n_customers"], counted["draw_sums"]
    # one total per draw, summed over batches (none without customers)
    totals = np.sum(sums, axis=0) if sums else np.zeros(0)
    rank = F.row_number().over(Window.orderBy(F.desc("clv"), "customer_id"))
    tier = F.lit("rest")
    for rule in sorted(value_tiers, key=lambda r: -r["share"]):
        tier = F.when(
            F.col("clv_rank") <= math.ceil(rule["share"] * n_customers), rule["name"]
        ).otherwise(tier)
    customers = (
        values.drop("clv_draw_sums")
        .withColumn("clv_rank", rank)
        .withColumn("value_tier", tier)
        .withColumn("horizon_months", F.lit(value_model.valuation["horizon_months"]))
        .withColumn("scored_at", F.lit(analysis_period["observation_end"]).cast("date"))
    )
    return customers, _total_value(counted["clv"] or 0.0, totals, value_model)


def _total_value(clv: float, totals, value_model: CustomerValueModel) -> dict[str, Any]:
    """All customers' CLV, with the central interval of its sum over the draws."""
    valuation, uncertainty = value_model.valuation, value_model.uncertainty
    level = uncertainty["interval"]
    lower, upper = central_interval(totals, level) if len(totals) else (0.0, 0.0)
    total = {
        "clv": clv,
        "clv_lower": min(float(lower), clv),
        "clv_upper": max(float(upper), clv),
        "interval": level,
        "draws": uncertainty["draws"],
        "seed": uncertainty["seed"],
        "horizon_months": valuation["horizon_months"],
        "purchase_model": value_model.purchase_model_name,
        "method": (
            "parameter draws from each fit's covariance; Gamma-Gamma at every draw, the "
            "purchase model to first order in its log-parameters"
        ),
    }
    logger.info(
        "Total CLV over %d months: %.0f (%.0f%% interval %.0f – %.0f, %d parameter draws)",
        valuation["horizon_months"],
        clv,
        100 * level,
        total["clv_lower"],
        total["clv_upper"],
        uncertainty["draws"],
    )
    return total


# ------------------------------------------------------------------ champion / challenger
def _holdout_ranking(value_model: CustomerValueModel, summary: DataFrame) -> dict[str, Any]:
    """How well the model's CLV, and the naive baseline's, computed from the calibration
    period's customers (``summary``), rank them by the revenue they spent in the holdout
    (:func:`cltv.metrics.value_rankings`, keyed as :data:`cltv.parameters.PROMOTION_METRICS`):
    one Spark query, the customers valued in Spark.

    Fair only for a model fitted on the calibration period (:func:`_on_calibration`): one
    fitted up to observation_end has seen the holdout it is ranked on. The naive baseline
    reads the calibration histories alone; its lifespan (from the holdout's churn share) is one
    factor for every customer, so it cannot move a ranking."""
    scored = summary.select(
        *INPUT_COLUMNS,
        (F.col("frequency_holdout") * F.col("monetary_value_holdout")).alias("holdout_revenue"),
    ).mapInPandas(
        lambda batches: (
            batch[["clv", "naive_clv", "holdout_revenue"]]
            for batch in value_model.score_batches(batches)
        ),
        schema="clv double, naive_clv double, holdout_revenue double",
    )
    rankings, n_customers = metrics.value_rankings(
        scored, {"model": "clv", "naive": "naive_clv"}, "holdout_revenue"
    )
    return {
        **{
            name: {f"holdout_revenue_{key}": value for key, value in ranking.items()}
            for name, ranking in rankings.items()
        },
        "n_customers": n_customers,
    }


def _recipe(fit: dict[str, Any]) -> dict[str, Any]:
    """How a CLV model's fit was made, not what it found: the purchase model and each
    model's penalizer. With the model's settings, what a refit on other data repeats."""
    name = fit.get("purchase_model", "bgnbd")
    return {
        "purchase_model": name,
        "penalizer": fit[name]["penalizer"],
        "gamma_gamma_penalizer": fit["gamma_gamma"]["penalizer"],
    }


def _found(fit: dict[str, Any]) -> dict[str, Any]:
    """What a CLV model's fit found: the parameters of its purchase model and Gamma-Gamma."""
    name = fit.get("purchase_model", "bgnbd")
    return {
        model: {key: fit[model][key] for key in names}
        for model, names in (
            (name, PURCHASE_MODELS[name].param_names),
            ("gamma_gamma", ("p", "q", "gamma")),
        )
    }


def _recipe_text(recipe: dict[str, Any]) -> str:
    return (
        f"{MODEL_LABELS[recipe['purchase_model']]} penalizer {recipe['penalizer']}, "
        f"Gamma-Gamma penalizer {recipe['gamma_gamma_penalizer']}"
    )


def _periods(analysis_period: dict[str, Any]) -> tuple[str, str]:
    """This run's calibration period and holdout, as the decision shows them."""
    calibration_end = date.fromisoformat(analysis_period["calibration_end"])
    return (
        f"{analysis_period['first_transaction_date']} to {calibration_end}",
        f"{calibration_end + timedelta(days=1)} to {analysis_period['observation_end']}",
    )


def _on_calibration(
    value_model: CustomerValueModel,
    summary: DataFrame,
    calibration_fit: dict[str, Any],
    calibration: str,
) -> tuple[CustomerValueModel, dict[str, Any]]:
    """``value_model``'s recipe fitted on this run's calibration period (``summary``), with its
    settings, to be ranked on the holdout it has not seen; and how, for the decision.

    This run's calibration fit holds every candidate at this run's penalizers, so a recipe it
    holds is taken from it (the challenger's always is); any other is refitted with
    :func:`fit_cltv_models`, on the driver from the distinct histories."""
    recipe = _recipe(value_model.fit)
    name = recipe["purchase_model"]
    held = calibration_fit.get(name)
    if held and _recipe({**calibration_fit, "purchase_model": name}) == recipe:
        fit, source = calibration_fit, "this run's calibration fit (cltv_calibration_fit)"
    else:
        cltv = {
            name: {"penalizer": recipe["penalizer"]},
            "gamma_gamma": {"penalizer": recipe["gamma_gamma_penalizer"]},
        }
        fit = fit_cltv_models(summary, cltv, calibration_fit["time_unit"], purchase_models=[name])
        source = "refitted for this decision"
    refit = CustomerValueModel(
        {**fit, "purchase_model": name},
        value_model.naive,
        value_model.valuation,
        value_model.uncertainty,
    )
    scored_with = {
        "recipe": recipe,
        "fit": f"refit on this run's calibration period, {calibration}",
        "source": source,
        "n_customers": fit[name]["n_customers"],
    }
    return refit, scored_with


def promote_cltv_model(
    value_model: CustomerValueModel,
    summary: DataFrame,
    calibration_fit: dict[str, Any],
    analysis_period: dict[str, Any],
    promotion: dict[str, Any],
) -> tuple[dict[str, Any], CustomerValueModel, dict[str, Any]]:
    """The run's CLV model (the challenger, the version of ``promotion.registered_model`` this
    run registered) against the version behind ``promotion.alias`` (the champion), both
    valuing the calibration period's customers and scored by ``promotion.metric``: how much of
    the holdout's revenue the customers they rank highest spent (default: the top 20%).

    Neither is ranked on data it was fitted on: the challenger was fitted up to
    observation_end, so it has seen the holdout, and the champion saw whatever its own run
    had. So each side's recipe (purchase model and penalizers, :func:`_recipe`) is fitted on
    this run's calibration period and valued with its settings (:func:`_on_calibration`), and
    those fits are ranked. A champion with the challenger's recipe and settings would be the
    same fit: a tie by construction, neither refitted nor ranked twice.

    Settings are part of the model (:meth:`CustomerValueModel.settings`): a challenger valued
    with other settings (a new margin, horizon, interval or time unit) takes the alias as a
    change of settings, without a score against the champion. The naive baseline is scored
    the same way; when it ranks better, the decision says so, and a difference below
    ``min_gain`` is a tie.

    Returns the decision (the ``cltv_value`` entry of ``model_promotion.json``) and the
    champion after the decision with its fit: what values the customers in ``customer_cltv``,
    so that the table always holds the champion's numbers. The alias moves only once the
    table is written (:func:`settle_cltv_promotion`).
    """
    name, version = promotion_in_registry.registered_in_this_run(promotion["registered_model"])
    alias, metric, min_gain = promotion["alias"], promotion["metric"], promotion["min_gain"]
    calibration, holdout = _periods(analysis_period)
    challenger_refit, challenger_scored_with = _on_calibration(
        value_model, summary, calibration_fit, calibration
    )
    challenger = _holdout_ranking(challenger_refit, summary)
    no_score = "no customer of the calibration period bought in the holdout"
    champion, champion_model, same_recipe = None, None, False
    found = promotion_in_registry.load_champion(name, alias, load_value_model)
    if found:
        champion_version, champion_model = found
        champion = {
            "version": int(champion_version.version),
            "purchase_model": champion_model.purchase_model_name,
            "settings": champion_model.settings(),
            # it values the customers when it keeps the alias: the dashboard says what its
            # fit could not do
            "fit_notes": boundary_notes(champion_model.fit),
        }
        if not promotion_in_registry.setting_changes(champion["settings"], value_model.settings()):
            # scored only when the settings agree: a model valued in other units or with
            # another horizon would be scored on histories it was not made for
            same_recipe = _recipe(champion_model.fit) == challenger_scored_with["recipe"]
            if same_recipe:
                champion["score"] = challenger["model"][metric]
                champion["scored_with"] = {
                    **challenger_scored_with,
                    "source": "the challenger's refit: the same recipe and settings",
                }
            else:
                champion_refit, champion["scored_with"] = _on_calibration(
                    champion_model, summary, calibration_fit, calibration
                )
                champion["score"] = _holdout_ranking(champion_refit, summary)["model"][metric]
    score, naive = challenger["model"][metric], challenger["naive"][metric]
    decision = promotion_in_registry.challenge(
        name,
        version,
        promotion,
        {
            "score": score,
            "purchase_model": value_model.purchase_model_name,
            "settings": value_model.settings(),
            "scored_with": challenger_scored_with,
            **({"no_score": no_score} if score is None else {}),
        },
        champion,
    )
    if same_recipe and decision["outcome"] == "tie":
        same_model = (
            "; the champion has the challenger's recipe "
            f"({_recipe_text(challenger_scored_with['recipe'])}) and settings, so refitted on "
            "this run's calibration period they are the same model"
        )
        if _found(champion_model.fit) == _found(value_model.fit):
            decision["reason"] += same_model + ": a tie by construction"
        else:
            # no score can prefer either; the challenger's fit is on this run's data, so a
            # weekly run on new data refreshes the parameters that value customers
            decision.update(
                promoted=True,
                outcome="refreshed",
                reason=f"refreshed: {decision['reason']}{same_model}, and no score can prefer "
                "either; fitted on this run's data (up to "
                f"{analysis_period['observation_end']}, "
                f"{value_model.fit[value_model.purchase_model_name]['n_customers']} customers) "
                "rather than the champion's run's "
                f"({champion_model.fit[champion_model.purchase_model_name]['n_customers']} "
                "customers), the challenger takes the alias",
            )
    outcome, _ = promotion_in_registry.compare_scores(naive, score, min_gain)
    decision.update(
        n_customers=challenger["n_customers"],
        scoring=(
            "each side's recipe (purchase model, penalizers) and settings refit on this run's "
            f"calibration period, {calibration}, and ranked on its holdout, {holdout}: neither "
            "model is scored on data it was fitted on"
        ),
        naive_baseline={"score": naive, "beats_challenger": outcome == "better"},
    )
    if outcome == "better":
        decision["reason"] += (
            f"; the naive baseline ranks better ({metric} {naive:.4f} vs {score:.4f}): "
            "this model is registered, but a simple extrapolation values customers better here"
        )
    elif outcome == "tie":
        decision["reason"] += (
            f"; the naive baseline ranks as well (a tie: {metric} {naive:.4f} vs {score:.4f}, "
            f"a difference below {min_gain})"
        )
    # the alias moves once customer_cltv is written (settle_cltv_promotion)
    production = value_model if decision["promoted"] else champion_model
    return decision, production, production.fit


def settle_cltv_promotion(
    decision: dict[str, Any], cltv_total_value: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Move the alias when ``decision`` promotes, now that ``customer_cltv`` holds the
    champion's numbers (``cltv_total_value`` is saved after it), so a write that fails leaves
    the registry as it was. Returns the decision's scores, and the naive baseline's, as MLflow
    metrics."""
    promotion_in_registry.settle(decision, "CLV model")
    scores = promotion_in_registry.decision_scores(decision)
    naive = (decision.get("naive_baseline") or {}).get("score")
    return metrics.as_mlflow_metrics({**scores, **({"naive": naive} if naive is not None else {})})


# ------------------------------------------------------------------ churn
# + a purchase model's name: its probability of no purchase in the holdout
NO_PURCHASE_PREFIX = "p_no_purchase_"


def _churn_scores(
    batches: Iterator[pd.DataFrame], fit: dict[str, Any], names: list[str], horizon: float
) -> Iterator[pd.DataFrame]:
    models = {name: purchase_model(fit, name) for name in names}
    features_model = models["bgnbd"]
    for batch in batches:
        x, t_x, big_t = (batch[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        yield pd.DataFrame(
            {
                "customer_id": batch["customer_id"],
                "btyd_p_alive": features_model.predict_probability_alive(x, t_x, big_t),
                "btyd_expected_purchases": features_model.predict_purchases(horizon, x, t_x, big_t),
                **{
                    NO_PURCHASE_PREFIX + name: model.predict_no_purchase(horizon, x, t_x, big_t)
                    for name, model in models.items()
                },
            }
        )


def btyd_churn_scores(
    summary: DataFrame, fit: dict[str, Any], analysis_period: dict[str, Any]
) -> DataFrame:
    """What the purchase models fitted on a period say about each customer's next
    ``holdout_days``, from that period's history alone: BG/NBD's P(alive) and expected
    purchases (``BTYD_CHURN_FEATURES``, offered to the churn model as features) and every
    fitted model's probability of no purchase (``p_no_purchase_<model>``, the models' own
    churn prediction, compared with the classifier's in ``churn_metrics.json``).

    The calibration fit and summary give the training rows (no holdout data, so no leakage);
    the fit up to observation_end and the current summary give the rows that are scored.
    BG/NBD is fitted in both, whichever model values customers, so the features always mean
    the same thing."""
    names = [name for name in PURCHASE_MODELS if fit.get(name)]
    horizon = analysis_period["holdout_days"] / days_per_unit(fit["time_unit"])
    schema = ", ".join(
        [
            "customer_id string",
            *(f"{column} double" for column in BTYD_CHURN_FEATURES),
            *(f"{NO_PURCHASE_PREFIX}{name} double" for name in names),
        ]
    )
    return summary.select("customer_id", "frequency", "recency", "T").mapInPandas(
        lambda batches: _churn_scores(batches, fit, names, horizon), schema=schema
    )


# ------------------------------------------------------------------ validation
def _holdout_predictions(
    batches: Iterator[pd.DataFrame], fit: dict[str, Any], horizon: float, level: float
) -> Iterator[pd.DataFrame]:
    models = {name: purchase_model(fit, name) for name in candidate_names(fit)}
    spend = GammaGammaModel.from_params(fit["gamma_gamma"])
    for batch in batches:
        x, t_x, big_t, m, actual = (
            batch[c].to_numpy(float)
            for c in ("frequency", "recency", "T", "monetary_value", "frequency_holdout")
        )
        order_value = spend.predict_average_order_value(x, m)
        purchases = {
            name: model.predict_purchases(horizon, x, t_x, big_t) for name, model in models.items()
        }
        coverage = {
            f"coverage_{name}": randomised_coverage(
                model.predict_purchase_count_cdf(actual - 1, horizon, x, t_x, big_t),
                model.predict_purchase_count_cdf(actual, horizon, x, t_x, big_t),
                level,
            )
            for name, model in models.items()
        }
        naive = naive_rate(x, big_t) * horizon
        yield pd.DataFrame(
            {
                "frequency": batch["frequency"],
                "actual": batch["frequency_holdout"].astype(float),
                **purchases,
                "naive": naive,
                "order_value": order_value,
                "own_order_value": m,
                "holdout_order_value": batch["monetary_value_holdout"],
                "holdout_revenue": batch["frequency_holdout"] * batch["monetary_value_holdout"],
                # predicted holdout value: expected purchases x expected order value; naive:
                # the extrapolated count x the customer's own mean (0 for one-time buyers)
                **{f"value_{name}": count * order_value for name, count in purchases.items()},
                "value_naive": naive * m,
                **coverage,
            }
        )


def candidate_names(fit: dict[str, Any]) -> list[str]:
    """The purchase models a fit or a validation holds (BG/NBD alone before there was a
    choice)."""
    return list(fit.get("candidates", ["bgnbd"]))


def boundary_notes(fit: dict[str, Any]) -> list[str]:
    """The notes of any boundary optimum of the models in ``fit`` that value customers (its
    purchase model and Gamma-Gamma); empty when both are inside their bounds."""
    valuing = (fit.get("purchase_model", "bgnbd"), "gamma_gamma")
    return [fit[name]["note"] for name in valuing if fit.get(name, {}).get("note")]


def validate_on_holdout(
    summary: DataFrame,
    calibration_fit: dict[str, Any],
    analysis_period: dict[str, Any],
    model_selection: str,
    uncertainty: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Purchases predicted for the holdout window from the calibration fit, against actuals,
    for every candidate purchase model and the naive baseline, and the model chosen to value
    customers; and the naive baseline's churn rate and order value from the same customers
    (:func:`naive_baseline`).

    Predictive coverage (``coverage_<model>``): the share of customers whose actual holdout
    count lies in their central ``uncertainty.interval`` predictive interval, from each
    model's count distribution given the customer's history, with the randomised PIT (exact
    in expectation for a correct model; see :func:`cltv.models.uncertainty.randomised_coverage`).

    Per customer: each model's conditional expectation and the naive extrapolation (repeat
    purchases so far / T x holdout length). MAE, RMSE and totals over all customers; the
    calibration table averages them by calibration frequency (0 … 6, 7+).

    ``model_selection`` is ``lowest_mae`` (default), ``lowest_rmse`` or a candidate's name. The
    ``selection`` section also says which candidates are within the noise of the chosen one:
    the per-customer differences of absolute errors have a mean within two standard errors of
    0. When the naive baseline predicts better than every model, ``verdict`` says so.
    """
    candidates = candidate_names(calibration_fit)
    horizon = analysis_period["holdout_days"] / days_per_unit(calibration_fit["time_unit"])
    schema = ", ".join(
        [
            "frequency long",
            "actual double",
            *[f"{n} double" for n in candidates],
            "naive double",
            "order_value double",
            "own_order_value double",
            "holdout_order_value double",
            "holdout_revenue double",
            *[f"value_{n} double" for n in candidates],
            "value_naive double",
            *[f"coverage_{n} double" for n in candidates],
        ]
    )
    level = uncertainty["interval"]
    models = [*candidates, "naive"]
    # one row per customer, computed in Spark and persisted for the two queries that read it:
    # the scores and calibration table (one aggregate), and the rankings
    predictions = (
        summary.select(
            "frequency",
            "recency",
            "T",
            "monetary_value",
            "frequency_holdout",
            "monetary_value_holdout",
        )
        .mapInPandas(
            lambda batches: _holdout_predictions(batches, calibration_fit, horizon, level),
            schema=schema,
        )
        .persist(StorageLevel.DISK_ONLY)
    )
    try:
        totals, table = _holdout_aggregates(predictions, candidates)
        rankings, _ = metrics.value_rankings(
            predictions, {m: f"value_{m}" for m in models}, "holdout_revenue"
        )
    finally:
        predictions.unpersist()
    n = totals["n"]
    scores = {
        "n_customers": n,
        "total_actual": totals["sum_actual"],
        **{f"total_{m}": totals[f"sum_{m}"] for m in models},
        **{f"mae_{m}": _per(totals[f"sum_abs_error_{m}"], n) for m in models},
        **{f"rmse_{m}": _root(_per(totals[f"sum_squared_error_{m}"], n)) for m in models},
        **{f"coverage_{m}": _per(totals[f"sum_coverage_{m}"], n) for m in candidates},
        # spend: customers with an own repeat mean who bought in the holdout
        "spend_n_customers": totals["spend_n"],
        "spend_mae_gamma_gamma": _per(totals["spend_sum_abs_error_gamma_gamma"], totals["spend_n"]),
        "spend_mae_naive": _per(totals["spend_sum_abs_error_naive"], totals["spend_n"]),
    }
    chosen = _choose(model_selection, candidates, scores)
    # paired differences of absolute errors against the chosen model: is a model's gap to
    # the chosen one noise or real?
    standard_errors = {
        m: _gap_deviation(totals, models, m, chosen) / math.sqrt(n) for m in models if m != chosen
    }
    within_noise = [
        m
        for m in candidates
        if m != chosen and scores[f"mae_{m}"] - scores[f"mae_{chosen}"] <= 2 * standard_errors[m]
    ]
    # ranking: who holds the holdout revenue, by each model's predicted holdout value
    scores.update({f"{key}_{m}": value for m in models for key, value in rankings[m].items()})
    best_model = min(candidates, key=lambda m: scores[f"mae_{m}"])
    naive_wins_on = _naive_wins_on(scores, candidates, chosen)
    validation = {
        **scores,
        "holdout_days": analysis_period["holdout_days"],
        "calibration_end": analysis_period["calibration_end"],
        "time_unit": calibration_fit["time_unit"],
        "candidates": candidates,
        "predictive_interval": {
            "level": level,
            "method": "randomised PIT of the holdout count, expected over the randomisation",
        },
        "selection": {
            "rule": model_selection,
            "chosen": chosen,
            "within_noise_of_chosen": within_noise,
            "mae_difference_standard_errors": standard_errors,
            "naive_beats_every_model": "purchases" in naive_wins_on,
            "naive_wins_on": naive_wins_on,
        },
        "verdict": _verdict(scores, chosen, best_model, naive_wins_on),
        "by_calibration_frequency": [
            {
                "frequency": str(bucket) + ("+" if bucket == FREQUENCY_BUCKETS else ""),
                "n_customers": row["n"],
                "actual": row["sum_actual"] / row["n"],
                **{m: row[f"sum_{m}"] / row["n"] for m in models},
            }
            for bucket, row in sorted(table.items())
        ],
    }
    logger.info(
        "Holdout (%d days): MAE %s; total purchases %.0f actual, %s. %s",
        analysis_period["holdout_days"],
        ", ".join(f"{MODEL_LABELS[m]} {scores[f'mae_{m}']:.4f}" for m in models),
        scores["total_actual"],
        ", ".join(f"{scores[f'total_{m}']:.0f} {MODEL_LABELS[m]}" for m in models),
        validation["verdict"],
    )
    logger.info(
        "Holdout predictive coverage of the central %.0f%% count intervals: %s",
        100 * level,
        ", ".join(f"{MODEL_LABELS[m]} {scores[f'coverage_{m}']:.3f}" for m in candidates),
    )
    # the naive baseline's churn share and fallback order value: the same customers
    naive = _naive_baseline_from(
        _per(totals["n_churned"], n),
        _per(totals["sum_repeat_order_value"], totals["n_repeat"]),
        analysis_period,
    )
    return validation, naive


def _holdout_aggregates(
    predictions: DataFrame, candidates: list[str]
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Every sum :func:`validate_on_holdout` needs from :func:`_holdout_predictions`' rows, in
    one aggregate: over all customers, and by calibration frequency (0 … 6, 7+) for the
    table."""
    models = [*candidates, "naive"]
    actual = F.col("actual")
    error = {m: F.col(m) - actual for m in models}
    repeat = F.col("frequency") > 0
    # spend: customers with an own repeat mean who bought in the holdout
    both = repeat & (actual > 0)
    holdout_order_value = F.col("holdout_order_value")
    sums = [
        F.count(F.lit(1)).alias("n"),
        F.sum(actual).alias("sum_actual"),
        *(F.sum(m).alias(f"sum_{m}") for m in models),
        *(F.sum(F.abs(e)).alias(f"sum_abs_error_{m}") for m, e in error.items()),
        *(F.sum(e * e).alias(f"sum_squared_error_{m}") for m, e in error.items()),
        *(F.sum(f"coverage_{m}").alias(f"sum_coverage_{m}") for m in candidates),
        F.count(F.when(both, 1)).alias("spend_n"),
        F.sum(F.when(both, F.abs(F.col("order_value") - holdout_order_value))).alias(
            "spend_sum_abs_error_gamma_gamma"
        ),
        F.sum(F.when(both, F.abs(F.col("own_order_value") - holdout_order_value))).alias(
            "spend_sum_abs_error_naive"
        ),
        # the noise test's paired differences of absolute errors, for every pair of models
        *(
            F.stddev_samp(F.abs(error[a]) - F.abs(error[b])).alias(f"gap_deviation_{a}_{b}")
            for i, a in enumerate(models)
            for b in models[i + 1 :]
        ),
        F.count(F.when(actual == 0, 1)).alias("n_churned"),
        F.count(F.when(repeat, 1)).alias("n_repeat"),
        F.sum(F.when(repeat, F.col("own_order_value"))).alias("sum_repeat_order_value"),
    ]
    aggregate = (
        predictions.withColumn("bucket", F.least("frequency", F.lit(FREQUENCY_BUCKETS)))
        .rollup("bucket")
        .agg(*sums)
    )
    rows = aggregate.collect()
    by_bucket = {row["bucket"]: row.asDict() for row in rows}
    # no customers: no rows at all, not even the total's; counts are 0, sums none (as Spark's)
    nobody = {
        field.name: 0 if isinstance(field.dataType, LongType) else None
        for field in aggregate.schema.fields
        if field.name != "bucket"
    }
    return by_bucket.pop(None, nobody), by_bucket


def _per(total: float | None, count: int) -> float | None:
    """A mean from its sum and count, None without rows (as Spark's ``avg``)."""
    return None if not count or total is None else total / count


def _root(square: float | None) -> float | None:
    return None if square is None else math.sqrt(square)


def _gap_deviation(totals: dict[str, Any], models: list[str], model: str, chosen: str) -> float:
    """The sample standard deviation of the per-customer differences between the absolute
    errors of ``model`` and ``chosen`` (:func:`_holdout_aggregates` holds each pair once, in
    ``models``' order); 0 below two customers, where there is no spread to see."""
    first, second = sorted((model, chosen), key=models.index)
    return totals[f"gap_deviation_{first}_{second}"] or 0.0


def _choose(rule: str, candidates: list[str], scores: dict[str, Any]) -> str:
    if rule in candidates:
        return rule
    measure = SELECTION_RULES[rule]
    return min(candidates, key=lambda m: (scores[f"{measure}_{m}"], candidates.index(m)))


def _naive_wins_on(scores, candidates, chosen) -> list[str]:
    """The measures on which the naive baseline does better than the chosen model."""
    wins = []
    if scores["mae_naive"] < min(scores[f"mae_{m}"] for m in candidates):
        wins.append("purchases")
    if (scores["spend_mae_naive"] or 0) < (scores["spend_mae_gamma_gamma"] or 0):
        wins.append("spend")
    for key in ("top_10pct", "top_20pct", "gini"):
        naive, model = scores[f"{key}_naive"], scores[f"{key}_{chosen}"]
        if naive is not None and model is not None and naive > model:
            wins.append(key)
    return wins


def _verdict(scores, chosen, best_model, wins) -> str:
    """What the holdout says, in words: which model predicts purchases best, and every
    measure (``wins``, from :func:`_naive_wins_on`) on which the naive baseline beats the
    model that values customers."""
    label = MODEL_LABELS[chosen]
    words = []
    if "spend" in wins:
        words.append(
            f"Each customer's own mean order value predicts holdout spend better than "
            f"Gamma-Gamma (MAE {scores['spend_mae_naive']:.2f} vs "
            f"{scores['spend_mae_gamma_gamma']:.2f})."
        )
    if {"top_10pct", "top_20pct", "gini"} & set(wins):
        words.append(
            f"Ranked by the naive value, the top 10% of customers hold "
            f"{scores['top_10pct_naive']:.1%} of holdout revenue vs "
            f"{scores[f'top_10pct_{chosen}']:.1%} ranked by {label} (Gini "
            f"{scores['gini_naive']:.3f} vs {scores[f'gini_{chosen}']:.3f})."
        )
    purchases = _purchases_verdict(scores, chosen, best_model, "purchases" in wins)
    return " ".join([purchases, *words])


def _purchases_verdict(scores, chosen, best_model, naive_wins) -> str:
    chosen_text = f"{MODEL_LABELS[chosen]} values customers"
    if naive_wins:
        return (
            f"The naive baseline (repeat purchases so far / T, no dropout) predicts holdout "
            f"purchases better than every model: MAE {scores['mae_naive']:.4f} vs "
            f"{scores[f'mae_{best_model}']:.4f} for {MODEL_LABELS[best_model]}. {chosen_text}, "
            "but on this data its predictions are no better than extrapolating each "
            "customer's past rate."
        )
    return (
        f"{MODEL_LABELS[best_model]} predicts holdout purchases best (MAE "
        f"{scores[f'mae_{best_model}']:.4f}; naive {scores['mae_naive']:.4f}). {chosen_text}."
    )


def cltv_mlflow_metrics(
    model_fit: dict[str, Any], validation: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Parameters, standard errors, log-likelihood, the frequency-spend correlation and the
    holdout accuracy of every candidate as MLflow metrics (``cltv.*``); the chosen model is
    a tag (``cltv.purchase_model``, set by a hook)."""
    return metrics.as_mlflow_metrics(
        {
            **{name: model_fit[name] for name in candidate_names(model_fit)},
            "gamma_gamma": model_fit["gamma_gamma"],
            "validation": {k: v for k, v in validation.items() if k != "by_calibration_frequency"},
        }
    )


def plot_cltv_validation(validation: dict[str, Any]) -> dict[str, Figure]:
    """Holdout purchases by calibration frequency, and in total: actual, each candidate, naive."""
    table = validation["by_calibration_frequency"]
    models = [*candidate_names(validation), "naive"]
    series = [("actual", "actual"), *[(m, MODEL_LABELS[m]) for m in models]]
    labels = [row["frequency"] for row in table]
    by_frequency = Figure(figsize=(7, 4.5), layout="constrained")
    axes = by_frequency.subplots()
    positions = np.arange(len(labels))
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        axes.bar(positions + offset, [row[key] for row in table], width=width, label=label)
    axes.set_xticks(positions, labels)
    axes.set(
        xlabel="Repeat purchases in the calibration period",
        ylabel="Mean purchases per customer in the holdout",
        title=f"Holdout ({validation['holdout_days']} days): predicted vs actual",
    )
    axes.legend()

    totals = Figure(figsize=(5, 4), layout="constrained")
    axes = totals.subplots()
    axes.bar(
        [label for _, label in series],
        [validation[f"total_{key}"] for key, _ in series],
        color=["grey", *[f"C{i + 1}" for i in range(len(models))]],
    )
    axes.set(ylabel="Purchases in the holdout, all customers", title="Holdout totals")
    return {"holdout_by_frequency.png": by_frequency, "holdout_totals.png": totals}
