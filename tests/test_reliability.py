"""Writes are atomic and runs repeatable: a process killed mid-save, and the soak test."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import mlflow
import pytest
from deltalake import DeltaTable

from cltv.datasets import SparkDeltaTableDataset
from cltv.synthetic import write_csv

from .conftest import copy_project, run_kedro

# a process that saves a new version of TABLE and is killed (SIGKILL, no cleanup of any kind)
# after Spark has written the data files and they are in the table folder, before the commit
KILLED_MID_SAVE = """
import os, signal, sys
from cltv.datasets import SparkDeltaTableDataset
from cltv.spark import get_or_create_spark_session

spark = get_or_create_spark_session({"spark.master": "local[1]", "spark.ui.enabled": "false"})
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
SparkDeltaTableDataset._commit = die
SparkDeltaTableDataset(filepath=sys.argv[1]).save(spark.range(1000).withColumnRenamed("id", "n"))
"""


def test_a_process_killed_mid_save_leaves_the_previous_version(spark, tmp_path):
    table = tmp_path / "table"
    SparkDeltaTableDataset(filepath=str(table)).save(
        spark.createDataFrame([(1,), (2,), (3,)], "n long")
    )
    files_before = len(list(table.glob("*.parquet")))
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_MID_SAVE), str(table)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    # the new data files were already in the folder: the killed save wrote them
    assert len(list(table.glob("*.parquet"))) > files_before
    reread = DeltaTable(str(table))
    assert reread.version() == 0
    assert sorted(reread.to_pandas()["n"]) == [1, 2, 3]
    assert sorted(r["n"] for r in SparkDeltaTableDataset(filepath=str(table)).load().collect()) == [
        1,
        2,
        3,
    ]


@pytest.mark.slow
def test_soak_20_runs_with_random_failures(spark, project_root, tmp_path, monkeypatch):
    """20 runs of data_processing, a third of the Delta commits failing at random."""
    project = copy_project(project_root, tmp_path / "project")
    csv = tmp_path / "input.csv"
    write_csv(4000, csv, seed=8)
    raw_rows = len(csv.read_text().splitlines()) - 1
    chance = random.Random(20)
    commit = SparkDeltaTableDataset._commit

    def flaky_commit(self, *args, **kwargs):
        if chance.random() < 1 / 3:
            raise OSError("injected failure before the commit")
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(SparkDeltaTableDataset, "_commit", flaky_commit)
    failed = 0
    for _ in range(20):
        try:
            run_kedro(project, "data_processing", input_path=str(csv))
        except Exception:
            failed += 1
        tables = {
            name: DeltaTable(str(path))
            for name, path in (
                ("clean", project / "data/02_intermediate/transactions_clean"),
                ("quarantine", project / "data/02_intermediate/transactions_quarantine"),
            )
            if (path / "_delta_log").is_dir()
        }
        if len(tables) == 2:
            # every committed version holds the same input's rows, so the counts always add up
            rows = {name: len(table.to_pandas()) for name, table in tables.items()}
            assert rows["clean"] + rows["quarantine"] == raw_rows
    assert 0 < failed < 20
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["cltv-churn"])
    assert len(runs) == 20 and set(runs["status"]) <= {"FINISHED", "FAILED"}
