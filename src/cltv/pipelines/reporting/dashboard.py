"""The dashboard: one self-contained HTML page (plotly.js inlined, it opens offline) of the
KPI cards, the charts, the value tiers, the drift since the previous run, the CLV purchase
models and the retention target list."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from cltv.pipelines.reporting.drift import changed_shares


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


def _versions_line(drift: dict[str, Any]) -> str:
    """Which registered versions wrote the tables, e.g. "tables by cltv_churn version 2 and
    cltv_value version 2 (training)"."""
    models = drift.get("models") or {}
    if not models:
        return "registered model versions not recorded"
    listed = " and ".join(f"{name} version {entry['version']}" for name, entry in models.items())
    return f"tables by {listed} ({drift.get('produced_by', 'training')})"


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
            for label, share in changed_shares(entry)
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
