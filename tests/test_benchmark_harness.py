"""The benchmark harness measures what it says: wall time and the memory of a process tree."""

from __future__ import annotations

import sys
from datetime import datetime

import pytest

from tests.benchmarks import bench
from tests.benchmarks.bench import (
    measure,
    medians,
    sampling_pause,
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


def test_memory_sampling_takes_at_most_a_twentieth_of_a_core():
    """Ten samples a second while each costs under 5 ms; beyond that, 20 times the cost."""
    assert sampling_pause(0.001) == 0.1
    assert sampling_pause(0.005) == 0.1
    assert sampling_pause(0.030) == pytest.approx(0.6)
    for cost in (0.0001, 0.004, 0.03, 0.2):
        assert cost / (cost + sampling_pause(cost)) <= 1 / 21 + 1e-12


def test_failing_command_reports_its_status(tmp_path):
    result = measure([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, tmp_path / "x.log")
    assert result.returncode == 3


RUN = {"returncode": 0}


def _round(floor: float, reference: float, project: float, job: float, **more) -> dict:
    """One round's runs by wall time in seconds (the same PSS in every round), with ratios."""
    return with_ratios(
        {
            "floor": {**RUN, "wall_s": floor, "peak_pss_mb": 2000.0},
            "reference": {**RUN, "wall_s": reference, "peak_pss_mb": 3000.0},
            "project": {**RUN, "wall_s": project, "peak_pss_mb": 3000.0},
            "job": {**RUN, "wall_s": job, "peak_pss_mb": 1500.0},
            **more,
        }
    )


def test_table_shows_the_project_against_the_floor_and_pandas():
    result = with_ratios(
        {
            "floor": {**RUN, "wall_s": 59.0, "peak_pss_mb": 2282.0},
            "reference": {**RUN, "wall_s": 55.0, "peak_pss_mb": 3090.0},
            "project": {**RUN, "wall_s": 118.0, "peak_pss_mb": 3090.0},
            "job": {**RUN, "wall_s": 82.5, "peak_pss_mb": 1545.0},
            "stages": {"start-up": 6.0, "cleaning": 70.8, "other": 41.2},
            "stage_jobs": {"cleaning": 7},
        }
    )
    assert (result["wall_ratio_floor"], result["wall_ratio_reference"]) == (2.0, 2.15)
    assert (result["memory_ratio_floor"], result["memory_ratio_reference"]) == (1.35, 1.0)
    assert (result["job_wall_ratio_reference"], result["job_memory_ratio_reference"]) == (1.5, 0.5)
    one_shot = {"rows": 10_000_000, "csv_mb": 800, "pairs": [result], "median": medians([result])}
    lines = table([one_shot]).splitlines()
    assert lines[2] == (
        "| 10,000,000 | 800 | 59.0 / 2282.0 | 55.0 / 3090.0 | 118.0 / 3090.0 | 82.5 / 1545.0 "
        "| 2.0×, 1.35× | 2.15×, 1.0× | 1.5×, 0.5× |"
    )
    # one shot: no median row; the stages against the floor's whole run (70.8 / 59), with
    # their Spark jobs
    assert lines[3] == ""
    assert lines[-1] == (
        "| 10,000,000 | 6.0 s (0.10× floor) | 70.8 s (1.20× floor, 7 jobs) | 41.2 s |"
    )
    # a size where only the project ran: no ratios, dashes for the rest
    alone = {"project": {**RUN, "wall_s": 1.0, "peak_pss_mb": 1}}
    size = {"rows": 1, "csv_mb": 0, "pairs": [with_ratios(alone)], "median": medians([alone])}
    assert table([size]).splitlines()[-1] == "| 1 | 0 | — | — | 1.0 / 1 | — | — | — | — |"


def test_pairs_take_each_ratio_within_a_round_and_report_the_median():
    # the box slows down in the second round: both the floor and the project take twice as long
    rounds = [
        _round(20.0, 100.0, 80.0, 150.0, stages={"cleaning": 10.0}, stage_jobs={"cleaning": 4}),
        _round(40.0, 200.0, 160.0, 300.0, stages={"cleaning": 20.0}, stage_jobs={"cleaning": 4}),
        _round(20.0, 100.0, 100.0, 120.0, stages={"cleaning": 16.0}, stage_jobs={"cleaning": 4}),
    ]
    assert [r["wall_ratio_floor"] for r in rounds] == [4.0, 4.0, 5.0]
    assert [r["job_wall_ratio_reference"] for r in rounds] == [1.5, 1.5, 1.2]
    median = medians(rounds)
    # the median of the rounds' ratios: 4.0, where the ratio of the median walls (100 / 20)
    # would be 5.0
    assert (median["wall_ratio_floor"], median["job_wall_ratio_reference"]) == (4.0, 1.5)
    assert median["floor"] == {"wall_s": 20.0, "peak_pss_mb": 2000.0}
    assert median["project"]["wall_s"] == 100.0
    assert median["memory_ratio_floor"] == 1.5

    size = {"rows": "sample", "csv_mb": 4, "pairs": rounds, "median": median}
    lines = table([size]).splitlines()
    assert lines[2:6] == [
        "| sample, pair 1 | 4 | 20.0 / 2000.0 | 100.0 / 3000.0 | 80.0 / 3000.0 | 150.0 / 1500.0 "
        "| 4.0×, 1.5× | 0.8×, 1.0× | 1.5×, 0.5× |",
        "| sample, pair 2 | 4 | 40.0 / 2000.0 | 200.0 / 3000.0 | 160.0 / 3000.0 | 300.0 / 1500.0 "
        "| 4.0×, 1.5× | 0.8×, 1.0× | 1.5×, 0.5× |",
        "| sample, pair 3 | 4 | 20.0 / 2000.0 | 100.0 / 3000.0 | 100.0 / 3000.0 | 120.0 / 1500.0 "
        "| 5.0×, 1.5× | 1.0×, 1.0× | 1.2×, 0.5× |",
        "| sample, median | 4 | 20.0 / 2000.0 | 100.0 / 3000.0 | 100.0 / 3000.0 | 150.0 / 1500.0 "
        "| 4.0×, 1.5× | 0.8×, 1.0× | 1.5×, 0.5× |",
    ]
    # each round's stages in floors of the floor of the same round (20 / 40 in the second)
    assert lines[-3:] == [
        "| sample, pair 1 | 10.0 s (0.50× floor, 4 jobs) |",
        "| sample, pair 2 | 20.0 s (0.50× floor, 4 jobs) |",
        "| sample, pair 3 | 16.0 s (0.80× floor, 4 jobs) |",
    ]


def test_pairs_alternate_the_floor_and_the_project_and_the_pandas_script_and_the_job(
    tmp_path, monkeypatch
):
    # each program replaced by one that only waits a little (a wall time to divide by): the
    # order and the logs are what counts
    floor = tmp_path / "floor.py"
    floor.write_text("import time; time.sleep(0.2)")
    commands = []

    def measure_instead(command, cwd, log, env=None):
        commands.append(command)
        return measure([sys.executable, str(floor)], cwd, log, env)

    monkeypatch.setattr(bench, "measure", measure_instead)
    size = bench.run_size("sample", tmp_path, None, floor, pairs=2)
    runs = ["floor" if str(floor) in c else "job" if "--pipelines" in c
            else "project" if "cltv" in c else "reference" for c in commands]  # fmt: skip
    assert runs == ["floor", "project", "reference", "job"] * 2
    assert len(size["pairs"]) == 2
    assert set(size["median"]) >= {"floor", "project", "wall_ratio_floor"}
    # each round's project run in a fresh copy of its own, logged apart
    assert sorted(p.name for p in tmp_path.glob("project_*.log")) == [
        "project_sample_pair1.log",
        "project_sample_pair2.log",
    ]


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
