"""One SparkSession for the whole test run, built the way the project builds it; the shared
whole runs; and the ``whole_run`` marker that keeps them out of ``make test-quick``.

A test that starts a whole ``kedro run`` (in this process or another) or a server gets the
marker by construction: every fixture that starts one is declared with
:func:`whole_run_fixture`, and a test that calls :func:`run_kedro` or :func:`cli_run` itself
requests the ``whole_run`` fixture. Calling them from a test without the marker fails at once,
with a line that says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
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
from cltv.warm_start import make_mlflow_store_template

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# a Databricks token of the real shape, for the scans of test_security to find (fake)
FAKE_TOKEN = "dapi" + "0123456789abcdef" * 2

# the fixtures that start a whole run or a server: a test using any of them, directly or
# through another fixture, is marked ``whole_run`` (filled by :func:`whole_run_fixture`)
WHOLE_RUN_FIXTURES: set[str] = set()


def whole_run_fixture(*args, **kwargs):
    """``pytest.fixture`` for a fixture that starts a whole run or a server: every test that
    uses it is marked ``whole_run``, so ``make test-quick`` leaves it out."""

    def declare(function):
        WHOLE_RUN_FIXTURES.add(kwargs.get("name", function.__name__))
        return pytest.fixture(**kwargs)(function)

    if len(args) == 1 and callable(args[0]) and not kwargs:  # used bare: @whole_run_fixture
        return declare(args[0])
    return declare


@whole_run_fixture
def whole_run():
    """Requested by a test that starts a run itself (:func:`run_kedro`, :func:`cli_run`)."""


def pytest_collection_modifyitems(items):
    for item in items:
        if WHOLE_RUN_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.whole_run)


_running_tests: list = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running_tests.append(item)
    try:
        yield
    finally:
        _running_tests.pop()


def _require_whole_run_marker(what: str) -> None:
    """Fails a test that starts ``what`` without being marked ``whole_run``: it would slow
    ``make test-quick`` down unseen."""
    item = _running_tests[-1] if _running_tests else None
    if item is not None and item.get_closest_marker("whole_run") is None:
        pytest.fail(
            f"{item.nodeid} starts {what} but is not marked whole_run: request the "
            "`whole_run` fixture, or declare the fixture that starts it with "
            "whole_run_fixture (tests/conftest.py)",
            pytrace=False,
        )


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
    # PySpark records the Python call site of every DataFrame and column function it is
    # given, for error messages: ~4 extra calls into the JVM each, two thirds of the ~6,000 a
    # small cleaning makes. Off, the plans and results are the same and the cleaning tests
    # run ~20% faster (two alternating pairs of test_cleaning, test_returns and
    # test_bad_input: 158/119 s and 155/131 s). A run on the sample showed no difference, so
    # the project keeps it on for the call sites in its users' error messages.
    conf["spark.python.sql.dataFrameDebugging.enabled"] = False
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


def free_port() -> int:
    """A local TCP port nothing listens on (yet): for a server to start on, or to be refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_uris(monkeypatch):
    """MLflow's tracking and registry URIs (and active experiment) as the test sets them, put
    back after it.

    MLflow keeps them in module globals and also exports them as environment variables for
    subprocesses (``set_registry_uri(None)`` does not clear that one): a test pointing MLflow
    at a closed port would otherwise leave every later run and server talking to it."""
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
    ):
        # recorded either way, so undo restores the value or removes what MLflow set
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if not os.environ[name]:
            monkeypatch.delenv(name)
    tracking = mlflow.tracking._tracking_service.utils
    registry = mlflow.tracking._model_registry.utils
    monkeypatch.setattr(tracking, "_tracking_uri", tracking._tracking_uri)
    monkeypatch.setattr(registry, "_registry_uri", registry._registry_uri)
    # an earlier in-process run's experiment (kedro-mlflow's) does not exist in a new store
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    return monkeypatch


def top_fifth_share(score, revenue) -> float:
    """Oracle of ``holdout_revenue_top_20pct``, in pandas: the share of the holdout's
    ``revenue`` spent by the 20% of customers with the highest ``score``. Customers tied on
    score (one-time buyers with the same T) enter together, each counted in the share of the
    group that fits."""
    import pandas as pd

    groups = (
        pd.DataFrame({"score": list(score), "revenue": list(revenue)})
        .groupby("score")["revenue"]
        .agg(["size", "sum"])
        .sort_index(ascending=False)
    )
    room, captured = 0.2 * groups["size"].sum(), 0.0
    for size, total in groups.itertuples(index=False):
        taken = min(size, room)
        captured += total * taken / size
        room -= taken
        if room <= 0:
            break
    return captured / groups["sum"].sum()


@pytest.fixture
def registry(tmp_path, mlflow_uris) -> mlflow.MlflowClient:
    """A real MLflow store (tracking and registry) in ``tmp_path``, MLflow's URIs set to it
    for the test (and put back after it)."""
    store = tmp_path / "mlflow.db"
    shutil.copy(make_mlflow_store_template(), store)
    uri = f"sqlite:///{store}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient()


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


def copy_project(root: Path, destination: Path, mlflow_store: bool = True) -> Path:
    """A runnable copy of the project: its conf and pyproject (the package is installed), and
    an empty, migrated MLflow store unless ``mlflow_store`` is False: a copy of the one install
    makes (``cltv.warm_start``, made now if it was not), as MLflow's own suite does
    (mlflow/mlflow#24672), instead of ~5 s of alembic migrations per project."""
    shutil.copytree(root / "conf", destination / "conf", ignore=shutil.ignore_patterns("local"))
    (destination / "conf" / "local").mkdir()
    shutil.copy(root / "pyproject.toml", destination)
    (destination / "src").mkdir()
    if mlflow_store:
        shutil.copy(make_mlflow_store_template(), destination / "mlflow.db")
    return destination


