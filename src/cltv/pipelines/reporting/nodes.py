"""Nodes of ``reporting``: Spark aggregates the gold tables; only the small results are plotted.

Each ``*_table`` node returns a pandas DataFrame of a few dozen rows at most (months, cohorts,
segments, countries, tiers, bins, the retention target list); each ``plot_*`` node turns one
of them into a Plotly figure; ``build_dashboard`` writes them all into one HTML page that opens
offline (plotly.js is inlined).
"""

from __future__ import annotations

import html
import logging
import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cltv import metrics
from cltv.parameters import TARGET_RANKINGS
from cltv.pipelines.cltv.nodes import MODEL_LABELS, boundary_notes, candidate_names
from cltv.promotion import production

CLV_BINS = 20

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------ tables (Spark → small pandas)
def _sold_days(purchase_days: DataFrame) -> DataFrame:
    """Days with a sale: lines returned in full are no sale."""
    return purchase_days.filter(F.col("sold_lines") > 0)


def revenue_by_month(purchase_days: DataFrame) -> pd.DataFrame:
    """Net revenue, invoices and active customers per calendar month (lines returned in full
    are no sale)."""
    return (
        _sold_days(purchase_days)
        .groupBy(F.date_format("day", "yyyy-MM").alias("month"))
        .agg(
            F.sum("revenue").alias("revenue"),
            F.sum("new_invoices").alias("invoices"),
            F.countDistinct("customer_id").alias("active_customers"),
        )
        .orderBy("month")
        .toPandas()
    )


def cohort_retention(purchase_days: DataFrame, max_months: int) -> pd.DataFrame:
    """Share of each monthly acquisition cohort buying again k months after its first month."""
    month = F.trunc("day", "month")
    active = _sold_days(purchase_days).select("customer_id", month.alias("month")).distinct()
    first = active.groupBy("customer_id").agg(F.min("month").alias("cohort"))
    since = F.months_between("month", "cohort").cast("int")
    counts = (
        active.join(first, "customer_id")
        .withColumn("months_since", since)
        .filter(F.col("months_since") <= max_months)
        .groupBy("cohort", "months_since")
        .agg(F.count(F.lit(1)).alias("customers"))
    )
    sizes = counts.filter(F.col("months_since") == 0).select(
        "cohort", F.col("customers").alias("cohort_size")
    )
    table = (
        counts.join(sizes, "cohort")
        .withColumn("retention", F.col("customers") / F.col("cohort_size"))
        .withColumn("cohort", F.date_format("cohort", "yyyy-MM"))
        .orderBy("cohort", "months_since")
        .toPandas()
    )
    return table


def segment_summary(
    current_features: DataFrame, churn_predictions: DataFrame, customer_cltv: DataFrame
) -> pd.DataFrame:
    """Per RFM segment: customers, revenue so far, predicted CLV and churn risk."""
    return (
        current_features.select("customer_id", "rfm_segment", "monetary_total")
        .join(
            churn_predictions.select("customer_id", "churn_probability", "risk_band"), "customer_id"
        )
        .join(customer_cltv.select("customer_id", "clv"), "customer_id", "left")
        .groupBy("rfm_segment")
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum("monetary_total").alias("revenue"),
            F.sum("clv").alias("predicted_clv"),
            F.avg("clv").alias("mean_clv"),
            F.avg("churn_probability").alias("mean_churn_probability"),
            F.avg((F.col("risk_band") == "high").cast("double")).alias("high_risk_share"),
        )
        .orderBy(F.desc("revenue"))
        .toPandas()
    )


def churn_risk_by_country(churn_predictions: DataFrame, top_countries: int) -> pd.DataFrame:
    """Churn risk in the countries with the most customers."""
    return (
        churn_predictions.groupBy("country")
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.avg("churn_probability").alias("mean_churn_probability"),
            F.avg((F.col("risk_band") == "high").cast("double")).alias("high_risk_share"),
        )
        .orderBy(F.desc("customers"), "country")
        .limit(top_countries)
        .toPandas()
    )


