"""``reporting``: small aggregated tables → Plotly charts → one offline HTML dashboard.

Every node is named for what it makes (``kedro run --to-nodes build_dashboard``). The tables
that read the same rows come from one node and one Spark pass: the sales tables from
``purchase_days``, the customer tables from the reporting base (the three customer tables, one
row per customer)."""

from kedro.pipeline import Node, Pipeline

from cltv.pipelines.reporting.charts import (
    plot_churn_reasons,
    plot_churn_risk,
    plot_cohorts,
    plot_model_quality,
    plot_revenue,
    plot_segments,
    plot_value_concentration,
)
from cltv.pipelines.reporting.dashboard import build_dashboard
from cltv.pipelines.reporting.drift import drift_report
from cltv.pipelines.reporting.kpis import headline_kpis
from cltv.pipelines.reporting.tables import (
    retention_targets,
    summarise_customers,
    summarise_sales,
)


def create_pipeline(**kwargs) -> Pipeline:
    tables = [
        Node(
            summarise_sales,
            ["purchase_days", "params:reporting.cohort_months"],
            ["report_revenue_by_month", "report_cohort_retention", "sales_figures"],
            name="report_sales_tables",
        ),
        Node(
            summarise_customers,
            [
                "customer_features_current",
                "churn_predictions",
                "customer_cltv",
                "params:reporting.top_countries",
                "params:cltv.valuation.value_tiers",
            ],
            [
                "report_segments",
                "report_churn_by_country",
                "report_value_concentration",
                "report_clv_distribution",
                "report_value_tiers",
                "customer_figures",
            ],
            name="report_customer_tables",
        ),
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
            name="report_retention_targets",
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
                "sales_figures",
                "customer_figures",
                "analysis_period",
                "churn_metrics",
                "cltv_validation",
                "cltv_model_fit",
                "cltv_total_value",
                "model_promotion",
            ],
            "report_kpis",
            name="report_headline_kpis",
        ),
    ]
    charts = [
        Node(plot_revenue, "report_revenue_by_month", "chart_revenue", name="plot_revenue"),
        Node(plot_cohorts, "report_cohort_retention", "chart_cohorts", name="plot_cohorts"),
        Node(plot_segments, "report_segments", "chart_segments", name="plot_segments"),
        Node(
            plot_churn_risk,
            ["report_segments", "report_churn_by_country"],
            "chart_churn_risk",
            name="plot_churn_risk",
        ),
        Node(
            plot_value_concentration,
            ["report_value_concentration", "report_clv_distribution"],
            "chart_value",
            name="plot_value_concentration",
        ),
        Node(
            plot_model_quality,
            ["churn_evaluation", "cltv_validation", "model_promotion"],
            "chart_model_quality",
            name="plot_model_quality",
        ),
        Node(
            plot_churn_reasons,
            "churn_reason_importance",
            "chart_churn_reasons",
            name="plot_churn_reasons",
        ),
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
