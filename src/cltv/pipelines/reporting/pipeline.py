"""``reporting``: small aggregated tables → Plotly charts → one offline HTML dashboard."""

from kedro.pipeline import Node, Pipeline

from cltv.pipelines.reporting.nodes import (
    build_dashboard,
    churn_risk_by_country,
    clv_distribution,
    cohort_retention,
    drift_report,
    headline_kpis,
    plot_churn_reasons,
    plot_churn_risk,
    plot_cohorts,
    plot_model_quality,
    plot_revenue,
    plot_segments,
    plot_value_concentration,
    retention_targets,
    revenue_by_month,
    segment_summary,
    value_concentration,
    value_tier_table,
)


def create_pipeline(**kwargs) -> Pipeline:
    tables = [
        Node(revenue_by_month, "purchase_days", "report_revenue_by_month"),
        Node(
            cohort_retention,
            ["purchase_days", "params:reporting.cohort_months"],
            "report_cohort_retention",
        ),
        Node(
            segment_summary,
            ["customer_features_current", "churn_predictions", "customer_cltv"],
            "report_segments",
        ),
        Node(
            churn_risk_by_country,
            ["churn_predictions", "params:reporting.top_countries"],
            "report_churn_by_country",
        ),
        Node(
            value_concentration,
            ["customer_cltv", "customer_features_current", "params:cltv.valuation.value_tiers"],
            "report_value_concentration",
        ),
        Node(clv_distribution, "customer_cltv", "report_clv_distribution"),
        Node(value_tier_table, "customer_cltv", "report_value_tiers"),
        Node(
            retention_targets,
            [
                "churn_predictions",
                "customer_cltv",
                "params:reporting.targets.min_churn_probability",
                "params:reporting.targets.limit",
                "params:reporting.targets.rank_by",
            ],
            "report_retention_targets",
        ),
        Node(
            drift_report,
            [
                "customer_features_current",
                "previous_customer_features_current",
                "churn_predictions",
                "previous_churn_predictions",
                "customer_cltv",
                "previous_customer_cltv",
                "params:reporting.drift",
                "model_versions",
            ],
            ["drift_report", "drift_mlflow_metrics"],
            name="compare_with_previous_run",
        ),
        Node(
            headline_kpis,
            [
                "purchase_days",
                "customer_cltv",
                "churn_predictions",
                "analysis_period",
                "churn_metrics",
                "cltv_validation",
                "cltv_model_fit",
                "cltv_total_value",
                "model_promotion",
            ],
            "report_kpis",
        ),
    ]
    charts = [
        Node(plot_revenue, "report_revenue_by_month", "chart_revenue"),
        Node(plot_cohorts, "report_cohort_retention", "chart_cohorts"),
        Node(plot_segments, "report_segments", "chart_segments"),
        Node(plot_churn_risk, ["report_segments", "report_churn_by_country"], "chart_churn_risk"),
        Node(
            plot_value_concentration,
            ["report_value_concentration", "report_clv_distribution"],
            "chart_value",
        ),
        Node(
            plot_model_quality,
            ["churn_evaluation", "cltv_validation", "model_promotion"],
            "chart_model_quality",
        ),
        Node(plot_churn_reasons, "churn_reason_importance", "chart_churn_reasons"),
    ]
    dashboard = Node(
        build_dashboard,
        [
            "report_kpis",
            "report_retention_targets",
            "report_value_tiers",
            "drift_report",
            "chart_revenue",
            "chart_cohorts",
            "chart_segments",
            "chart_churn_risk",
            "chart_value",
            "chart_model_quality",
            "chart_churn_reasons",
        ],
        "dashboard_html",
        name="build_dashboard",
    )
    return Pipeline([*tables, *charts, dashboard])