def value_concentration(
    customer_cltv: DataFrame, current_features: DataFrame, value_tiers: list[dict[str, Any]]
) -> pd.DataFrame:
    """Share of predicted CLV, and of revenue so far, held by the top 1 / 5 / 20 % (by CLV)."""
    joined = customer_cltv.select("customer_id", "clv", "clv_rank").join(
        current_features.select("customer_id", "monetary_total"), "customer_id", "left"
    )
    n = joined.count()
    shares = sorted(tier["share"] for tier in value_tiers)
    row = joined.agg(
        F.sum("clv").alias("clv_total"),
        F.sum("monetary_total").alias("revenue_total"),
        *[
            F.sum(F.when(F.col("clv_rank") <= math.ceil(s * n), F.col(c))).alias(f"{c}_{i}")
            for i, s in enumerate(shares)
            for c in ("clv", "monetary_total")
        ],
    ).first()
    return pd.DataFrame(
        [
            {
                "top_share": s,
                "group": f"top {s:.0%}",
                "customers": math.ceil(s * n),
                "clv_share": (row[f"clv_{i}"] or 0.0) / row["clv_total"],
                "revenue_share": (row[f"monetary_total_{i}"] or 0.0) / row["revenue_total"],
            }
            for i, s in enumerate(shares)
        ]
    )


def clv_distribution(customer_cltv: DataFrame, bins: int = CLV_BINS) -> pd.DataFrame:
    """Histogram of predicted CLV on equal-width bins up to the 99th percentile (+ overflow)."""
    upper = customer_cltv.agg(F.percentile_approx("clv", 0.99, 10_000)).first()[0] or 1.0
    width = upper / bins
    index = F.least(F.floor(F.col("clv") / F.lit(width)), F.lit(bins)).cast("int")
    counts = customer_cltv.groupBy(index.alias("bin")).count().orderBy("bin").toPandas()
    counts["clv_from"] = counts["bin"] * width
    counts["label"] = [
        f"{lo:,.0f}+" if b == bins else f"{lo:,.0f}–{lo + width:,.0f}"
        for b, lo in zip(counts["bin"], counts["clv_from"], strict=True)
    ]
    return counts.rename(columns={"count": "customers"})


def value_tier_table(customer_cltv: DataFrame) -> pd.DataFrame:
    """Per value tier (largest CLV first): customers, total and mean CLV, the mean of the
    customers' CLV interval bounds, and how wide the intervals are: the mean width and the
    width as a share of the tier's CLV (the parameters' uncertainty, tier by tier)."""
    table = (
        customer_cltv.groupBy("value_tier")
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.min("clv_rank").alias("first_rank"),
            F.sum("clv").alias("clv_total"),
            F.avg("clv").alias("clv_mean"),
            F.avg("clv_lower").alias("clv_lower_mean"),
            F.avg("clv_upper").alias("clv_upper_mean"),
            F.avg(F.col("clv_upper") - F.col("clv_lower")).alias("interval_width_mean"),
            F.sum(F.col("clv_upper") - F.col("clv_lower")).alias("width_total"),
        )
        .orderBy("first_rank")
        .toPandas()
    )
    clv, width = table["clv_total"], table.pop("width_total")
    table["interval_width_share"] = (width / clv.where(clv > 0)).fillna(0.0)
    return table.drop(columns="first_rank")


# the retention list's reason for a target without one in words
NO_SINGLE_RISK = "no single risk stands out"


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


