"""The project's one SparkSession: local, Spark Connect, or the one Databricks already runs.

Delta Lake support is decided here, once, without touching the network:

* Databricks, or a session whose config already loads the Delta extension, uses delta-spark.
* Otherwise, when the delta-spark jars matching the installed ``delta-spark`` package are on
  disk (``spark.jars``, a warm Ivy cache or the local Maven repository), they are added to
  ``spark.jars`` and delta-spark is used.
* Otherwise Delta tables are read and written with delta-rs (the ``deltalake`` package) while
  Spark does the compute. ``configure_spark_with_delta_pip`` is never called: it downloads the
  jars from Maven Central, which hangs or fails on an offline machine.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from cltv.java import configure_java
from cltv.warm_start import with_class_data_archive

logger = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
SCALA_BINARY_VERSION = "2.13"  # Spark 4 is built for Scala 2.13 only


def is_spark_connect(spark: SparkSession) -> bool:
    """True when ``spark`` talks to a Spark Connect server (Databricks Connect, serverless)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def executor_cores(spark: SparkSession) -> int:
    """The cores that run this session's tasks at once: ``defaultParallelism`` (every
    executor's cores; the machine's for ``local[*]``). Spark Connect hides the context: there
    it is ``spark.default.parallelism`` when set, else the ``local[N]`` master of a server on
    this machine, else ``spark.sql.shuffle.partitions``, the partitions a shuffle gives."""
    if not is_spark_connect(spark):
        return max(1, spark.sparkContext.defaultParallelism)

    def setting(key: str) -> str | None:
        try:
            return spark.conf.get(key, None)
        except Exception:  # a Connect server may refuse to show a static setting
            return None

    if (parallelism := setting("spark.default.parallelism")) is not None:
        return max(1, int(parallelism))
    local = re.fullmatch(r"local\[(\d+|\*)(?:,\s*\d+)?\]", setting("spark.master") or "")
    if local:
        return int(local.group(1)) if local.group(1) != "*" else os.cpu_count() or 1
    return max(1, int(setting("spark.sql.shuffle.partitions") or 1))


def session_has_delta(spark: SparkSession) -> bool:
    """True when this session reads and writes ``format("delta")`` itself."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return True
    try:
        extensions = spark.conf.get("spark.sql.extensions", "") or ""
    except Exception:  # a Connect server may refuse to show static conf
        return False
    return DELTA_EXTENSION in extensions


def _delta_spark_version() -> str | None:
    try:
        return metadata.version("delta-spark")
    except metadata.PackageNotFoundError:
        return None


def find_local_delta_jars(home: Path | None = None) -> list[Path]:
    """The delta-spark and delta-storage jars for the installed delta-spark, if already on disk.

    Looks in the Ivy caches Spark's ``--packages`` fills (``~/.ivy2.5.2``, ``~/.ivy2``) and in
    the local Maven repository. Returns ``[]`` unless both jars are present.
    """
    version = _delta_spark_version()
    if version is None:
        return []
    home = home or Path.home()
    spark_jar = f"delta-spark_{SCALA_BINARY_VERSION}-{version}.jar"
    storage_jar = f"delta-storage-{version}.jar"
    layouts = [
        [home / ivy / "jars" / f"io.delta_{name}" for name in (spark_jar, storage_jar)]
        for ivy in (".ivy2.5.2", ".ivy2")
    ]
    maven = home / ".m2" / "repository" / "io" / "delta"
    layouts.append(
        [
            maven / f"delta-spark_{SCALA_BINARY_VERSION}" / version / spark_jar,
            maven / "delta-storage" / version / storage_jar,
        ]
    )
    for jars in layouts:
        if all(jar.is_file() for jar in jars):
            return jars
    return []


def _with_delta_if_available(conf: dict[str, str]) -> tuple[dict[str, str], str]:
    """Add the Delta extension to ``conf`` when its jars are available offline."""
    configured_jars = [j for j in conf.get("spark.jars", "").split(",") if j.strip()]
    if DELTA_EXTENSION in conf.get("spark.sql.extensions", ""):
        return conf, "delta-spark (configured in spark.yml)"
    if any("delta-spark_" in Path(jar).name for jar in configured_jars):
        source = "delta-spark (jars from spark.jars)"
    else:
        local_jars = find_local_delta_jars()
        if not local_jars:
            return conf, (
                "delta-rs (deltalake): delta-spark jars are not on this machine and are not "
                "downloaded; Spark computes, deltalake reads and writes the Delta tables"
            )
        configured_jars += [str(jar) for jar in local_jars]
        source = f"delta-spark (jars from {local_jars[0].parent})"
    conf = dict(conf)
    conf["spark.jars"] = ",".join(configured_jars)
    conf["spark.sql.extensions"] = ",".join(
        e for e in (conf.get("spark.sql.extensions"), DELTA_EXTENSION) if e
    )
    conf.setdefault("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    return conf, source


# Settings a remote Spark Connect server accepts from a client: runtime SQL settings only.
# Everything else (master, driver memory, jars, UI) belongs to whoever started the server.
_RUNTIME_CONF_PREFIXES = ("spark.sql.",)


def _spark_connect_conf(remote: str, conf: dict[str, str]) -> dict[str, str]:
    """The part of ``spark.yml`` that applies to a Spark Connect session at ``remote``.

    ``local`` / ``local[N]`` starts a Connect server inside this process: it takes every
    setting but the master (the remote URL names it). A real server (``sc://…``, Databricks
    Connect, serverless) takes runtime SQL settings only.
    """
    if remote.startswith("local"):
        return {k: v for k, v in conf.items() if k != "spark.master"}
    return _runtime_settings(conf)


def _runtime_settings(conf: dict[str, str]) -> dict[str, str]:
    """What may be set on a session someone else started (a server's, or a cluster's)."""
    return {k: v for k, v in conf.items() if k.startswith(_RUNTIME_CONF_PREFIXES)}


def _prepare_driver(local: bool, conf: dict[str, str]) -> dict[str, str]:
    """Java for a driver JVM started here; for a local one, loopback, this interpreter, and the
    class archive made at install for this Java and Spark (``cltv.warm_start``), if any."""
    logger.info("Spark: Java for the driver is %s", configure_java())
    if local:
        conf = with_class_data_archive(conf)
        # a local driver stays on loopback, whatever the hostname resolves to
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers (pandas UDFs) must import this project: run them with this
        # interpreter, not whatever ``python3`` is first on PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return conf


def get_or_create_spark_session(spark_conf: Mapping[str, Any] | None = None) -> SparkSession:
    """Return the active session, or build one from ``spark_conf`` (``conf/base/spark.yml``).

    An existing active session (Databricks notebooks and jobs, tests) is reused as it is. With
    ``SPARK_REMOTE`` set, a Spark Connect session is created and only the settings such a
    session accepts apply (see ``_spark_connect_conf``).
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        logger.info(
            "Spark: reusing the active session (%s); Delta via %s",
            "Spark Connect" if is_spark_connect(active) else "classic",
            "delta-spark" if session_has_delta(active) else "delta-rs (deltalake)",
        )
        return active

    conf = {str(key): str(value) for key, value in (spark_conf or {}).items()}
    remote = os.environ.get("SPARK_REMOTE")
    databricks_runtime = os.environ.get("DATABRICKS_RUNTIME_VERSION")
    # a driver started here, classic or a local Spark Connect server (started as a shell is,
    # bar on), shows the progress bar only on a terminal: in a log file or CI it would fill
    # the log with redraws. A remote server or a cluster keeps its own (not a spark.sql.* one)
    conf.setdefault("spark.ui.showConsoleProgress", _console_progress())
    if remote:
        conf = _spark_connect_conf(remote, conf)
        if remote.startswith("local"):
            conf = _prepare_driver(local=True, conf=conf)
        builder = SparkSession.builder.remote(remote)
        where = f"over Spark Connect ({_redact(remote)})"
    elif databricks_runtime:
        # a Databricks job or notebook: the cluster owns its session; its settings stay
        conf = _runtime_settings(conf)
        builder = SparkSession.builder
        where = f"on Databricks Runtime {databricks_runtime}"
    else:
        conf = _prepare_driver(conf.get("spark.master", "local").startswith("local"), conf)
        conf, delta_source = _with_delta_if_available(conf)
        builder = SparkSession.builder
        where = f"on {conf.get('spark.master', 'local')}"
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if remote or databricks_runtime:
        delta_source = "delta-spark" if session_has_delta(spark) else "delta-rs (deltalake)"
    else:
        spark.sparkContext.setLogLevel(conf.get("cltv.log_level", "WARN"))
        _quiet_known_warnings(spark)
    logger.info("Spark %s session %s; Delta tables via %s", spark.version, where, delta_source)
    return spark


