"""The benchmark harness measures what it says: wall time and the memory of a process tree."""

from __future__ import annotations

import sys

from tests.benchmarks.bench import measure

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
