"""One SparkSession for the whole test run, built the way the project builds it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from pyspark.sql import SparkSession

from cltv.spark import get_or_create_spark_session
from cltv.synthetic import write_csv

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark():
    conf = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "spark.yml").read_text())
    conf["spark.sql.shuffle.partitions"] = 2
    conf["spark.driver.memory"] = "3g"
    # one session runs the whole suite, tens of thousands of queries, and its 2 GB heap ran
    # out late in the suite ("Not enough memory to build and broadcast", "Java heap space"),
    # even on unchanged code. The status store keeps the last 1,000 queries' plans (some are
    # huge expression trees) though nothing reads them here (the UI is off): the likely cause,
    # so keep few, and give the driver room. Static settings: set at creation.
    conf["spark.sql.ui.retainedExecutions"] = 20
    conf["spark.ui.retainedJobs"] = 50
    conf["spark.ui.retainedStages"] = 50
    session = get_or_create_spark_session(conf)
    yield session
    session.stop()


@pytest.fixture(autouse=True, scope="module")
def _release_spark_cache():
    """Unpersist what a test file's nodes persisted, as the pipeline's hook does after a run.

    Tests call nodes directly, with no run to end, so their persisted tables would otherwise
    pile up in the one session's memory for the rest of the suite.
    """
    yield
    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


def project_registry(project: Path) -> mlflow.MlflowClient:
    """A client of ``project``'s MLflow store, tracking and registry both (MLflow's global
    URIs are left alone: kedro-mlflow set them for the run in this process)."""
    store = f"sqlite:///{project / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=store, registry_uri=store)


def registered_model(project: Path, name: str, version: int | None = None):
    """``name`` at ``version`` (default: the version holding ``champion``) in ``project``'s
    registry, as ``mlflow.pyfunc.load_model`` gives it."""
    client = project_registry(project)
    if version is None:
        version = int(client.get_model_version_by_alias(name, "champion").version)
    return mlflow.pyfunc.load_model(client.get_model_version_download_uri(name, str(version)))


def copy_project(root: Path, destination: Path) -> Path:
    """A runnable copy of the project: its conf and pyproject (the package is installed)."""
    shutil.copytree(root / "conf", destination / "conf", ignore=shutil.ignore_patterns("local"))
    (destination / "conf" / "local").mkdir()
    shutil.copy(root / "pyproject.toml", destination)
    (destination / "src").mkdir()
    return destination


def cli_run(project: Path, *args: str, memory: str = "2g", **env: str):
    """``python -m cltv ARGS`` in its own process, from ``project``: the completed process.

    The run gets a small Spark (``conf/local/spark.yml``): the CI box has 2 cores and this
    suite's own session already runs.
    """
    (project / "conf" / "local" / "spark.yml").write_text(
        yaml.safe_dump({"spark.driver.memory": memory, "spark.sql.shuffle.partitions": 2})
    )
    environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", **env}
    environment.pop("PYSPARK_PYTHON", None)  # the run's own interpreter, not this one's
    return subprocess.run(
        [sys.executable, "-m", "cltv", *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def run_cli(project: Path, *args: str, memory: str = "2g", **env: str) -> str:
    """:func:`cli_run`, asserting success; its log."""
    completed = cli_run(project, *args, memory=memory, **env)
    log = completed.stdout + completed.stderr
    assert completed.returncode == 0, log[-5000:]
    return log


def run_kedro(
    project: Path, pipeline: str = "__default__", to_outputs: list[str] | None = None, **params
) -> None:
    """``kedro run`` through a real KedroSession, from inside the project folder."""
    previous = Path.cwd()
    os.chdir(project)
    try:
        bootstrap_project(project)
        with KedroSession.create(project_path=project, runtime_params=params) as session:
            session.run(pipeline_names=[pipeline], to_outputs=to_outputs)
    finally:
        os.chdir(previous)
        # kedro-mlflow 2.0.3 leaves its run open after a session in the same process; the
        # next session would log into it
        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture(scope="session")
def default_run(spark, project_root, tmp_path_factory):
    """One default ``kedro run`` (all pipelines) on 20,000 generated lines, shared by tests.

    The lines carry the real-export regimes (returns of all kinds, postage and fees), so every
    test of the run sees the pipeline survive them."""
    project = copy_project(project_root, tmp_path_factory.mktemp("project"))
    csv = project / "input.csv"
    write_csv(20_000, csv, seed=5, regimes=("returns", "non_product"))
    run_kedro(project, input_path=str(csv))
    return SimpleNamespace(project=project, csv=csv)


@pytest.fixture(scope="session")
def trained_twice(default_run, tmp_path_factory):
    """The default run's project after a second default run on the same input: each model
    has a second version, which meets the first (the champion) on the same data; its log."""
    project = tmp_path_factory.mktemp("twice") / "project"
    shutil.copytree(default_run.project, project)
    log = run_cli(project, "--params", f"input_path={default_run.csv}")
    return SimpleNamespace(project=project, log=log)


# what a scoring run needs of data/: the clean lines, and the current tables it replaces
SCORING_INPUTS = (
    "02_intermediate/transactions_clean",
    "04_feature/customer_features_current",
    "07_model_output/churn_predictions",
    "07_model_output/customer_cltv",
)


@pytest.fixture(scope="session")
def scored_again(trained_twice, tmp_path_factory):
    """``kedro run --pipelines scoring`` with nothing changed, in a project holding the
    registry of :func:`trained_twice` and, of its ``data/``, only :data:`SCORING_INPUTS`:
    everything else comes from the registry's champions; its log."""
    project = copy_project(PROJECT_ROOT, tmp_path_factory.mktemp("scored") / "project")
    shutil.copy(trained_twice.project / "mlflow.db", project)
    for table in SCORING_INPUTS:
        shutil.copytree(trained_twice.project / "data" / table, project / "data" / table)
    log = run_cli(project, "--pipelines", "scoring")
    return SimpleNamespace(project=project, log=log)
