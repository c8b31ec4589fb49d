"""Writes are atomic and runs repeatable: a process killed mid-save, and the soak test."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

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
    dataset = SparkDeltaTableDataset(filepath=str(table))
    assert sorted(r["n"] for r in dataset.load().collect()) == [1, 2, 3]

    # what the README says to do: the leftovers are deleted, the table is as it was
    referenced = {Path(uri).name for uri in reread.file_uris()}
    leftover = {p.name for p in table.glob("*.parquet")} - referenced
    staging = [f"{p.name}/" for p in table.glob("_staging-*")]
    assert leftover and staging
    assert dataset.vacuum() == []  # younger than the week kept by default
    assert sorted(dataset.vacuum(retention_hours=0)) == sorted([*leftover, *staging])
    assert sorted(p.name for p in table.iterdir()) == sorted(["_delta_log", *referenced])
    assert sorted(r["n"] for r in dataset.load().collect()) == [1, 2, 3]


class InjectedFailure(OSError):
    """The soak test's failure: any other exception is a bug, not an injected failure."""


def _caused_by_injection(error: BaseException | None) -> bool:
    """Whether the injected failure is in ``error``'s chain (Kedro wraps a save's error)."""
    while error is not None:
        if isinstance(error, InjectedFailure):
            return True
        error = error.__cause__ or error.__context__
    return False


def _tables(project) -> dict[str, int]:
    """Every Delta table of the project and its rows; each must be readable (deltalake)."""
    return {
        str(log.parent.relative_to(project / "data")): len(DeltaTable(str(log.parent)).to_pandas())
        for log in sorted((project / "data").rglob("_delta_log"))
    }


@pytest.mark.slow
def test_soak_20_runs_with_random_failures(spark, project_root, tmp_path, monkeypatch, whole_run):
    """20 runs of data_processing on two inputs taken at random, one Delta commit in twelve
    failing (a run commits about eight tables, so about half the runs fail). A run either
    succeeds, and then every table holds that input's rows, or fails by the injected failure,
    and then every table is still there and readable, each one whole: all of one input's rows
    (the tables commit one by one, so a failed run may leave some tables from the new input and
    the rest from the previous one; the next success repairs that)."""
    project = copy_project(project_root, tmp_path / "project")
    inputs = {}
    for seed, rows in ((8, 4000), (9, 3000)):
        inputs[seed] = tmp_path / f"input_{seed}.csv"
        write_csv(rows, inputs[seed], seed=seed)
    expected = {}
    for seed, csv in inputs.items():  # each input's tables, without failures
        run_kedro(project, "data_processing", input_path=str(csv))
        expected[seed] = _tables(project)
        raw_rows = len(csv.read_text().splitlines()) - 1
        clean, quarantine = (
            expected[seed][f"02_intermediate/transactions_{name}"]
            for name in ("clean", "quarantine")
        )
        assert clean + quarantine == raw_rows
    assert expected[8].keys() == expected[9].keys() and len(expected[8]) >= 5
    different = {table for table in expected[8] if expected[8][table] != expected[9][table]}
    assert {"02_intermediate/transactions_clean", "03_primary/customer_summary"} <= different

    chance, pick = random.Random(20), random.Random(21)
    commit = SparkDeltaTableDataset._commit

    def flaky_commit(self, *args, **kwargs):
        if chance.random() < 1 / 12:
            raise InjectedFailure("injected failure before the commit")
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(SparkDeltaTableDataset, "_commit", flaky_commit)
    failed = 0
    for _ in range(20):
        seed = pick.choice(sorted(inputs))
        try:
            run_kedro(project, "data_processing", input_path=str(inputs[seed]))
        except Exception as error:
            if not _caused_by_injection(error):
                raise  # a real bug, not the injected failure
            failed += 1
            tables = _tables(project)
            assert tables.keys() == expected[seed].keys()
            for table, rows in tables.items():
                assert rows in (expected[8][table], expected[9][table]), table
        else:
            assert _tables(project) == expected[seed]
    assert 3 <= failed <= 17
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["cltv-churn"])
    assert len(runs) == 22 and set(runs["status"]) <= {"FINISHED", "FAILED"}
    assert (runs["status"] == "FAILED").sum() == failed