def headline_kpis(
    purchase_days: DataFrame,
    customer_cltv: DataFrame,
    churn_predictions: DataFrame,
    analysis_period: dict[str, Any],
    churn_metrics: dict[str, Any],
    cltv_validation: dict[str, Any],
    cltv_model_fit: dict[str, Any],
    cltv_total_value: dict[str, Any],
    model_promotion: dict[str, Any],
) -> dict[str, Any]:
    """The numbers at the top of the dashboard, all of the models that wrote the tables
    (production: this run's model of each kind when promoted, else the champion that kept the
    alias, from ``model_promotion``): the churn model, its version, its ROC-AUC and PR-AUC on
    this run's test customers (None, shown "not scored", when it has none) and the threshold
    ``predicted_churn`` used; the CLV purchase model that valued the customers.

    ``challengers`` holds the same figures of this run's models that did not take the alias,
    and ``model_decisions`` says so in words; the evaluation (``churn_metrics``' head-to-head,
    ``cltv_validation``'s candidates) is this run's models', and says so when they lost.
    ``cltv_model_notes``: the notes of any boundary optimum of the models that value customers
    (``cltv_model_fit`` when this run's CLV model was promoted, else the champion's, carried by
    its decision), and the holdout's verdict when the naive baseline beats this run's chosen
    model on any measure; empty when there is nothing to say."""
    sales = (
        _sold_days(purchase_days)
        .agg(
            F.sum("revenue").alias("revenue"),
            F.countDistinct("customer_id").alias("customers"),
            F.sum("new_invoices").alias("invoices"),
        )
        .first()
    )
    value = customer_cltv.agg(
        F.sum("clv").alias("clv"),
        F.avg((F.col("frequency") > 0).cast("double")).alias("repeat_rate"),
        F.sum("expected_purchases").alias("purchases"),
    ).first()
    risk = churn_predictions.agg(
        F.avg("churn_probability").alias("mean_churn"),
        F.sum((F.col("risk_band") == "high").cast("int")).alias("high_risk"),
    ).first()
    churn, clv = model_promotion["cltv_churn"], model_promotion["cltv_value"]
    churn_figures, clv_figures = _churn_figures(production(churn)), _cltv_figures(production(clv))
    challengers = {
        name: figures(decision["challenger"])
        for name, decision, figures in (
            ("cltv_churn", churn, _churn_figures),
            ("cltv_value", clv, _cltv_figures),
        )
        if not decision["promoted"]
    }
    head_to_head = churn_metrics.get("head_to_head", {}).get("verdict", "")
    if head_to_head and not churn["promoted"]:
        head_to_head = f"{_challenger_label(churn)}: {head_to_head}"
    naive_verdict = (
        cltv_validation["verdict"]
        if cltv_validation.get("selection", {}).get("naive_wins_on")
        else ""
    )
    if naive_verdict and not clv["promoted"]:
        naive_verdict = f"This run's candidates ({_challenger_label(clv)}): {naive_verdict}"
    fit_notes = (
        boundary_notes(cltv_model_fit) if clv["promoted"] else clv["champion"].get("fit_notes", [])
    )
    return {
        "period": (
            f"{analysis_period['first_transaction_date']} – {analysis_period['observation_end']}"
        ),
        "revenue": float(sales["revenue"]),
        "customers": int(sales["customers"]),
        "invoices": int(sales["invoices"]),
        "repeat_customer_rate": float(value["repeat_rate"]),
        "predicted_clv_total": float(value["clv"]),
        # the total's own interval over the parameter draws (not a sum of customers' bounds)
        "predicted_clv_total_interval": [
            cltv_total_value["clv_lower"],
            cltv_total_value["clv_upper"],
            cltv_total_value["interval"],
        ],
        "predicted_purchases": float(value["purchases"]),
        "mean_churn_probability": float(risk["mean_churn"]),
        "high_risk_customers": int(risk["high_risk"]),
        **{f"churn_{key}": figure for key, figure in churn_figures.items()},
        "churn_head_to_head": head_to_head,
        "cltv_candidates": _candidate_scores(cltv_validation, clv),
        "cltv_mae_bgnbd": cltv_validation["mae_bgnbd"],
        "cltv_mae_naive": cltv_validation["mae_naive"],
        **{f"cltv_{key}": figure for key, figure in clv_figures.items()},
        "challengers": challengers,
        "model_decisions": _lost_challenges(model_promotion),
        "cltv_model_notes": " ".join([*fit_notes, *([naive_verdict] if naive_verdict else [])]),
    }


def _churn_figures(side: dict[str, Any]) -> dict[str, Any]:
    """A churn model's figures as the dashboard shows them (one side of its decision); a
    score it has not on this run's test customers is None, never 0."""
    return {
        "model": side["model"],
        "model_version": side["version"],
        "roc_auc": side.get("roc_auc"),
        "pr_auc": side.get("pr_auc"),
        "threshold": side["threshold"]["value"],
        "threshold_rule": side["threshold"]["rule"],
    }


def _cltv_figures(side: dict[str, Any]) -> dict[str, Any]:
    """A CLV model's figures as the dashboard shows them (one side of its decision)."""
    return {
        "purchase_model": MODEL_LABELS[side["purchase_model"]],
        "model_version": side["version"],
    }


def _challenger_label(decision: dict[str, Any]) -> str:
    return (
        f"this run's challenger, {decision['registered_model']} version "
        f"{decision['challenger']['version']}, not in production"
    )


def _score(value: float | None) -> str:
    """A score as the decisions print it; "not scored" when there is none."""
    return "not scored" if value is None else f"{value:.4f}"


def _churn_line(figures: dict[str, Any]) -> str:
    return (
        f"{figures['model']}: ROC-AUC {_score(figures['roc_auc'])}, PR-AUC "
        f"{_score(figures['pr_auc'])} on this run's test customers, threshold "
        f"{figures['threshold']:.4f} ({figures['threshold_rule']})"
    )


