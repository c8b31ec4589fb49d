"""What the drift report costs: ``drift_report`` timed alone on a finished run's tables.

``python -m tests.benchmarks.bench_drift --project DIR`` reads ``DIR``'s
``customer_features_current``, ``churn_predictions`` and ``customer_cltv`` (latest version)
and compares each with a copy whose numbers are shifted (every numeric value × 1.1, so the
bins and the joins do the work a real comparison does), timing the node as a run would, from
the Delta tables to the report. One job at a time: nothing else should run beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml
from pyspark.sql import functions as F

from cltv.datasets import SparkDeltaTableDataset
from cltv.pipelines.reporting.drift import drift_report
from cltv.spark import get_or_create_spark_session

ROOT = Path(__file__).resolve().parents[2]
TABLES = {
    "customer_features_current": "04_feature",
    "churn_predictions": "07_model_output",
    "customer_cltv": "07_model_output",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_drift")
    parser.add_argument("--project", type=Path, required=True)
    args = parser.parse_args(argv)
    conf = yaml.safe_load((ROOT / "conf/base/spark.yml").read_text())
    get_or_create_spark_session(conf)
    params = yaml.safe_load((ROOT / "conf/base/parameters_reporting.yml").read_text())
    frames = []
    for name, layer in TABLES.items():
        table = SparkDeltaTableDataset(filepath=str(args.project / "data" / layer / name)).load()
        shifted = table.select(
            *[
                (F.col(f.name) * 1.1).alias(f.name)
                if f.dataType.typeName() == "double" and f.name != "churn_probability"
                else F.col(f.name)
                for f in table.schema.fields
            ]
        )
        frames += [table, shifted]
    customers = frames[0].count()
    started = time.perf_counter()
    report, _ = drift_report(
        *frames, params["reporting"]["drift"], {"produced_by": "training", "models": {}}
    )
    elapsed = time.perf_counter() - started
    warnings = len(report["warnings"])
    print(f"drift_report: {customers:,} customers, {elapsed:.1f} s, {warnings} warnings")


if __name__ == "__main__":
    main()
