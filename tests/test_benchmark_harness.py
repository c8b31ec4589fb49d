"""The benchmark harness measures what it says: wall time and the memory of a process tree."""

from __future__ import annotations

import sys

from tests.benchmarks.bench import measure, table, with_ratios

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
        }
    )
    assert (result["wall_ratio_floor"], result["wall_ratio_reference"]) == (2.0, 2.15)
    assert (result["memory_ratio_floor"], result["memory_ratio_reference"]) == (1.35, 1.0)
    row = table([result]).splitlines()[-1]
    assert row == (
        "| 10,000,000 | 800 | 59.0 / 2282.0 | 55.0 / 3090.0 | 118.0 / 3090.0 "
        "| 2.0×, 1.35× | 2.15×, 1.0× |"
    )
    # a size where only the project ran: no ratios, dashes for the rest
    alone = with_ratios(
        {"rows": 1, "csv_mb": 0, "project": {**run, "wall_s": 1.0, "peak_pss_mb": 1}}
    )
    assert table([alone]).splitlines()[-1] == "| 1 | 0 | — | — | 1.0 / 1 | — | — |"
