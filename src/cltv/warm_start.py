"""What ``make install`` prepares once so that every run starts sooner.

Two things each new run used to rebuild from scratch, and now copies or maps:

* **An empty MLflow store with MLflow's migrations applied.** A new ``mlflow.db`` replays every
  one of MLflow's alembic migrations, ~4 s, before the first run of a project (or after
  ``make clean-data``) can start. :class:`cltv.hooks.MlflowStoreHook` copies this template
  instead when the project has no store yet. Its Default experiment is removed: MLflow makes it
  again on the first open, where the store is, as it would have.
* **A class-data archive of the local Spark driver** (AppCDS, JEP 350). A JVM loads and checks
  Spark's classes from its jars at every start; a driver started with ``-XX:SharedArchiveFile``
  maps the ones it loaded when the archive was made, which takes ~4 s off a local session's start
  here. An archive is only valid for the JVM and the jars it was made with, so its name carries
  a fingerprint of both: after an upgrade of Java or PySpark it is not found, and the driver
  starts as before until ``python -m cltv.warm_start`` (``make install``) makes a new one.

Both live in ``<environment>/share/cltv-churn`` (the virtualenv's, with ``make``): deleting them
only costs start-up time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

# `python -m cltv.warm_start --archive-workload PATH`: the process whose driver writes the archive
_WORKLOAD_FLAG = "--archive-workload"
# JVM options that choose a class archive themselves
_CDS_OPTIONS = re.compile(r"-XX:(SharedArchiveFile|ArchiveClassesAtExit)=")


def cache_dir() -> Path:
    """Where this environment keeps what a run starts from."""
    return Path(sys.prefix) / "share" / "cltv-churn"


def _partial(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: a reader (a run started
    alongside, an install stopped halfway) sees no file or a whole one."""
    return path.with_name(f"{path.name}.{os.getpid()}.partial")


# ------------------------------------------------------------------ the MLflow store
def mlflow_store_template(folder: Path | None = None) -> Path:
    """The migrated, empty store for the installed MLflow (it may not have been made)."""
    return (folder or cache_dir()) / f"mlflow-{metadata.version('mlflow')}.db"


def make_mlflow_store_template(folder: Path | None = None) -> Path:
    """Make :func:`mlflow_store_template` in ``folder`` unless it is there; return it."""
    template = mlflow_store_template(folder)
    if template.is_file():
        return template
    import mlflow

    template.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(template)
    uri = f"sqlite:///{partial}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()  # tracking tables, migrated
    client.search_registered_models()  # the registry's, in the same database
    # the Default experiment records the folder it was made from as its artifact location
    with sqlite3.connect(partial) as database:
        database.execute("DELETE FROM experiment_tags")
        database.execute("DELETE FROM experiments")
    database.close()
    partial.replace(template)
    return template


def start_mlflow_store(database: Path) -> bool:
    """Begin ``database`` as a copy of the template when it does not exist yet and the template
    does; True when it was copied."""
    template = mlflow_store_template()
    if database.exists() or not template.is_file():
        return False
    database.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(database)
    shutil.copyfile(template, partial)
    partial.replace(database)
    return True


# ------------------------------------------------------------------ the driver's classes
def _jvm_and_jars() -> list[Path]:
    """The files a driver archive is only valid for: the JVM library of ``JAVA_HOME`` (set by
    :func:`cltv.java.configure_java`) and the jars of the Spark that PySpark starts."""
    from pyspark.find_spark_home import _find_spark_home

    java_home = Path(os.environ["JAVA_HOME"]).resolve()
    # libjvm.so, libjvm.dylib, jvm.dll: whichever this platform's JVM has
    jvm = sorted(java_home.glob("*/server/*jvm.*"))
    jars = sorted((Path(_find_spark_home()) / "jars").glob("*.jar"))
    if not jvm or not jars:
        raise FileNotFoundError(f"no JVM library under {java_home} or no Spark jars")
    return [*jvm, *jars]


def class_data_archive() -> Path:
    """The driver archive for this JVM and these Spark jars (it may not have been made)."""
    fingerprint = hashlib.sha256()
    for path in _jvm_and_jars():
        stat = path.stat()
        fingerprint.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return cache_dir() / f"spark-driver-{fingerprint.hexdigest()[:16]}.jsa"


