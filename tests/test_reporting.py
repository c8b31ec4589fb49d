"""reporting: the dashboard draws in a real browser offline; the Databricks SQL parses and runs."""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import re
import subprocess
import sys

import mlflow
import pandas as pd
import plotly.io as pio
import pytest
import sqlglot
from deltalake import DeltaTable
from pyspark.sql import functions as F

from cltv import lakeview
from cltv.datasets import SparkDeltaTableDataset
from cltv.pipelines.data_processing.nodes import summarise_purchase_days
from cltv.pipelines.reporting.charts import plot_model_quality
from cltv.pipelines.reporting.dashboard import build_dashboard
from cltv.pipelines.reporting.kpis import headline_kpis
from cltv.pipelines.reporting.tables import (
    retention_targets,
    summarise_customers,
    summarise_sales,
)

CHARTS = ("revenue", "cohorts", "segments", "churn_risk", "churn_reasons", "value", "model_quality")
GOLD_TABLES = {
    "transactions_clean": "02_intermediate",
    "customer_features_current": "04_feature",
    "churn_predictions": "07_model_output",
    "customer_cltv": "07_model_output",
}


def _chromium(project_root) -> str:
    """The browser `make test` found or installed; looked up the same way without make."""
    if os.environ.get("CLTV_BROWSER"):
        return os.environ["CLTV_BROWSER"]
    lookup = subprocess.run(
        ["sh", str(project_root / "tools/ensure-browser.sh"), "--no-install"],
        capture_output=True,
        text=True,
        check=False,
    )
    if lookup.returncode != 0:
        pytest.fail(lookup.stderr.strip())
    return lookup.stdout.strip()