class _Starting:
    """The local session being built in the background (start_spark_session), until
    spark_session() has it."""

    session: Future[SparkSession] | None = None


def start_spark_session(spark_conf: Mapping[str, Any] | None = None) -> None:
    """Build the run's local session in a background thread, and return at once.

    A local driver JVM takes seconds to start. Until the first node needs Spark, the run only
    sets up MLflow, builds the catalog and starts its MLflow run, so those happen meanwhile.
    :func:`spark_session` waits for it. A Spark Connect session, a Databricks session or an
    active one is returned quickly, so those are handled at once, in this thread.
    """
    remote_or_cluster = os.environ.get("SPARK_REMOTE") or os.environ.get(
        "DATABRICKS_RUNTIME_VERSION"
    )
    if _Starting.session is not None:
        return
    if remote_or_cluster or SparkSession.getActiveSession():
        get_or_create_spark_session(spark_conf)
        return
    starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-session")
    _Starting.session = starter.submit(get_or_create_spark_session, spark_conf)
    starter.shutdown(wait=False)


def spark_session() -> SparkSession:
    """The project's session: the one being started in the background once it is ready (its
    error, if it failed), or the one Spark already has. It becomes this thread's active session.
    """
    if _Starting.session is None:
        return SparkSession.builder.getOrCreate()
    spark = _Starting.session.result()
    _Starting.session = None
    # Spark keeps the active session per thread: it was the starting thread's only
    spark._jvm.SparkSession.setActiveSession(spark._jsparkSession)
    return spark


# Spark warnings that say nothing to act on here, repeated enough to bury a run's progress:
# the metrics rank small score tables over one window (167 "No Partition Defined for Window
# operation!" lines in a 1M-line run), and boosting that stops on its validation loss is
# reported as a model-size stop ("… exceeds threshold (0 bytes)").
QUIET_SPARK_LOGGERS = (
    "org.apache.spark.sql.execution.window",
    "org.apache.spark.ml.tree.impl.GradientBoostedTrees",
)


def _quiet_known_warnings(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    error = jvm.org.apache.logging.log4j.Level.ERROR
    for name in QUIET_SPARK_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, error)


def _console_progress() -> str:
    """Spark's live stage progress bar, on a terminal only: in a log file or CI its
    carriage-return redraws would be hundreds of lines of noise (the JVM writes it to the
    stderr it shares with this process)."""
    return "true" if sys.stderr.isatty() else "false"


def _redact(remote: str) -> str:
    """A Spark Connect URL without its token (``sc://host:443/;token=…``)."""
    return re.sub(r"(?i)(token=)[^;]*", r"\1<redacted>", remote)