def _lost_challenges(model_promotion: dict[str, Any]) -> str:
    """In words, each model this run trained that did not take the alias: its figures beside
    the champion's, which wrote the tables, and which charts are whose."""
    lines = []
    churn, clv = model_promotion["cltv_churn"], model_promotion["cltv_value"]
    if not churn["promoted"]:
        lines.append(
            f"{_lost(churn)}: the tables, the churn KPI cards and the reasons chart are version "
            f"{churn['champion']['version']}'s, the champion "
            f"({_churn_line(_churn_figures(churn['champion']))}); this run's challenger "
            f"({_churn_line(_churn_figures(churn['challenger']))}) is the one in the churn "
            "ROC and reliability charts and the churn head-to-head."
        )
    if not clv["promoted"]:
        lines.append(
            f"{_lost(clv)}: customer_cltv and its totals are version "
            f"{clv['champion']['version']}'s, the champion "
            f"({MODEL_LABELS[clv['champion']['purchase_model']]}); this run's challenger "
            f"({MODEL_LABELS[clv['challenger']['purchase_model']]}) and its candidates are the "
            "ones in the holdout chart and the purchase-model table."
        )
    return " ".join(lines)


def _lost(decision: dict[str, Any]) -> str:
    return (
        f"{decision['registered_model']} version {decision['challenger']['version']}, trained "
        f"by this run, did not take the alias '{decision['alias']}' ({decision['reason']})"
    )


