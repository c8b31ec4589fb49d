"""The Databricks (Lakeview) dashboard, generated from the SQL files in ``dashboards/sql``.

``python -m cltv.lakeview`` writes ``dashboards/cltv_churn.lvdash.json``; a test regenerates it
and compares, so the dashboard never drifts from its queries. The queries name the Unity
Catalog tables without catalog or schema: the bundle's dashboard resource sets them
(``dataset_catalog`` / ``dataset_schema``), and locally the same names are Spark views.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = PROJECT_ROOT / "dashboards" / "sql"
DASHBOARD_FILE = PROJECT_ROOT / "dashboards" / "cltv_churn.lvdash.json"

DATASETS = {
    "kpis": "Headline KPIs",
    "revenue_by_month": "Revenue by month",
    "cohort_retention": "Cohort retention",
    "segments": "RFM segments",
    "churn_by_country": "Churn risk by country",
    "value_concentration": "Value concentration",
    "retention_targets": "Retention targets",
}

# (dataset, widget type, fields by encoding, title, width, height)
COUNTERS = [
    ("revenue", "Revenue"),
    ("customers", "Customers"),
    ("predicted_clv_total", "Predicted CLV"),
    ("mean_churn_probability", "Mean churn probability"),
    ("high_risk_customers", "High-risk customers"),
]
CHARTS = [
    ("revenue_by_month", "bar", {"x": "month", "y": "revenue"}, "Revenue by month", 6, 6),
    (
        "revenue_by_month",
        "line",
        {"x": "month", "y": "active_customers"},
        "Active customers by month",
        6,
        6,
    ),
    (
        "cohort_retention",
        "heatmap",
        {"x": "months_since", "y": "cohort", "color": "retention"},
        "Cohort retention",
        6,
        8,
    ),
    ("segments", "bar", {"x": "rfm_segment", "y": "customers"}, "Customers by RFM segment", 3, 8),
    (
        "segments",
        "bar",
        {"x": "rfm_segment", "y": "mean_churn_probability"},
        "Churn risk by RFM segment",
        3,
        8,
    ),
    (
        "churn_by_country",
        "bar",
        {"x": "country", "y": "mean_churn_probability"},
        "Churn risk by country",
        3,
        6,
    ),
    (
        "value_concentration",
        "bar",
        {"x": "group", "y": "clv_share"},
        "Share of predicted CLV held by the top customers",
        3,
        6,
    ),
]


def dataset_sql(name: str, sql_dir: Path = SQL_DIR) -> str:
    return (sql_dir / f"{name}.sql").read_text()


def _field(name: str) -> dict[str, str]:
    return {"name": name, "expression": f"`{name}`"}


def _widget(name: str, dataset: str, fields: list[str], spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "queries": [
            {
                "name": "main_query",
                "query": {
                    "datasetName": dataset,
                    "fields": [_field(f) for f in fields],
                    "disaggregated": True,
                },
            }
        ],
        "spec": spec,
    }


def build_dashboard(sql_dir: Path = SQL_DIR) -> dict[str, Any]:
    """The ``.lvdash.json`` document: datasets from the SQL files, one page of widgets."""
    layout = []
    for i, (field, title) in enumerate(COUNTERS):
        widget = _widget(
            f"kpi_{field}",
            "kpis",
            [field],
            {
                "version": 2,
                "widgetType": "counter",
                "encodings": {"value": {"fieldName": field, "displayName": title}},
                "frame": {"showTitle": True, "title": title},
            },
        )
        layout.append({"widget": widget, "position": {"x": i, "y": 0, "width": 1, "height": 3}})
    x, y = 0, 3
    for i, (dataset, kind, encodings, title, width, height) in enumerate(CHARTS):
        if x + width > 6:
            x, y = 0, y + height
        spec = {
            "version": 3,
            "widgetType": kind,
            "encodings": {
                role: {"fieldName": field, "displayName": field.replace("_", " ")}
                for role, field in encodings.items()
            },
            "frame": {"showTitle": True, "title": title},
        }
        layout.append(
            {
                "widget": _widget(f"chart_{i}_{dataset}", dataset, list(encodings.values()), spec),
                "position": {"x": x, "y": y, "width": width, "height": height},
            }
        )
        x += width
    columns = [
        "customer_id",
        "country",
        "rfm_segment",
        "churn_probability",
        "clv",
        "value_at_risk",
        "why_at_risk",
        "strongest_lever",
    ]
    table = _widget(
        "retention_targets",
        "retention_targets",
        columns,
        {
            "version": 1,
            "widgetType": "table",
            "encodings": {"columns": [{"fieldName": c, "displayName": c} for c in columns]},
            "frame": {"showTitle": True, "title": "Retention targets"},
        },
    )
    layout.append({"widget": table, "position": {"x": 0, "y": y + 8, "width": 6, "height": 10}})
    return {
        "datasets": [
            {
                "name": name,
                "displayName": title,
                "queryLines": dataset_sql(name, sql_dir).splitlines(keepends=True),
            }
            for name, title in DATASETS.items()
        ],
        "pages": [
            {
                "name": "customer_value_and_churn",
                "displayName": "Customer value and churn",
                "layout": layout,
            }
        ],
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cltv.lakeview", description=__doc__)
    parser.add_argument("--out", default=str(DASHBOARD_FILE))
    args = parser.parse_args(argv)
    Path(args.out).write_text(render(build_dashboard()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
