"""The headline KPIs: the numbers at the top of the dashboard, and which models they are of.

The figures of the tables come from the report tables' passes (:func:`summarise_sales`,
:func:`summarise_customers`); this node runs no Spark job.
"""

from __future__ import annotations

from typing import Any

from cltv.pipelines.cltv.nodes import MODEL_LABELS, boundary_notes, candidate_names
from cltv.promotion import production


def headline_kpis(
    sales: dict[str, Any],
    customer_figures: dict[str, Any],
    analysis_period: dict[str, Any],
    churn_metrics: dict[str, Any],
    cltv_validation: dict[str, Any],
    cltv_model_fit: dict[str, Any],
    cltv_total_value: dict[str, Any],
    model_promotion: dict[str, Any],
) -> dict[str, Any]:
    """The numbers at the top of the dashboard: the sales (``sales``: revenue, customers,
    invoices of the days with a sale) and the customer tables' figures (``customer_figures``),
    then all of the models that wrote the tables
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
        "revenue": sales["revenue"],
        "customers": sales["customers"],
        "invoices": sales["invoices"],
        "repeat_customer_rate": customer_figures["repeat_customer_rate"],
        "predicted_clv_total": customer_figures["predicted_clv_total"],
        # the total's own interval over the parameter draws (not a sum of customers' bounds)
        "predicted_clv_total_interval": [
            cltv_total_value["clv_lower"],
            cltv_total_value["clv_upper"],
            cltv_total_value["interval"],
        ],
        "predicted_purchases": customer_figures["predicted_purchases"],
        "mean_churn_probability": customer_figures["mean_churn_probability"],
        "high_risk_customers": customer_figures["high_risk_customers"],
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