def cli_run(project: Path, *args: str, memory: str = "2g", **env: str):
    """``python -m cltv ARGS`` in its own process, from ``project``: the completed process.

    The run gets a small Spark (``conf/local/spark.yml``): the CI box has 2 cores and this
    suite's own session already runs.
    """
    _require_whole_run_marker("a `kedro run` process")
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


class _LogLines(logging.Handler):
    """What a run logs at INFO and above, one line a record, as its console shows it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@contextlib.contextmanager
def _inside(project: Path):
    """A run in this process, as from inside ``project``: the project bootstrapped, the run's
    log collected (the :class:`_LogLines` it yields), and afterwards the folder and MLflow as
    they were."""
    previous = Path.cwd()
    os.chdir(project)
    log = _LogLines()
    logging.getLogger().addHandler(log)
    try:
        bootstrap_project(project)
        yield log
    finally:
        logging.getLogger().removeHandler(log)
        os.chdir(previous)
        # kedro-mlflow 2.0.3 leaves its run open after a session in the same process; the
        # next session would log into it
        while mlflow.active_run():
            mlflow.end_run()


def run_kedro(
    project: Path, pipeline: str = "__default__", to_outputs: list[str] | None = None, **params
) -> str:
    """``kedro run`` through a real KedroSession, from inside the project folder, on this
    process's SparkSession: its log. ``pipeline`` may name several, comma-separated."""
    _require_whole_run_marker("a `kedro run`")
    with _inside(project) as log:
        with KedroSession.create(project_path=project, runtime_params=params) as session:
            session.run(pipeline_names=pipeline.split(","), to_outputs=to_outputs)
    return "\n".join(log.lines)


def cli_in_process(project: Path, *args: str) -> SimpleNamespace:
    """``kedro run ARGS`` as the command line parses them (the project's ``run`` command, its
    one-line failure included), in this process and on its SparkSession: its exit code, what
    it printed (``output``, the failure line last) and what it logged (``log``). For checks of
    what the options and the failure line say; :func:`cli_run` where the process itself is
    tested (its Java, its Spark console output)."""
    from click.testing import CliRunner

    from cltv.cli import run

    _require_whole_run_marker("a `kedro run`")
    with _inside(project) as log:
        result = CliRunner().invoke(run, list(args))
    return SimpleNamespace(
        exit_code=result.exit_code, output=result.output, log="\n".join(log.lines)
    )


def run_cli_in_process(project: Path, *args: str) -> str:
    """:func:`cli_in_process`, asserting success; its log and output."""
    done = cli_in_process(project, *args)
    text = f"{done.log}\n{done.output}"
    assert done.exit_code == 0, text[-5000:]
    return text


@whole_run_fixture(scope="session")
def default_run(spark, project_root, tmp_path_factory):
    """One default ``kedro run`` (all pipelines) on 20,000 generated lines, shared by tests.

    The lines carry the real-export regimes (returns of all kinds, postage and fees), so every
    test of the run sees the pipeline survive them."""
    project = copy_project(project_root, tmp_path_factory.mktemp("project"))
    csv = project / "input.csv"
    write_csv(20_000, csv, seed=5, regimes=("returns", "non_product"))
    run_kedro(project, input_path=str(csv))
    return SimpleNamespace(project=project, csv=csv)


@whole_run_fixture(scope="session")
def trained_twice(default_run, tmp_path_factory):
    """The default run's project after a second default run on the same input: each model
    has a second version, which meets the first (the champion) on the same data; its log.

    This run is the one that needs a process of its own, so it checks three things at once: it
    is ``kedro run`` as a user starts it from a shell; it runs over Spark Connect
    (``SPARK_REMOTE=local[2]``, as Databricks Connect and serverless do: test_spark_connect
    compares its tables with the classic :func:`default_run`'s); and it has a Databricks token
    in ``conf/local/credentials.yml`` and in its environment (:data:`FAKE_TOKEN`), which
    test_security looks for in its log and MLflow run."""
    project = tmp_path_factory.mktemp("twice") / "project"
    shutil.copytree(default_run.project, project)
    credentials = {
        "databricks": {"host": "https://example.cloud.databricks.com", "token": FAKE_TOKEN}
    }
    (project / "conf" / "local" / "credentials.yml").write_text(yaml.safe_dump(credentials))
    started = time.time()
    log = run_cli(
        project,
        "--params",
        f"input_path={default_run.csv}",
        SPARK_REMOTE="local[2]",
        DATABRICKS_TOKEN=FAKE_TOKEN,
    )
    return SimpleNamespace(project=project, log=log, started=started)


# what a scoring run needs of data/: the clean lines, and the current tables it replaces
SCORING_INPUTS = (
    "02_intermediate/transactions_clean",
    "04_feature/customer_features_current",
    "07_model_output/churn_predictions",
    "07_model_output/customer_cltv",
)


@whole_run_fixture(scope="session")
def scored_again(trained_twice, tmp_path_factory):
    """``kedro run --pipelines scoring`` with nothing changed, in a project holding the
    registry of :func:`trained_twice` and, of its ``data/``, only :data:`SCORING_INPUTS`:
    everything else comes from the registry's champions; its log."""
    project = copy_project(
        PROJECT_ROOT, tmp_path_factory.mktemp("scored") / "project", mlflow_store=False
    )
    shutil.copy(trained_twice.project / "mlflow.db", project)
    for table in SCORING_INPUTS:
        shutil.copytree(trained_twice.project / "data" / table, project / "data" / table)
    log = run_kedro(project, "scoring")
    return SimpleNamespace(project=project, log=log)