def _candidate_scores(validation: dict[str, Any], decision: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per purchase model and the naive baseline: the holdout scores of
    ``cltv_validation.json``, this run's choice marked: "yes" when it values customers (this
    run's CLV model was promoted), else that it did not take the alias (``decision``)."""
    chosen = validation.get("selection", {}).get("chosen")
    mark = (
        "yes"
        if decision["promoted"]
        else f"no: this run's choice, version {decision['challenger']['version']}, did not "
        f"take the alias; version {decision['champion']['version']} values customers"
    )
    names = [*candidate_names(validation), "naive"]
    level = validation["predictive_interval"]["level"]
    return [
        {
            "model": MODEL_LABELS.get(name, name),
            "values customers": mark if name == chosen else "",
            "holdout MAE": validation[f"mae_{name}"],
            "holdout RMSE": validation[f"rmse_{name}"],
            "predicted purchases": validation[f"total_{name}"],
            "actual purchases": validation["total_actual"],
            "top 10% revenue share": validation.get(f"top_10pct_{name}"),
            "top 20% revenue share": validation.get(f"top_20pct_{name}"),
            "Gini": validation.get(f"gini_{name}"),
            # the naive extrapolation has no count distribution: no interval
            f"{level:.0%} interval coverage": validation.get(f"coverage_{name}"),
        }
        for name in names
    ]


# ------------------------------------------------------------------ drift between runs
def drift_report(
    features: DataFrame,
    features_before: DataFrame,
    churn_predictions: DataFrame,
    churn_predictions_before: DataFrame,
    customer_cltv: DataFrame,
    customer_cltv_before: DataFrame,
    drift: dict[str, Any],
    model_versions: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """This run's customer tables against the versions they replaced (Delta time travel), and
    which registered model versions wrote them (``model_versions``).

    Per table: customers now, before, in both, new and gone; the population stability index
    (:func:`cltv.metrics.population_stability`) of every feature, of the churn probability and
    of CLV; the share of the customers in both versions whose risk band or value tier changed;
    totals now and before. A PSI above ``drift.psi_warning`` or a changed share above
    ``drift.changed_share_warning`` is a warning in the run log and in the report. A table
    without an earlier version (``*_before`` has no rows) has nothing to compare yet.

    Returns ``drift_report.json`` and its numbers as MLflow metrics.
    """
    tables = {
        "customer_features_current": _table_drift(
            features,
            features_before,
            [name for name in features.columns if name != "customer_id"],
            None,
            {"revenue_to_date": F.sum("monetary_total")},
            drift["bins"],
        ),
        "churn_predictions": _table_drift(
            churn_predictions,
            churn_predictions_before,
            ["churn_probability"],
            "risk_band",
            {
                "mean_churn_probability": F.avg("churn_probability"),
                "expected_churners": F.sum("churn_probability"),
                "high_risk_customers": F.sum((F.col("risk_band") == "high").cast("long")),
            },
            drift["bins"],
        ),
        "customer_cltv": _table_drift(
            customer_cltv,
            customer_cltv_before,
            ["clv"],
            "value_tier",
            {"clv_total": F.sum("clv")},
            drift["bins"],
        ),
    }
    warnings = _drift_warnings(tables, drift)
    for warning in warnings:
        logger.warning("Drift since the previous run: %s", warning)
    compared = {name: entry for name, entry in tables.items() if entry["compared"]}
    if not compared:
        logger.info("Drift: no customer table has an earlier version, nothing to compare yet")
    report = {
        "compared": bool(compared),
        "bins": drift["bins"],
        "psi_warning": drift["psi_warning"],
        "changed_share_warning": drift["changed_share_warning"],
        "tables": tables,
        "warnings": warnings,
        "produced_by": model_versions["produced_by"],
        "models": {
            name: {key: entry[key] for key in ("registered_model", "version") if key in entry}
            for name, entry in model_versions["models"].items()
        },
    }
    measures = {
        name: {key: entry[key] for key in entry if key == "psi" or key.endswith("_changed")}
        for name, entry in compared.items()
    }
    return report, metrics.as_mlflow_metrics(measures)


def _versions_line(drift: dict[str, Any]) -> str:
    """Which registered versions wrote the tables, e.g. "tables by cltv_churn version 2 and
    cltv_value version 2 (training)"."""
    models = drift.get("models") or {}
    if not models:
        return "registered model versions not recorded"
    listed = " and ".join(f"{name} version {entry['version']}" for name, entry in models.items())
    return f"tables by {listed} ({drift.get('produced_by', 'training')})"


def _table_drift(
    current: DataFrame,
    previous: DataFrame,
    columns: list[str],
    band: str | None,
    totals: dict[str, Any],
    bins: int,
) -> dict[str, Any]:
    if previous.isEmpty():
        return {"compared": False, "reason": "no earlier version: nothing to compare yet"}
    common = [name for name in columns if name in previous.columns]
    entry: dict[str, Any] = {
        "compared": True,
        "customers": _customer_changes(current, previous, band),
        "psi": metrics.population_stability(current, previous, common, bins),
    }
    if band:
        entry[f"{band}_changed"] = entry["customers"].pop("changed")
    now, before = (
        frame.agg(*[e.alias(k) for k, e in totals.items()]).first() for frame in (current, previous)
    )
    entry["totals"] = {key: {"now": now[key], "before": before[key]} for key in totals}
    added = [name for name in columns if name not in previous.columns]
    if added:
        entry["columns_not_before"] = added
    return entry


def _customer_changes(current: DataFrame, previous: DataFrame, band: str | None) -> dict[str, Any]:
    """Customers now, before, in both, new, gone; with ``band``, the share of those in both
    whose ``band`` changed (``changed``)."""

    def side(frame: DataFrame, flag: str) -> DataFrame:
        columns = [F.col("customer_id"), F.lit(1).alias(flag)]
        if band:
            columns.append(F.col(band).alias(f"{band}_{flag}"))
        return frame.select(*columns)

    joined = side(current, "now").join(side(previous, "before"), "customer_id", "full")
    in_both = F.col("now").isNotNull() & F.col("before").isNotNull()
    aggregates = [
        F.count("now").alias("now"),
        F.count("before").alias("before"),
        F.sum(in_both.cast("long")).alias("in_both"),
    ]
    if band:
        differs = ~F.col(f"{band}_now").eqNullSafe(F.col(f"{band}_before"))
        aggregates.append(F.avg(F.when(in_both, differs.cast("double"))).alias("changed"))
    row = joined.agg(*aggregates).first().asDict()
    row["in_both"] = row["in_both"] or 0
    row.update(new=row["now"] - row["in_both"], gone=row["before"] - row["in_both"])
    return row


def _drift_warnings(tables: dict[str, dict[str, Any]], drift: dict[str, Any]) -> list[str]:
    warnings = []
    for name, entry in tables.items():
        for column, psi in entry.get("psi", {}).items():
            if psi > drift["psi_warning"]:
                warnings.append(
                    f"{name}.{column}: PSI {psi:.3f}, above {drift['psi_warning']} "
                    "(its distribution moved)"
                )
        for label, share in _changed_shares(entry):
            if share is not None and share > drift["changed_share_warning"]:
                warnings.append(
                    f"{name}: {share:.1%} of the customers in both versions changed {label}, "
                    f"above {drift['changed_share_warning']:.0%}"
                )
    return warnings


def _changed_shares(entry: dict[str, Any]) -> list[tuple[str, float | None]]:
    """A table's ``<band>_changed`` shares, each with the band's name in words."""
    return [
        (key.removesuffix("_changed").replace("_", " "), share)
        for key, share in entry.items()
        if key.endswith("_changed")
    ]


# ------------------------------------------------------------------ figures
def _layout(figure: go.Figure, title: str) -> go.Figure:
    figure.update_layout(title=title, template="plotly_white", margin={"t": 60, "l": 60, "r": 30})
    return figure


def plot_revenue(table: pd.DataFrame) -> go.Figure:
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_bar(x=table["month"], y=table["revenue"], name="revenue")
    figure.add_scatter(
        x=table["month"], y=table["active_customers"], name="active customers", secondary_y=True
    )
    figure.update_yaxes(title_text="revenue", secondary_y=False)
    figure.update_yaxes(title_text="active customers", secondary_y=True)
    return _layout(figure, "Revenue and active customers by month")


def plot_cohorts(table: pd.DataFrame) -> go.Figure:
    grid = table.pivot(index="cohort", columns="months_since", values="retention")
    figure = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[str(c) for c in grid.columns],
            y=list(grid.index),
            colorscale="Blues",
            zmin=0,
            zmax=float(grid.drop(columns=0, errors="ignore").max().max() or 1),
            colorbar={"title": "retained"},
        )
    )
    figure.update_xaxes(title_text="months since first purchase")
    figure.update_yaxes(title_text="acquisition cohort", autorange="reversed")
    return _layout(figure, "Cohort retention (share of each monthly cohort buying)")