def test_dashboard_draws_every_chart_offline(default_run, tmp_path, project_root):
    page = default_run.project / "data/08_reporting/dashboard.html"
    text = page.read_text()
    assert "<script src=" not in text and "cdn.plot.ly" not in text.split("</script>", 1)[1]
    command = [
        _chromium(project_root),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        # networking off: nothing may load from anywhere but the file itself
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--disable-background-networking",
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=15000",
        "--window-size=1400,4200",
    ]
    dom = subprocess.run(
        [*command, "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for chart in CHARTS:
        # plotly.js replaces each chart's empty div with SVG layers once it has drawn
        block = re.search(rf'<div id="{chart}"[^>]*>(.*?)</section>', dom, re.S)
        assert block and 'class="main-svg"' in block.group(1), chart
    # the retention target list as the browser shows it: the first 25 of the rule's list
    targets = _targets_by_the_rule(default_run.project)
    shown = re.search(r"<h2>Retention targets.*?</table>", dom, re.S).group(0)
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>", shown)
    assert rows == targets["customer_id"].head(25).tolist()
    # each target's first churn reason and strongest lever in words, the last two columns
    assert "<th>why at risk</th>\n      <th>strongest lever</th>" in shown
    advice = re.findall(r"<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*</tr>", shown)
    reasons = [html.unescape(r) for r, _ in advice]
    expected = targets["churn_reason_text"].fillna("no single risk stands out").head(25)
    assert reasons == expected.tolist()
    levers = [html.unescape(lever) for _, lever in advice]
    assert levers == targets["retention_lever_text"].fillna("").head(25).tolist()
    assert all(reasons)
    # the global view: the inputs that move the probability most, largest at the top
    importance = json.loads(
        (default_run.project / "data/08_reporting/churn_reason_importance.json").read_text()
    )
    assert importance["observed"] and importance["features"]
    chart = re.search(r'<div id="churn_reasons"[^>]*>(.*?)</section>', dom, re.S).group(1)
    labels = [html.unescape(t) for t in re.findall(r'class="ytick"[^>]*>.*?>([^<]+)<', chart)]
    top = [f["feature"] for f in importance["features"][:15]]
    assert labels and set(labels) == set(top)
    screenshot = tmp_path / "dashboard.png"
    subprocess.run(
        [*command, f"--screenshot={screenshot}", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert screenshot.stat().st_size > 100_000  # a page of charts, not a blank one


def test_charts_are_plotly_datasets_and_mlflow_artifacts(default_run):
    for chart in CHARTS:
        figure = pio.read_json(default_run.project / f"data/08_reporting/charts/{chart}.json")
        assert figure.data, chart
    mlflow.set_tracking_uri(f"sqlite:///{default_run.project / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["cltv-churn"], order_by=["start_time ASC"]).iloc[0]
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "charts")}
    assert logged == {f"charts/{chart}.json" for chart in CHARTS}
    assert "dashboard.html" in {a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id)}


def test_the_dashboard_shows_total_clv_with_its_interval_and_tier_widths(default_run):
    project = default_run.project
    total = json.loads((project / "data/07_model_output/cltv_total_value.json").read_text())
    kpis = json.loads((project / "data/08_reporting/kpis.json").read_text())
    assert kpis["predicted_clv_total"] == pytest.approx(total["clv"])
    assert kpis["predicted_clv_total_interval"] == [total["clv_lower"], total["clv_upper"], 0.8]
    assert total["clv_lower"] < total["clv"] < total["clv_upper"]
    dashboard = (project / "data/08_reporting/dashboard.html").read_text()
    assert (
        f'<div class="interval">80% interval: {total["clv_lower"]:,.0f} – '
        f"{total['clv_upper']:,.0f}</div>"
    ) in dashboard
    tiers = pd.read_csv(project / "data/08_reporting/tables/value_tiers.csv")
    assert list(tiers["value_tier"]) == ["top_1pct", "top_5pct", "top_20pct", "rest"]
    assert tiers["clv_total"].sum() == pytest.approx(total["clv"])
    assert (tiers["interval_width_mean"] > 0).all()
    assert "<th>mean interval width</th>" in dashboard
    for width in tiers["interval_width_mean"]:
        assert f"<td>{width:,.2f}</td>" in dashboard


CLTV_SCHEMA = (
    "customer_id string, clv_rank int, value_tier string, clv double, clv_lower double, "
    "clv_upper double, frequency int, expected_purchases double"
)
FEATURES_SCHEMA = "customer_id string, rfm_segment string, monetary_total double"
CHURN_SCHEMA = "customer_id string, churn_probability double, risk_band string, country string"
TIERS = [{"name": "top_1pct", "share": 0.01}, {"name": "top_20pct", "share": 0.2}]
CUSTOMER_TABLES = ("segments", "countries", "concentration", "distribution", "tiers", "figures")


def _customer_tables(spark, features, churn, cltv, top_countries=10, bins=20):
    """summarise_customers on hand-made rows, its outputs by name."""
    frames = [
        spark.createDataFrame(rows, schema)
        for rows, schema in (
            (features, FEATURES_SCHEMA),
            (churn, CHURN_SCHEMA),
            (cltv, CLTV_SCHEMA),
        )
    ]
    made = summarise_customers(*frames, top_countries, TIERS, bins)
    return dict(zip(CUSTOMER_TABLES, made, strict=True))


def test_value_tiers_by_hand(spark):
    cltv = [
        ("a", 1, "top", 100.0, 80.0, 130.0, 2, 1.0),
        ("b", 2, "top", 50.0, 45.0, 55.0, 0, 0.5),
        ("c", 3, "rest", 10.0, 9.0, 12.0, 1, 0.2),
        ("d", 4, "rest", 0.0, 0.0, 0.0, 0, 0.0),
    ]
    features = [("a", "Champions", 10.0), ("b", "Lost", 5.0), ("c", "Lost", 1.0)]
    churn = [("a", 0.1, "low", "UK")]
    tables = _customer_tables(spark, features, churn, cltv, bins=2)
    table = tables["tiers"].set_index("value_tier")
    assert list(table.index) == ["top", "rest"]
    top, rest = table.loc["top"], table.loc["rest"]
    assert (top["customers"], top["clv_total"], top["clv_mean"]) == (2, 150.0, 75.0)
    assert (top["clv_lower_mean"], top["clv_upper_mean"]) == (62.5, 92.5)
    assert top["interval_width_mean"] == 30.0  # (50 + 10) / 2
    assert top["interval_width_share"] == pytest.approx(60.0 / 150.0)
    assert rest["interval_width_mean"] == 1.5 and rest["interval_width_share"] == 0.3
    # the top 1% and 20% of 4 customers: ranks up to 1 and 1 (ceil 0.04, 0.8); the revenue
    # so far of the valued customers (d has no features: none)
    concentration = tables["concentration"]
    assert concentration["customers"].tolist() == [1, 1]
    assert concentration["clv_share"].tolist() == [100.0 / 160.0] * 2
    assert concentration["revenue_share"].tolist() == [10.0 / 16.0] * 2
    # 2 bins up to the 99th percentile of CLV (100): 0-50, 50-100, and 100+ above
    distribution = tables["distribution"]
    assert distribution[["bin", "customers"]].values.tolist() == [[0, 2], [1, 1], [2, 1]]
    assert distribution["label"].tolist() == ["0–50", "50–100", "100+"]
    figures = tables["figures"]
    assert figures["predicted_clv_total"] == 160.0 and figures["repeat_customer_rate"] == 0.5
    assert figures["predicted_purchases"] == pytest.approx(1.7)


def test_retention_targets_by_hand_and_ranked_by_the_lower_bound(spark):
    churn = spark.createDataFrame(
        [
            ("solid", "UK", "At Risk", 0.5, "medium", "one order only", "12 orders so far"),
            ("shaky", "UK", "At Risk", 0.5, "medium", "no purchase for 90 days", None),
            ("likely", "FR", "Hibernating", 0.9, "high", None, "last purchase today"),
            ("loyal", "UK", "Champions", 0.1, "low", None, None),  # below 0.4: not a target
            ("small", "DE", "Lost", 0.95, "high", None, None),  # "rest": not a target
        ],
        "customer_id string, country string, rfm_segment string, churn_probability double, "
        "risk_band string, churn_reason_text string, retention_lever_text string",
    )
    cltv = spark.createDataFrame(
        [
            ("solid", 1000.0, 900.0, 1100.0, "top_20pct", 0.6),
            ("shaky", 1100.0, 300.0, 2500.0, "top_20pct", 0.5),
            ("likely", 500.0, 450.0, 560.0, "top_20pct", 0.2),
            ("loyal", 5000.0, 4800.0, 5200.0, "top_1pct", 0.99),
            ("small", 5.0, 4.0, 6.0, "rest", 0.1),
        ],
        "customer_id string, clv double, clv_lower double, clv_upper double, value_tier string, "
        "p_alive double",
    )
    expected = retention_targets(churn, cltv, 0.4, 200)
    # value at risk: shaky 550, solid 500, likely 450
    assert list(expected["customer_id"]) == ["shaky", "solid", "likely"]
    assert list(expected["value_at_risk"]) == [550.0, 500.0, 450.0]
    # each with its first churn reason and lever in words, as scored, last; a target
    # without a reason in words says so
    assert list(expected.columns[-2:]) == ["churn_reason_text", "retention_lever_text"]
    assert list(expected["churn_reason_text"]) == [
        "no purchase for 90 days",
        "one order only",
        "no single risk stands out",
    ]
    assert list(expected["retention_lever_text"]) == [
        None,
        "12 orders so far",
        "last purchase today",
    ]
    lower = retention_targets(churn, cltv, 0.4, 200, rank_by="value_at_risk_lower")
    # its lower bound: solid 450, likely 405, shaky 150
    assert list(lower["customer_id"]) == ["solid", "likely", "shaky"]
    assert list(lower["value_at_risk_lower"]) == [450.0, 405.0, 150.0]
    assert list(retention_targets(churn, cltv, 0.4, 2)["customer_id"]) == ["shaky", "solid"]
    with pytest.raises(ValueError, match=r"reporting\.targets\.rank_by is 'clv'"):
        retention_targets(churn, cltv, 0.4, 200, rank_by="clv")


def _delta(project, name) -> pd.DataFrame:
    return DeltaTable(str(project / "data" / GOLD_TABLES[name] / name)).to_pandas()


def _targets_by_the_rule(project) -> pd.DataFrame:
    """The README's rule in pandas, from the run's tables: the top 20% of customers by CLV
    (ranked here, not read from value_tier) whose churn probability is at least 0.4, by CLV
    times that probability, at most 200."""
    cltv = _delta(project, "customer_cltv").sort_values(
        ["clv", "customer_id"], ascending=[False, True]
    )
    top = cltv.head(math.ceil(0.2 * len(cltv)))
    churn = _delta(project, "churn_predictions")
    at_risk = churn[churn["churn_probability"] >= 0.4].merge(top, on="customer_id")
    at_risk["value_at_risk"] = at_risk["clv"] * at_risk["churn_probability"]
    ordered = at_risk.sort_values(["value_at_risk", "customer_id"], ascending=[False, True])
    return ordered.head(200).reset_index(drop=True)


def test_the_retention_target_list_follows_its_rule(default_run):
    expected = _targets_by_the_rule(default_run.project)
    written = pd.read_csv(default_run.project / "data/08_reporting/tables/retention_targets.csv")
    assert 25 < len(expected) <= 200
    assert written["customer_id"].astype(str).tolist() == expected["customer_id"].tolist()
    assert written["value_at_risk"].to_numpy() == pytest.approx(expected["value_at_risk"])


def test_the_headline_kpis_recomputed_from_the_tables(default_run):
    """kpis.json against pandas over the run's Delta tables (not the Lakeview SQL): sales are
    the clean lines not returned in full; high risk is a churn probability of 0.7 or more."""
    project = default_run.project
    kpis = json.loads((project / "data/08_reporting/kpis.json").read_text())
    clean = _delta(project, "transactions_clean")
    sold = clean[clean["quantity"] > clean["returned_quantity"]]
    assert len(sold) < len(clean)  # the run's input has returns in full
    assert kpis["revenue"] == pytest.approx(sold["revenue"].sum(), rel=1e-12)
    assert kpis["customers"] == sold["customer_id"].nunique()
    assert kpis["invoices"] == sold["invoice"].nunique()
    cltv = _delta(project, "customer_cltv")
    assert kpis["repeat_customer_rate"] == pytest.approx((cltv["frequency"] > 0).mean())
    assert kpis["predicted_clv_total"] == pytest.approx(cltv["clv"].sum(), rel=1e-12)
    assert kpis["predicted_purchases"] == pytest.approx(cltv["expected_purchases"].sum())
    churn = _delta(project, "churn_predictions")
    assert kpis["mean_churn_probability"] == pytest.approx(churn["churn_probability"].mean())
    assert kpis["high_risk_customers"] == (churn["churn_probability"] >= 0.7).sum() > 0


def _purchase_days(spark, rows):
    """The purchase days of hand-made clean lines (one product, one country)."""
    lines = spark.createDataFrame(
        rows,
        "customer_id string, invoice string, invoice_date timestamp, quantity int, "
        "returned_quantity int, revenue double",
    )
    return summarise_purchase_days(
        lines.withColumn("stock_code", F.lit("S")).withColumn("country", F.lit("UK"))
    )


def test_revenue_by_month_and_cohort_retention_by_hand(spark):
    day = dt.datetime.fromisoformat
    days = _purchase_days(
        spark,
        [
            ("a", "1", day("2011-01-05 10:00"), 2, 0, 10.0),
            ("a", "1", day("2011-01-05 10:00"), 1, 0, 5.0),
            ("b", "2", day("2011-01-20 09:00"), 4, 0, 40.0),
            ("a", "3", day("2011-03-02 12:00"), 3, 1, 20.0),  # partly returned: still a sale
            ("c", "4", day("2011-02-10 08:00"), 1, 0, 7.0),
            ("c", "5", day("2011-03-15 08:00"), 1, 0, 8.0),
            ("b", "6", day("2011-02-25 08:00"), 5, 5, 0.0),  # returned in full: no sale
        ],
    )
    revenue, cohorts, sales = summarise_sales(days, 12)
    revenue = revenue.set_index("month")
    assert revenue["revenue"].to_dict() == {"2011-01": 55.0, "2011-02": 7.0, "2011-03": 28.0}
    assert revenue["invoices"].to_dict() == {"2011-01": 2, "2011-02": 1, "2011-03": 2}
    assert revenue["active_customers"].to_dict() == {"2011-01": 2, "2011-02": 1, "2011-03": 2}
    # a, b and c bought; the invoices of days with a sale
    assert sales == {"revenue": 90.0, "customers": 3, "invoices": 5}
    found = {
        (row.cohort, row.months_since): (row.customers, row.retention)
        for row in cohorts.itertuples()
    }
    # January: a and b (b's February line was returned whole); a buys again in March
    # February: c, who buys again in March; nothing beyond max_months
    assert found == {
        ("2011-01", 0): (2, 1.0),
        ("2011-01", 2): (1, 0.5),
        ("2011-02", 0): (1, 1.0),
        ("2011-02", 1): (1, 1.0),
    }
    assert set(summarise_sales(days, 1)[1]["months_since"]) == {0, 1}


def test_segments_and_churn_by_country_by_hand(spark):
    features = [("a", "Champions", 100.0), ("b", "Champions", 50.0), ("c", "Lost", 10.0)]
    churn = [("a", 0.1, "low", "UK"), ("b", 0.8, "high", "UK"), ("c", 0.5, "medium", "FR")]
    # c has no CLV row: counted, not valued
    cltv = [("a", 1, "top", 300.0, 0.0, 0.0, 1, 1.0), ("b", 2, "rest", 100.0, 0.0, 0.0, 0, 0.0)]
    tables = _customer_tables(spark, features, churn, cltv, top_countries=1)
    segments = tables["segments"].set_index("rfm_segment")
    assert list(segments.index) == ["Champions", "Lost"]  # by revenue
    champions, lost = segments.loc["Champions"], segments.loc["Lost"]
    assert (champions["customers"], champions["revenue"], champions["predicted_clv"]) == (
        2,
        150.0,
        400.0,
    )
    assert champions["mean_clv"] == 200.0
    assert champions["mean_churn_probability"] == pytest.approx(0.45)
    assert champions["high_risk_share"] == 0.5
    assert lost["customers"] == 1 and pd.isna(lost["predicted_clv"])
    assert lost["high_risk_share"] == 0.0
    assert tables["figures"]["mean_churn_probability"] == pytest.approx(1.4 / 3)
    assert tables["figures"]["high_risk_customers"] == 1
    assert tables["countries"].to_dict("records") == [
        {
            "country": "UK",
            "customers": 2,
            "mean_churn_probability": pytest.approx(0.45),
            "high_risk_share": 0.5,
        }
    ]


def test_lakeview_dashboard_is_generated_from_the_sql_files(project_root):
    committed = (project_root / "dashboards" / "cltv_churn.lvdash.json").read_text()
    assert committed == lakeview.render(lakeview.build_dashboard())
    document = json.loads(committed)
    names = {d["name"] for d in document["datasets"]}
    used = {
        q["query"]["datasetName"]
        for item in document["pages"][0]["layout"]
        for q in item["widget"]["queries"]
    }
    assert used <= names == set(lakeview.DATASETS)


def test_dashboard_compares_every_purchase_model_and_the_churn_head_to_head(default_run):
    reporting = default_run.project / "data" / "08_reporting"
    validation = json.loads((reporting / "cltv_validation.json").read_text())
    kpis = json.loads((reporting / "kpis.json").read_text())
    dashboard = (reporting / "dashboard.html").read_text()
    labels = {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD", "pnbd": "Pareto/NBD", "naive": "naive"}
    rows = {row["model"]: row for row in kpis["cltv_candidates"]}
    assert list(rows) == list(labels.values())
    chosen = validation["selection"]["chosen"]
    for name, label in labels.items():
        row = rows[label]
        assert row["holdout MAE"] == validation[f"mae_{name}"]
        assert row["predicted purchases"] == validation[f"total_{name}"]
        assert row["Gini"] == validation[f"gini_{name}"]
        assert row["top 10% revenue share"] == validation[f"top_10pct_{name}"]
        assert row["values customers"] == ("yes" if name == chosen else "")
        assert row["80% interval coverage"] == validation.get(f"coverage_{name}")
        assert f"<td>{label}</td>" in dashboard
        assert f"{validation[f'mae_{name}']:,.4f}" in dashboard
    assert "<h2>CLV purchase models on the holdout</h2>" in dashboard
    assert "<th>80% interval coverage</th>" in dashboard
    assert all(0.5 < validation[f"coverage_{name}"] < 1 for name in ("bgnbd", "mbgnbd", "pnbd"))
    assert f"{validation['coverage_bgnbd']:,.4f}" in dashboard
    head_to_head = json.loads((reporting / "churn_metrics.json").read_text())["head_to_head"]
    assert kpis["churn_head_to_head"] == head_to_head["verdict"]
    assert f'<p class="note">Churn: {html.escape(head_to_head["verdict"])}</p>' in dashboard


def test_dashboard_queries_parse_as_databricks_sql_and_run_on_local_tables(spark, default_run):
    for table, layer in GOLD_TABLES.items():
        path = default_run.project / "data" / layer / table
        SparkDeltaTableDataset(filepath=str(path)).load().createOrReplaceTempView(table)
    results = {}
    for name in lakeview.DATASETS:
        sql = lakeview.dataset_sql(name)
        sqlglot.parse_one(sql, read="databricks")  # raises on anything Databricks SQL rejects
        results[name] = spark.sql(sql).toPandas()
        assert len(results[name]) > 0, name
    # the same numbers as the Kedro reporting tables
    tables = default_run.project / "data/08_reporting/tables"
    expected = pd.read_csv(tables / "revenue_by_month.csv", dtype={"month": str})
    pd.testing.assert_frame_equal(
        results["revenue_by_month"][list(expected.columns)],
        expected,
        check_dtype=False,
    )
    concentration = pd.read_csv(tables / "value_concentration.csv")
    assert results["value_concentration"]["clv_share"].to_numpy() == pytest.approx(
        concentration["clv_share"].to_numpy()
    )
    kpis = json.loads((default_run.project / "data/08_reporting/kpis.json").read_text())
    assert results["kpis"]["customers"][0] == kpis["customers"]
    assert results["kpis"]["revenue"][0] == pytest.approx(kpis["revenue"])


def test_kedro_viz_build_shows_pipelines_charts_and_table_previews(default_run):
    subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build", "--include-previews"],
        cwd=default_run.project,
        check=True,
        capture_output=True,
        timeout=300,
    )
    api = default_run.project / "build" / "api"
    main = json.loads((api / "main").read_text())
    assert {"data_processing", "churn_modeling", "cltv", "reporting"} <= {
        p["id"] for p in main["pipelines"]
    }
    nodes = {n["name"]: n for n in main["nodes"] if n["type"] == "data"}
    assert nodes["customer_cltv"]["layer"] == "model_output"

    def preview(name):
        return json.loads((api / "nodes" / nodes[name]["id"]).read_text())

    for table in (
        "transactions_clean",
        "transactions_quarantine",
        "customer_summary",
        "customer_features",
        "churn_predictions",
        "customer_cltv",
    ):
        shown = preview(table)
        assert shown["preview_type"] == "TablePreview", table
        assert shown["preview"]["data"], table
    assert preview("chart_revenue")["preview_type"] == "PlotlyPreview"


# ------------------------------------------------------------------ one model's numbers on the page
# this run's models (the challengers): what churn_metrics, churn_evaluation, cltv_validation and
# cltv_model_fit describe
THIS_RUNS_CHURN = {
    "version": 5,
    "score": 0.70,
    "flavor": "sklearn",
    "settings": {"churn_modeling.threshold": {"rule": "max_youden"}},
    "model": "xgboost_with_btyd",
    "threshold": {"rule": "max_youden", "value": 0.42},
    "pr_auc": 0.70,
    "roc_auc": 0.81,
}
THIS_RUNS_CLV = {"version": 7, "score": 0.55, "purchase_model": "bgnbd", "settings": {}}
THIS_RUNS_NOTE = "BG/NBD: a → 0, no dropout seen."
CHAMPION_NOTE = "Pareto/NBD: s at its upper bound."


def _decision(name, challenger, champion, promoted, outcome, reason):
    return {
        "registered_model": name,
        "alias": "champion",
        "metric": "pr_auc" if name == "cltv_churn" else "holdout_revenue_top_20pct",
        "min_gain": 0.005,
        "challenger": challenger,
        "champion": champion,
        "promoted": promoted,
        "outcome": outcome,
        "reason": reason,
    }


PROMOTED = {
    "cltv_churn": _decision(
        "cltv_churn",
        THIS_RUNS_CHURN,
        {
            "version": 4,
            "flavor": "sklearn",
            "settings": {"churn_modeling.threshold": {"rule": "fixed"}},
            "model": "logistic_regression",
            "threshold": {"rule": "fixed", "value": 0.5},
        },  # another contract: not scored on this run's test customers
        True,
        "settings changed",
        "settings changed: threshold fixed → max_youden",
    ),
    "cltv_value": _decision(
        "cltv_value", THIS_RUNS_CLV, None, True, "first", "no model had the alias 'champion' yet"
    ),
}
LOST = {
    "cltv_churn": _decision(
        "cltv_churn",
        THIS_RUNS_CHURN,
        {
            "version": 4,
            "flavor": "sklearn",
            "settings": THIS_RUNS_CHURN["settings"],
            "model": "logistic_regression",
            "threshold": {"rule": "fixed", "value": 0.5},
            "score": 0.72,
            "pr_auc": 0.72,
            "roc_auc": 0.83,
        },
        False,
        "worse",
        "pr_auc 0.7000 vs the champion's 0.7200 (version 4): a difference of -0.0200, below the "
        "0.005 required",
    ),
    "cltv_value": _decision(
        "cltv_value",
        THIS_RUNS_CLV,
        {
            "version": 6,
            "purchase_model": "pnbd",
            "settings": {},
            "score": 0.56,
            "fit_notes": [CHAMPION_NOTE],
        },
        False,
        "tie",
        "a tie, holdout_revenue_top_20pct 0.5500 vs the champion's 0.5600 (version 6): a "
        "difference of -0.0100, below the 0.02 required: the champion keeps the alias",
    ),
}


@pytest.fixture(scope="module")
def kpi_inputs(spark):
    """Two customers: a (two purchase days) and b (one, and a day returned in full)."""
    day = dt.datetime.fromisoformat
    days = _purchase_days(
        spark,
        [
            ("a", "1", day("2011-01-05 10:00"), 2, 0, 10.0),
            ("a", "2", day("2011-02-07 10:00"), 1, 0, 5.0),
            ("b", "3", day("2011-01-20 09:00"), 4, 0, 40.0),
            ("b", "4", day("2011-02-25 08:00"), 5, 5, 0.0),  # returned in full: no sale
        ],
    )
    customers = _customer_tables(
        spark,
        [("a", "Champions", 15.0), ("b", "Lost", 40.0)],
        [("a", 0.2, "low", "UK"), ("b", 0.8, "high", "UK")],
        [("a", 1, "top", 100.0, 0.0, 0.0, 1, 1.5), ("b", 2, "rest", 50.0, 0.0, 0.0, 0, 0.5)],
    )
    validation = {
        "candidates": ["bgnbd"],
        "selection": {"chosen": "bgnbd", "naive_wins_on": ["MAE"]},
        "verdict": "The naive baseline beats BG/NBD on MAE.",
        "predictive_interval": {"level": 0.8},
        "total_actual": 3.0,
        **{f"{m}_bgnbd": v for m, v in (("mae", 0.4), ("rmse", 0.5), ("total", 2.5))},
        **{f"{m}_naive": v for m, v in (("mae", 0.3), ("rmse", 0.6), ("total", 2.0))},
    }
    return {
        "sales": summarise_sales(days, 12)[2],
        "customer_figures": customers["figures"],
        "analysis_period": {
            "first_transaction_date": "2011-01-05",
            "observation_end": "2011-03-31",
        },
        "churn_metrics": {  # this run's model on this run's test customers
            "model": "xgboost_with_btyd",
            "roc_auc": 0.81,
            "pr_auc": 0.70,
            "head_to_head": {"verdict": "The classifier ranks churners better."},
        },
        "cltv_validation": validation,
        "cltv_model_fit": {  # this run's fit
            "purchase_model": "bgnbd",
            "bgnbd": {"note": THIS_RUNS_NOTE},
            "gamma_gamma": {"note": ""},
        },
        "cltv_total_value": {"clv_lower": 120.0, "clv_upper": 180.0, "interval": 0.8},
    }


# what the tables say, whoever's model wrote them
TABLE_KPIS = {
    "period": "2011-01-05 – 2011-03-31",
    "revenue": 55.0,
    "customers": 2,
    "invoices": 3,
    "repeat_customer_rate": 0.5,
    "predicted_clv_total": 150.0,
    "predicted_clv_total_interval": [120.0, 180.0, 0.8],
    "predicted_purchases": 2.0,
    "mean_churn_probability": 0.5,
    "high_risk_customers": 1,
    "cltv_mae_bgnbd": 0.4,
    "cltv_mae_naive": 0.3,
}
MODEL_KEYS = (
    "churn_model",
    "churn_model_version",
    "churn_roc_auc",
    "churn_pr_auc",
    "churn_threshold",
    "churn_threshold_rule",
    "cltv_purchase_model",
    "cltv_model_version",
    "challengers",
    "model_decisions",
    "churn_head_to_head",
    "cltv_model_notes",
)


def _page(kpis, model_quality=None) -> str:
    figure = model_quality or pio.from_json('{"data": [], "layout": {}}')
    drift = {"compared": False, "psi_warning": 0.2, "models": {}, "produced_by": "training"}
    return build_dashboard(
        kpis,
        pd.DataFrame({"customer_id": ["a"], "churn_reason_text": ["one order only"]}),
        pd.DataFrame({"value_tier": ["top_1pct"], "clv_total": [150.0]}),
        drift,
        *[figure] * 7,
    )


def _card(label, value, challenger=None) -> str:
    line = (
        ""
        if challenger is None
        else f'<div class="challenger">this run\'s challenger, version {challenger}</div>'
    )
    return f'<div class="label">{label}</div><div class="value">{value}</div>{line}</div>'


def test_a_promoted_run_shows_its_own_model_as_production(kpi_inputs):
    kpis = headline_kpis(**kpi_inputs, model_promotion=PROMOTED)
    assert {key: kpis[key] for key in TABLE_KPIS} == TABLE_KPIS
    assert {key: kpis[key] for key in MODEL_KEYS} == {
        "churn_model": "xgboost_with_btyd",
        "churn_model_version": 5,
        "churn_roc_auc": 0.81,
        "churn_pr_auc": 0.70,
        "churn_threshold": 0.42,  # this run's, which scored the table; not the champion's 0.5
        "churn_threshold_rule": "max_youden",
        "cltv_purchase_model": "BG/NBD",
        "cltv_model_version": 7,
        "challengers": {},
        "model_decisions": "",
        "churn_head_to_head": "The classifier ranks churners better.",
        "cltv_model_notes": f"{THIS_RUNS_NOTE} The naive baseline beats BG/NBD on MAE.",
    }
    assert [row["values customers"] for row in kpis["cltv_candidates"]] == ["yes", ""]
    page = _page(kpis)
    assert (
        "churn model: xgboost_with_btyd (version 5, threshold 0.4200 by max_youden); "
        "CLV purchase model: BG/NBD (version 7)"
    ) in page
    assert _card("Churn ROC-AUC (test)", "0.810") in page
    assert _card("Churn threshold (predicted_churn)", "0.420") in page
    assert 'class="challenger"' not in page and "Champion / challenger" not in page


def test_a_run_whose_models_lost_shows_the_champions_and_its_own_beside_them(kpi_inputs):
    kpis = headline_kpis(**kpi_inputs, model_promotion=LOST)
    assert {key: kpis[key] for key in TABLE_KPIS} == TABLE_KPIS
    challenger = "this run's challenger, cltv_churn version 5, not in production"
    candidates = "This run's candidates (this run's challenger, cltv_value version 7, not in "
    assert {key: kpis[key] for key in MODEL_KEYS} == {
        # the champions wrote the tables: theirs are the production figures
        "churn_model": "logistic_regression",
        "churn_model_version": 4,
        "churn_roc_auc": 0.83,
        "churn_pr_auc": 0.72,
        "churn_threshold": 0.5,
        "churn_threshold_rule": "fixed",
        "cltv_purchase_model": "Pareto/NBD",
        "cltv_model_version": 6,
        # this run's figures, beside them
        "challengers": {
            "cltv_churn": {
                "model": "xgboost_with_btyd",
                "model_version": 5,
                "roc_auc": 0.81,
                "pr_auc": 0.70,
                "threshold": 0.42,
                "threshold_rule": "max_youden",
            },
            "cltv_value": {"purchase_model": "BG/NBD", "model_version": 7},
        },
        "model_decisions": (
            "cltv_churn version 5, trained by this run, did not take the alias 'champion' "
            "(pr_auc 0.7000 vs the champion's 0.7200 (version 4): a difference of -0.0200, "
            "below the 0.005 required): the tables, the churn KPI cards and the reasons chart "
            "are version 4's, the champion (logistic_regression: ROC-AUC 0.8300, PR-AUC 0.7200 "
            "on this run's test customers, threshold 0.5000 (fixed)); this run's challenger "
            "(xgboost_with_btyd: ROC-AUC 0.8100, PR-AUC 0.7000 on this run's test customers, "
            "threshold 0.4200 (max_youden)) is the one in the churn ROC and reliability charts "
            "and the churn head-to-head. "
            "cltv_value version 7, trained by this run, did not take the alias 'champion' "
            f"({LOST['cltv_value']['reason']}): customer_cltv and its totals are version 6's, "
            "the champion (Pareto/NBD); this run's challenger (BG/NBD) and its candidates are "
            "the ones in the holdout chart and the purchase-model table."
        ),
        "churn_head_to_head": f"{challenger}: The classifier ranks churners better.",
        # the boundary notes of the fit that valued the customers, the champion's; the
        # holdout's verdict is this run's candidates'
        "cltv_model_notes": (
            f"{CHAMPION_NOTE} {candidates}production): The naive baseline beats BG/NBD on MAE."
        ),
    }
    assert kpis["cltv_candidates"][0]["values customers"] == (
        "no: this run's choice, version 7, did not take the alias; version 6 values customers"
    )
    page = _page(kpis)
    assert (
        "churn model: logistic_regression (version 4, threshold 0.5000 by fixed); "
        "CLV purchase model: Pareto/NBD (version 6)"
    ) in page
    assert _card("Churn ROC-AUC (test)", "0.830", "5, not in production: 0.810") in page
    assert _card("Churn PR-AUC (test)", "0.720", "5, not in production: 0.700") in page
    assert (
        _card("Churn threshold (predicted_churn)", "0.500", "5, not in production: 0.420") in page
    )
    assert _card("CLV purchase model", "Pareto/NBD", "7, not in production: BG/NBD") in page
    assert f'<p class="note">Champion / challenger: {html.escape(kpis["model_decisions"])}' in page


def test_a_champion_without_a_score_on_this_runs_customers_is_not_scored_never_0(kpi_inputs):
    unscored = {
        **LOST,
        "cltv_churn": {
            **LOST["cltv_churn"],
            "champion": {
                key: value
                for key, value in LOST["cltv_churn"]["champion"].items()
                if key not in ("score", "pr_auc", "roc_auc")
            },
        },
    }
    kpis = headline_kpis(**kpi_inputs, model_promotion=unscored)
    assert (kpis["churn_roc_auc"], kpis["churn_pr_auc"]) == (None, None)
    assert (
        "the champion (logistic_regression: ROC-AUC not scored, PR-AUC not scored on "
        in (kpis["model_decisions"])
    )
    page = _page(kpis)
    assert _card("Churn ROC-AUC (test)", "not scored", "5, not in production: 0.810") in page


def test_the_evaluation_charts_say_whose_model_they_show():
    evaluation = {
        "model": "xgboost_with_btyd",
        "roc": [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 1.0, "tpr": 1.0}],
        "calibration": [{"mean_predicted": 0.5, "observed_rate": 0.4}],
    }
    validation = {
        "candidates": ["bgnbd"],
        "by_calibration_frequency": [{"frequency": "0", "actual": 1.0, "bgnbd": 1.2, "naive": 0.9}],
    }

    def titles(promotion):
        figure = plot_model_quality(evaluation, validation, promotion)
        return [a.text for a in figure.layout.annotations]

    assert titles(PROMOTED) == [
        "Churn ROC (xgboost_with_btyd, test;<br>version 5, in production)",
        "Churn reliability (test;<br>version 5, in production)",
        "Holdout purchases by calibration frequency<br>(this run's candidates; version 7 in "
        "production)",
    ]
    assert titles(LOST) == [
        "Churn ROC (xgboost_with_btyd, test;<br>this run's challenger, version 5, not in "
        "production)",
        "Churn reliability (test;<br>this run's challenger, version 5, not in production)",
        "Holdout purchases by calibration frequency<br>(this run's candidates; the challenger, "
        "version 7, not in production)",
    ]