def with_class_data_archive(conf: dict[str, str]) -> dict[str, str]:
    """``conf`` for a local driver, started from the archive when there is one for it.

    A driver with its own class path is left alone: the archive would not match it (the JVM
    would say so, and load every class as usual). So is one whose options already name a class
    archive, to use or to write (:func:`make_class_data_archive`'s): a JVM cannot write an
    archive while it maps a dynamic one."""
    options = conf.get("spark.driver.extraJavaOptions", "")
    if "spark.driver.extraClassPath" in conf or _CDS_OPTIONS.search(options):
        return conf
    try:
        archive = class_data_archive()
    except (KeyError, OSError) as error:  # no JAVA_HOME, or a Java or Spark laid out otherwise
        logger.debug("Spark: the driver starts without a class archive: %r", error)
        return conf
    if not archive.is_file():
        return conf
    # -Xshare:auto (the default): an archive the JVM cannot map is skipped, not an error
    options = f"{options} -XX:SharedArchiveFile={archive}".strip()
    return {**conf, "spark.driver.extraJavaOptions": options}


def make_class_data_archive() -> Path | None:
    """Make :func:`class_data_archive` unless it is there: a driver runs a small workload of
    the operators the pipelines use and writes the classes it loaded as it exits. None when
    this Java writes no archive (a runtime built without the JDK's own class data, say)."""
    from cltv.java import configure_java

    configure_java()
    archive = class_data_archive()
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(archive)
    subprocess.run(
        [sys.executable, "-m", "cltv.warm_start", _WORKLOAD_FLAG, str(partial)], check=True
    )
    if not partial.is_file():
        return None
    partial.replace(archive)
    for stale in archive.parent.glob("spark-driver-*.jsa"):
        if stale != archive:  # made for a Java or a Spark no longer installed here
            stale.unlink()
    return archive


def _archive_workload(partial: Path) -> None:
    """Start a driver that dumps its classes to ``partial`` when its JVM exits (with this
    process), and have it plan and run what a run's first nodes do: read a CSV, parse
    timestamps, window, aggregate, join, cache on disk, write Parquet, convert with Arrow."""
    from pyspark import SparkContext, StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from cltv.spark import get_or_create_spark_session

    spark = get_or_create_spark_session(
        {
            "spark.master": "local[2]",
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            # without the lines on the classes it leaves out (signed jars, old bytecode)
            "spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={partial} "
            "-Xlog:cds=off,cds+dynamic=off",
        }
    )
    folder = partial.with_suffix(".workload")
    folder.mkdir(exist_ok=True)
    try:
        csv = folder / "lines.csv"
        rows = (
            f"{n // 3},{n % 7},2011-0{1 + n % 9}-1{n % 10} 10:0{n % 10},{n}.5" for n in range(300)
        )
        csv.write_text("\n".join(["Invoice,Customer ID,InvoiceDate,Price", *rows]) + "\n")
        lines = (
            spark.read.option("header", True).option("mode", "PERMISSIVE").csv(str(csv))
            .withColumn("at", F.to_timestamp("InvoiceDate", "yyyy-MM-dd HH:mm"))
            .withColumn("price", F.col("Price").cast("decimal(18,2)"))
            .persist(StorageLevel.DISK_ONLY)
        )  # fmt: skip
        by_customer = Window.partitionBy("Customer ID").orderBy("at")
        ordered = lines.withColumn("gap", F.datediff("at", F.lag("at").over(by_customer)))
        summary = ordered.groupBy("Customer ID").agg(
            F.count("*").alias("orders"),
            F.sum("price").alias("spend"),
            F.percentile_approx("gap", 0.5).alias("usual_gap"),
            F.aggregate(F.collect_list(F.col("price").cast("double")), F.lit(0.0),
                        lambda total, price: total + price).alias("total"),
        )  # fmt: skip
        joined = lines.join(F.broadcast(summary), "Customer ID").observe(
            "rows", F.count(F.lit(1)).alias("rows")
        )
        joined.write.mode("overwrite").parquet(str(folder / "joined"))
        spark.read.parquet(str(folder / "joined")).toPandas()
        spark.createDataFrame(summary.toPandas()).count()
        lines.unpersist()
    finally:
        spark.stop()
        shutil.rmtree(folder, ignore_errors=True)
    # the JVM writes the archive as it exits, which it does when its stdin closes; wait for it
    driver = SparkContext._gateway.proc
    driver.stdin.close()
    driver.wait(timeout=600)


def main(argv: list[str]) -> None:
    if argv[:1] == [_WORKLOAD_FLAG]:
        _archive_workload(Path(argv[1]))
        return
    if argv:
        sys.exit("usage: python -m cltv.warm_start")
    print(f"MLflow store template: {make_mlflow_store_template()}")
    archive = make_class_data_archive()
    print(f"Spark driver class archive: {archive or 'none, this Java does not write one'}")


if __name__ == "__main__":
    main(sys.argv[1:])
