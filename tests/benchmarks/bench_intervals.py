"""What the CLV intervals cost: ``predict_customer_value`` timed alone on a finished run's data.

``python -m tests.benchmarks.bench_intervals --project DIR [--copies K] [--model pnbd]``
reads ``DIR``'s ``customer_summary_current`` (``K`` copies of it under new customer ids: a
larger customer base with the same histories, e.g. 5 copies of a 10M-line run's ~530k
customers for the ~2.7M of 50M lines), its fit and naive baseline, and times the node as a run
does: from reading the summary to the Delta table written (and the total's JSON). ``--model``
values with another fitted purchase model (the calibration fit holds every candidate).

Run it from a checkout of the commit to measure; the input is written once to ``--workdir``
as Parquet so every checkout reads the same rows. The node's signature tells which version is
running: with ``uncertainty`` (200 draws) or before it (a single draw).
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import time
from pathlib import Path

import yaml
from pyspark.sql import functions as F

from cltv.datasets import SparkDeltaTableDataset
from cltv.pipelines.cltv.nodes import predict_customer_value
from cltv.spark import get_or_create_spark_session

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_intervals")
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--model", default=None, help="value with this purchase model")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_intervals"))
    args = parser.parse_args(argv)

    conf = yaml.safe_load((ROOT / "conf/base/spark.yml").read_text())
    spark = get_or_create_spark_session(conf)
    data = args.project / "data"
    source = args.workdir / f"{args.project.name}_x{args.copies}.parquet"
    if not source.exists():
        summary = SparkDeltaTableDataset(
            filepath=str(data / "03_primary/customer_summary_current")
        ).load()
        copies = [
            summary.withColumn("customer_id", F.concat("customer_id", F.lit(f"-{k}")))
            for k in range(args.copies)
        ]
        union = copies[0]
        for copy in copies[1:]:
            union = union.unionByName(copy)
        union.write.parquet(str(source))

    fit = json.loads((data / "06_models/cltv_model_fit.json").read_text())
    if args.model and args.model != fit["purchase_model"]:
        calibration = json.loads((data / "06_models/cltv_calibration_fit.json").read_text())
        fit = {**fit, args.model: calibration[args.model], "purchase_model": args.model}
    naive = json.loads((data / "06_models/cltv_naive_baseline.json").read_text())
    period = json.loads((data / "03_primary/analysis_period.json").read_text())
    cltv = yaml.safe_load((ROOT / "conf/base/parameters_cltv.yml").read_text())["cltv"]
    with_intervals = "uncertainty" in inspect.signature(predict_customer_value).parameters
    out = args.workdir / "customer_cltv"
    shutil.rmtree(out, ignore_errors=True)

    started = time.perf_counter()
    summary = spark.read.parquet(str(source))
    if with_intervals:
        table, total = predict_customer_value(
            summary, fit, naive, cltv["valuation"], period, cltv["uncertainty"]
        )
        (args.workdir / "cltv_total_value.json").write_text(json.dumps(total))
    else:
        table = predict_customer_value(summary, fit, naive, cltv["valuation"], period)
    SparkDeltaTableDataset(filepath=str(out)).save(table)
    seconds = time.perf_counter() - started
    customers = spark.read.parquet(str(source)).count()
    print(
        json.dumps(
            {
                "project": str(args.project),
                "customers": customers,
                "purchase_model": fit["purchase_model"],
                "draws": cltv["uncertainty"]["draws"] if with_intervals else 1,
                "seconds": round(seconds, 1),
            }
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
