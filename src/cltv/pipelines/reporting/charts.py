"""The report charts: each ``plot_*`` node turns report tables (or a run's evaluation) into a
Plotly figure; no Spark here."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cltv.pipelines.cltv.nodes import MODEL_LABELS, candidate_names


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