def plot_segments(table: pd.DataFrame) -> go.Figure:
    figure = make_subplots(rows=1, cols=2, subplot_titles=("customers", "revenue so far"))
    figure.add_bar(x=table["rfm_segment"], y=table["customers"], name="customers", row=1, col=1)
    figure.add_bar(x=table["rfm_segment"], y=table["revenue"], name="revenue", row=1, col=2)
    figure.update_layout(showlegend=False)
    return _layout(figure, "RFM segments: size and value")


def plot_churn_risk(segments: pd.DataFrame, countries: pd.DataFrame) -> go.Figure:
    figure = make_subplots(rows=1, cols=2, subplot_titles=("by RFM segment", "by country"))
    figure.add_bar(x=segments["rfm_segment"], y=segments["mean_churn_probability"], row=1, col=1)
    figure.add_bar(x=countries["country"], y=countries["mean_churn_probability"], row=1, col=2)
    figure.update_yaxes(title_text="mean churn probability", range=[0, 1])
    figure.update_layout(showlegend=False)
    return _layout(figure, "Churn risk")


def plot_churn_reasons(importance: dict[str, Any], max_features: int = 15) -> go.Figure:
    """The global view of the churn reasons: each input's mean absolute contribution to the
    log-odds of churn over the customers scored (``churn_reason_importance``)."""
    shown = importance["features"][:max_features][::-1]
    figure = go.Figure(
        go.Bar(
            x=[f["mean_abs_contribution"] for f in shown],
            y=[f["feature"] for f in shown],
            orientation="h",
        )
    )
    figure.update_xaxes(title_text="mean |contribution| to the log-odds of churn")
    if not importance["observed"]:
        title = f"Why customers churn: {importance['model']} gives no reasons"
    else:
        title = (
            f"Why customers churn: what moves {importance['model']}'s probability, "
            f"over {importance['customers']:,} customers"
        )
    return _layout(figure, title)


def plot_value_concentration(concentration: pd.DataFrame, distribution: pd.DataFrame) -> go.Figure:
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("share held by the top customers", "CLV distribution")
    )
    figure.add_bar(
        x=concentration["group"], y=concentration["clv_share"], name="predicted CLV", row=1, col=1
    )
    figure.add_bar(
        x=concentration["group"],
        y=concentration["revenue_share"],
        name="revenue so far",
        row=1,
        col=1,
    )
    figure.add_bar(
        x=distribution["label"], y=distribution["customers"], name="customers", row=1, col=2
    )
    figure.update_yaxes(tickformat=".0%", row=1, col=1)
    return _layout(figure, "Customer value: concentration and distribution")


def plot_model_quality(
    churn_evaluation: dict[str, Any],
    cltv_validation: dict[str, Any],
    model_promotion: dict[str, Any],
) -> go.Figure:
    """This run's models' evaluation: the churn model's ROC and reliability on the test
    customers (``churn_evaluation``), and the CLV candidates' holdout purchases by calibration
    frequency (``cltv_validation``). Each panel says whose it is (``model_promotion``): in
    production when this run's model was promoted, else this run's challenger, which did not
    take the alias and wrote no table."""
    churn, clv = model_promotion["cltv_churn"], model_promotion["cltv_value"]
    whose_churn = (
        f"version {churn['challenger']['version']}, in production"
        if churn["promoted"]
        else f"this run's challenger, version {churn['challenger']['version']}, not in production"
    )
    whose_clv = (
        f"this run's candidates; version {clv['challenger']['version']} in production"
        if clv["promoted"]
        else f"this run's candidates; the challenger, version {clv['challenger']['version']}, "
        "not in production"
    )
    figure = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            f"Churn ROC ({churn_evaluation['model']}, test;<br>{whose_churn})",
            f"Churn reliability (test;<br>{whose_churn})",
            f"Holdout purchases by calibration frequency<br>({whose_clv})",
        ),
    )
    roc = pd.DataFrame(churn_evaluation["roc"])
    figure.add_scatter(x=roc["fpr"], y=roc["tpr"], name="ROC", row=1, col=1)
    figure.add_scatter(
        x=[0, 1], y=[0, 1], name="chance", line={"dash": "dash", "color": "grey"}, row=1, col=1
    )
    bins = pd.DataFrame(churn_evaluation["calibration"])
    figure.add_scatter(
        x=bins["mean_predicted"], y=bins["observed_rate"], name="observed", row=1, col=2
    )
    figure.add_scatter(
        x=[0, 1], y=[0, 1], name="calibrated", line={"dash": "dash", "color": "grey"}, row=1, col=2
    )
    holdout = pd.DataFrame(cltv_validation["by_calibration_frequency"])
    for column in ("actual", *candidate_names(cltv_validation), "naive"):
        name = MODEL_LABELS.get(column, column)
        figure.add_bar(x=holdout["frequency"], y=holdout[column], name=name, row=1, col=3)
    _layout(figure, "Model quality of this run's models")
    # room for the panel titles' second line (whose model each shows) under the title
    return figure.update_layout(margin={"t": 110})


