"""The benchmark harness measures what it says: wall time and the memory of a process tree."""

from __future__ import annotations

import sys
from datetime import datetime

from tests.benchmarks.bench import (
    measure,
    stage_jobs,
    stage_of_nodes,
    stage_times,
    table,
    with_ratios,
)

# a parent that starts a child holding 300 MB, then holds 100 MB itself
TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    'import time; block = b"x" * (300 * 2**20); time.sleep(1.5)'])
block = b"x" * (100 * 2**20)
child.wait()
"""


def test_peak_memory_counts_the_whole_process_tree(tmp_path):
    result = measure([sys.executable, "-c", TREE], tmp_path, tmp_path / "tree.log")
    assert result.returncode == 0
    # both processes at once: 400 MB plus two interpreters; less than both counted twice
    assert 400 <= result.peak_pss_mb < 700
    assert result.wall_s >= 1.5


def test_failing_command_reports_its_status(tmp_path):
    result = measure([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, tmp_path / "x.log")
    assert result.returncode == 3


def test_table_shows_the_project_against_the_floor_and_pandas():
    run = {"returncode": 0}
    result = with_ratios(
        {
            "rows": 10_000_000,
            "csv_mb": 800,
            "floor": {**run, "wall_s": 59.0, "peak_pss_mb": 2282.0},
            "reference": {**run, "wall_s": 55.0, "peak_pss_mb": 3090.0},
            "project": {**run, "wall_s": 118.0, "peak_pss_mb": 3090.0},
            "job": {**run, "wall_s": 82.5, "peak_pss_mb": 1545.0},
            "stages": {"start-up": 6.0, "cleaning": 70.8, "other": 41.2},
            "stage_jobs": {"cleaning": 7},
        }
    )
    assert (result["wall_ratio_floor"], result["wall_ratio_reference"]) == (2.0, 2.15)
    assert (result["memory_ratio_floor"], result["memory_ratio_reference"]) == (1.35, 1.0)
    assert (result["job_wall_ratio_reference"], result["job_memory_ratio_reference"]) == (1.5, 0.5)
    lines = table([result]).splitlines()
    assert lines[2] == (
        "| 10,000,000 | 800 | 59.0 / 2282.0 | 55.0 / 3090.0 | 118.0 / 3090.0 | 82.5 / 1545.0 "
        "| 2.0×, 1.35× | 2.15×, 1.0× | 1.5×, 0.5× |"
    )
    # the stages against the floor's whole run (70.8 / 59), with their Spark jobs
    assert lines[-1] == (
        "| 10,000,000 | 6.0 s (0.10× floor) | 70.8 s (1.20× floor, 7 jobs) | 41.2 s |"
    )
    # a size where only the project ran: no ratios, dashes for the rest
    alone = with_ratios(
        {"rows": 1, "csv_mb": 0, "project": {**run, "wall_s": 1.0, "peak_pss_mb": 1}}
    )
    assert table([alone]).splitlines()[-1] == "| 1 | 0 | — | — | 1.0 / 1 | — | — | — | — |"


# lines as a real run writes them (kedro 1.7, conf/logging.yml; the long ones cut short)
RUN_LOG = """\
2026-12-02 01:00:00,100 INFO kedro.framework.session.session: Kedro project cltv
2026-12-02 01:00:07,000 INFO kedro.runner.sequential_runner: Using synchronous mode for loading
2026-12-02 01:00:07,500 INFO kedro.pipeline.node: Running node: standardise_columns: standard…
2026-12-02 01:00:11,500 INFO cltv.hooks: Node standardise_columns took 4.0 s
2026-12-02 01:00:11,500 DEBUG cltv.hooks: Node standardise_columns took 4.0 s and ran 1 Spark jobs
2026-12-02 01:00:11,600 INFO kedro.pipeline.node: Running node: label_transactions: label_transact…
2026-12-02 01:00:20,000 INFO cltv.hooks: Node split_clean_and_quarantine took 8.5 s
2026-12-02 01:00:20,000 DEBUG cltv.hooks: Node split_clean_and_quarantine took 8.5 s and ran 6 \
Spark jobs
2026-12-02 01:00:23,000 INFO cltv.hooks: Node build_customer_features took 3.0 s
2026-12-02 01:00:30,000 INFO cltv.hooks: Node btyd_churn_scores took 2.0 s
2026-12-02 01:00:35,000 INFO cltv.hooks: Node fit_churn_candidates took 5.0 s
2026-12-02 01:00:36,000 INFO cltv.hooks: Node fit_cltv_models took 1.0 s
2026-12-02 01:00:38,000 INFO cltv.hooks: Node score_customers took 1.5 s
2026-12-02 01:00:38,000 INFO cltv.hooks: Node summarise_churn_reasons took 0.5 s
2026-12-02 01:00:40,000 INFO cltv.hooks: Node compare_with_previous_run took 4.0 s
2026-12-02 01:00:40,000 DEBUG cltv.hooks: Node compare_with_previous_run took 4.0 s and ran 2 \
Spark jobs
"""


def test_stages_add_node_times_by_pipeline_and_time_the_start_up(tmp_path):
    log = tmp_path / "project_1.log"
    log.write_text(RUN_LOG)
    started = datetime.strptime("2026-12-02 01:00:00,000", "%Y-%m-%d %H:%M:%S,%f").timestamp()
    log.with_suffix(".start").write_text(repr(started))
    stages = stage_times(log, wall_s=45.0, stages=stage_of_nodes())
    assert stages == {
        "start-up": 7.5,  # process start to the first node's start (11.5 s less its 4 s)
        "cleaning": 12.5,
        "summaries + features": 3.0,
        "churn": 7.0,  # the purchase models' churn scores with the classifier
        "scoring + reasons": 2.0,  # every customer scored and explained
        "CLV": 1.0,
        "reporting": 4.0,  # drift included
        "other": 8.0,
    }


def test_stage_jobs_add_the_spark_jobs_of_each_node_by_stage(tmp_path):
    log = tmp_path / "project_1.log"
    log.write_text(RUN_LOG)
    assert stage_jobs(log, stage_of_nodes()) == {"cleaning": 7, "reporting": 2}
