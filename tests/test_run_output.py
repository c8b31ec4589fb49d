"""What a user sees of a run: its cause once when it fails, node times, progress only on a tty."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from .conftest import cli_run, copy_project
from .test_bad_input import HEADER, _line

CAUSE = "98.0% of 100 rows quarantined"


def test_a_failing_run_says_its_cause_once(project_root, tmp_path, whole_run):
    project = copy_project(project_root, tmp_path / "project")
    csv = tmp_path / "input.csv"
    junk = [_line(str(n), Customer_ID="") for n in range(98)]
    csv.write_text("\n".join([HEADER, _line("1000"), _line("1001"), *junk]) + "\n")
    completed = cli_run(project, "--pipelines=data_processing", f"--params=input_path={csv}")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1
    assert output.count(CAUSE) == 1, output[-4000:]
    assert completed.stderr.strip().splitlines()[-1] == (
        f"Error: node split_clean_and_quarantine failed: {csv}: {CAUSE}, above "
        "max_quarantine_fraction 0.5; main reasons: missing_customer_id (98) "
        "(traceback: logs/last_failure.log)"
    )
    assert "Traceback (most recent call last)" not in output
    assert output.count("was closed because of an error in the pipeline") <= 1
    # the traceback is kept where the last line says, from the run's folder
    kept = (project / "logs" / "last_failure.log").read_text()
    assert kept.startswith("Traceback (most recent call last)")
    assert "InputDataError" in kept and "in node split_clean_and_quarantine" in kept
    # not a terminal: plain lines, no progress bar redraws, and the nodes before it timed
    assert "\r" not in output and "[Stage " not in output
    assert re.search(r"Node label_transactions took \d+\.\d s\n", output)
    # the guard runs before either table is written: nothing was committed, no file left
    for table in ("transactions_clean", "transactions_quarantine"):
        assert not (project / "data" / "02_intermediate" / table).exists()


def _console_progress_setting(on_a_terminal: bool) -> str:
    """``spark.ui.showConsoleProgress`` as a run started with stderr on a pty or a pipe gets it."""
    code = "from cltv.spark import _console_progress; print(_console_progress())"
    if not on_a_terminal:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
    leader, follower = pty.openpty()
    try:
        completed = subprocess.run(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            check=True,
        )
    finally:
        os.close(follower)
        os.close(leader)
    return completed.stdout.strip()


def test_spark_progress_bar_is_shown_on_a_terminal_only():
    assert _console_progress_setting(on_a_terminal=True) == "true"
    assert _console_progress_setting(on_a_terminal=False) == "false"


def test_warnings_with_nothing_to_act_on_stay_out_of_the_run_log(project_root):
    # a session built as a run builds it, ranking over one window as the metrics do
    code = """
import yaml
from pyspark.sql import Window, functions as F
from cltv.spark import get_or_create_spark_session
spark = get_or_create_spark_session(yaml.safe_load(open("conf/base/spark.yml")))
spark.range(10).withColumn("rank", F.row_number().over(Window.orderBy("id"))).collect()
print("ranked")
"""
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project_root,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    output = completed.stdout + completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "ranked"
    assert "No Partition Defined for Window operation" not in output