# ------------------------------------------------------------------ dashboard
def _format(value: Any) -> str:
    if value is None:  # a KPI's score the model has not on this run's data, never 0
        return "not scored"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


KPI_LABELS = {
    "period": "Period",
    "revenue": "Revenue",
    "customers": "Customers",
    "invoices": "Invoices",
    "repeat_customer_rate": "Repeat customers",
    "predicted_clv_total": "Predicted CLV (horizon)",
    "predicted_purchases": "Predicted purchases",
    "mean_churn_probability": "Mean churn probability",
    "high_risk_customers": "High-risk customers",
    "churn_roc_auc": "Churn ROC-AUC (test)",
    "churn_pr_auc": "Churn PR-AUC (test)",
    "churn_threshold": "Churn threshold (predicted_churn)",
    "cltv_purchase_model": "CLV purchase model",
    "cltv_mae_bgnbd": "Holdout MAE, BG/NBD",
    "cltv_mae_naive": "Holdout MAE, naive",
}


def _interval_line(kpis: dict[str, Any], key: str) -> str:
    """The line under a KPI that has an interval (``<key>_interval``: lower, upper, level)."""
    if f"{key}_interval" not in kpis:
        return ""
    lower, upper, level = kpis[f"{key}_interval"]
    return (
        f'<div class="interval">{level:.0%} interval: {_format(float(lower))} – '
        f"{_format(float(upper))}</div>"
    )


# the KPI key prefix of each registered model's figures (headline_kpis)
FIGURES_OF = {"churn_": "cltv_churn", "cltv_": "cltv_value"}


def _challenger_line(kpis: dict[str, Any], key: str) -> str:
    """The line under a production model's KPI with the same figure of this run's
    challenger, when it did not take the alias (``challengers``)."""
    for prefix, name in FIGURES_OF.items():
        figures = kpis.get("challengers", {}).get(name) or {}
        field = key.removeprefix(prefix)
        if key.startswith(prefix) and field in figures:
            return (
                f'<div class="challenger">this run\'s challenger, version '
                f"{figures['model_version']}, not in production: {_format(figures[field])}</div>"
            )
    return ""


def _production_line(kpis: dict[str, Any]) -> str:
    """The header's line: the models that wrote the tables, their versions, the threshold."""
    return (
        f"churn model: {kpis['churn_model']} (version {kpis['churn_model_version']}, "
        f"threshold {kpis['churn_threshold']:.4f} by {kpis['churn_threshold_rule']}); "
        f"CLV purchase model: {kpis['cltv_purchase_model']} (version "
        f"{kpis['cltv_model_version']})"
    )


def drift_section(drift: dict[str, Any]) -> str:
    """The dashboard's "since the previous run" section from ``drift_report.json``."""
    if not drift["compared"]:
        return "<p>Nothing to compare yet: this is the first run on these tables.</p>"
    rows = []
    for name, entry in drift["tables"].items():
        if not entry["compared"]:
            rows.append({"table": name, "measure": entry["reason"], "value": ""})
            continue
        customers = entry["customers"]
        rows.append(
            {
                "table": name,
                "measure": "customers now / before (new, gone)",
                "value": f"{customers['now']:,} / {customers['before']:,} "
                f"({customers['new']:,}, {customers['gone']:,})",
            }
        )
        largest = sorted(entry["psi"].items(), key=lambda item: -item[1])[:5]
        rows += [
            {"table": name, "measure": f"PSI of {column}", "value": f"{psi:.3f}"}
            for column, psi in largest
        ]
        rows += [
            {
                "table": name,
                "measure": f"{label} changed",
                "value": "—" if share is None else f"{share:.1%}",
            }
            for label, share in _changed_shares(entry)
        ]
        rows += [
            {
                "table": name,
                "measure": f"{key.replace('_', ' ')} now / before",
                "value": f"{_format(total['now'])} / {_format(total['before'])}",
            }
            for key, total in entry["totals"].items()
        ]
    warnings = "".join(f'<p class="note">{html.escape(w)}</p>' for w in drift["warnings"])
    table = pd.DataFrame(rows).to_html(index=False, classes="targets")
    return f"{warnings}{table}"


def build_dashboard(
    kpis: dict[str, Any],
    targets: pd.DataFrame,
    value_tiers: pd.DataFrame,
    drift: dict[str, Any],
    revenue: go.Figure,
    cohorts: go.Figure,
    segments: go.Figure,
    churn_risk: go.Figure,
    value: go.Figure,
    model_quality: go.Figure,
    churn_reasons: go.Figure,
) -> str:
    """One self-contained HTML page: KPI cards, the charts, the retention target list."""
    # plotly.offline (the bundled plotly.js) loads for this node only
    from plotly.offline import get_plotlyjs

    cards = "".join(
        f'<div class="kpi"><div class="label">{html.escape(label)}</div>'
        f'<div class="value">{_format(kpis[key])}</div>{_interval_line(kpis, key)}'
        f"{_challenger_line(kpis, key)}</div>"
        for key, label in KPI_LABELS.items()
    )
    charts = "".join(
        '<section class="chart">'
        + pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=name)
        + "</section>"
        for name, figure in (
            ("revenue", revenue),
            ("cohorts", cohorts),
            ("segments", segments),
            ("churn_risk", churn_risk),
            ("churn_reasons", churn_reasons),
            ("value", value),
            ("model_quality", model_quality),
        )
    )
    shown = targets.head(25).rename(
        columns={"churn_reason_text": "why at risk", "retention_lever_text": "strongest lever"}
    )
    table = shown.to_html(
        index=False, float_format=lambda v: f"{v:,.3f}", classes="targets", na_rep=""
    )
    level = kpis["predicted_clv_total_interval"][2]
    tiers = value_tiers.rename(
        columns={
            "value_tier": "tier",
            "clv_total": "CLV",
            "clv_mean": "mean CLV",
            "clv_lower_mean": f"mean {level:.0%} lower bound",
            "clv_upper_mean": f"mean {level:.0%} upper bound",
            "interval_width_mean": "mean interval width",
            "interval_width_share": "interval width / CLV",
        }
    ).to_html(index=False, float_format=lambda v: f"{v:,.2f}", classes="targets")
    candidates = pd.DataFrame(kpis.get("cltv_candidates", [])).to_html(
        index=False, float_format=lambda v: f"{v:,.4f}", classes="targets", na_rep="—"
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    notes = "".join(
        f'<p class="note">{title}: {html.escape(kpis[key])}</p>'
        for title, key in (
            ("Champion / challenger", "model_decisions"),
            ("CLV model", "cltv_model_notes"),
            ("Churn", "churn_head_to_head"),
        )
        if kpis.get(key)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>cltv-churn dashboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
.kpis {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }}
.kpi {{ border: 1px solid #ddd; border-radius: 8px; padding: 12px; }}
.kpi .label {{ font-size: 12px; color: #666; }} .kpi .value {{ font-size: 22px; font-weight: 600; }}
.kpi .interval {{ font-size: 12px; color: #444; }}
.kpi .challenger {{ font-size: 12px; color: #8a5a00; }}
.chart {{ margin-top: 24px; }}
.note {{ background: #fff6e0; border-left: 4px solid #e0a000; padding: 8px 12px; }}
table.targets {{ border-collapse: collapse; font-size: 13px; }}
table.targets td, table.targets th {{ border: 1px solid #ddd; padding: 4px 8px; }}
</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>Customer lifetime value and churn</h1>
<p>Generated {generated}; {html.escape(_production_line(kpis))};
{html.escape(_versions_line(drift))}.</p>
{notes}
<div class="kpis">{cards}</div>
{charts}
<h2>Value tiers: predicted CLV with its {level:.0%} interval (parameter uncertainty)</h2>
{tiers}
<h2>Since the previous run (PSI: population stability index; above
{drift["psi_warning"]} is flagged)</h2>
{drift_section(drift)}
<h2>CLV purchase models on the holdout</h2>
{candidates}
<h2>Retention targets: high-value customers most at risk ({len(targets)} listed, top 25 shown)</h2>
{table}
</body></html>
"""
