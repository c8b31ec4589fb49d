"""What install prepares for a run's start (cltv.warm_start): the migrated MLflow store a new
project's store is copied from, and the class archive a local Spark driver starts from."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest

from cltv import warm_start
from cltv.java import configure_java


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setattr(warm_start, "cache_dir", lambda: folder)
    return folder


def _experiments(store: Path) -> list[tuple[str, str, str]]:
    uri = f"sqlite:///{store}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return [(e.experiment_id, e.name, e.artifact_location) for e in client.search_experiments()]


def test_a_new_store_starts_from_the_template_as_mlflow_would_make_it(cache, tmp_path, monkeypatch):
    """The copy holds what MLflow makes in a new store, Default experiment included, with its
    artifacts where the project is; it takes runs, experiments and models."""
    warm_start.make_mlflow_store_template()
    project, fresh = tmp_path / "project", tmp_path / "fresh"
    fresh.mkdir()
    assert warm_start.start_mlflow_store(project / "mlflow.db")

    monkeypatch.chdir(fresh)  # MLflow puts a new store's Default artifacts under the cwd
    made_by_mlflow = _experiments(fresh / "mlflow.db")
    monkeypatch.chdir(project)
    copied = _experiments(project / "mlflow.db")
    assert made_by_mlflow == [("0", "Default", str(fresh / "mlruns" / "0"))]
    assert copied == [("0", "Default", str(project / "mlruns" / "0"))]

    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.create_experiment("cltv-churn") == "1"
    run = client.create_run("1")
    client.log_metric(run.info.run_id, "auc", 0.75)
    client.create_registered_model("cltv_value")
    assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.75}
    assert [m.name for m in client.search_registered_models()] == ["cltv_value"]


def test_an_existing_store_is_never_replaced(cache, tmp_path):
    warm_start.make_mlflow_store_template()
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"runs of a project")
    assert not warm_start.start_mlflow_store(store)
    assert store.read_bytes() == b"runs of a project"


def test_without_a_template_a_new_store_is_left_to_mlflow(cache, tmp_path):
    assert not warm_start.start_mlflow_store(tmp_path / "mlflow.db")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.fixture
def java_and_spark(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A JAVA_HOME and a SPARK_HOME of a few files, for the archive's fingerprint."""
    java_home, spark_home = tmp_path / "java", tmp_path / "spark"
    (java_home / "lib" / "server").mkdir(parents=True)
    (java_home / "lib" / "server" / "libjvm.so").write_bytes(b"jvm 17.0.15")
    (spark_home / "jars").mkdir(parents=True)
    for name in ("spark-core_2.13-4.2.0.jar", "spark-sql_2.13-4.2.0.jar"):
        (spark_home / "jars" / name).write_bytes(b"classes")
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    monkeypatch.setenv("SPARK_HOME", str(spark_home))
    return java_home, spark_home


def test_the_archive_is_named_for_its_java_and_spark_jars(cache, java_and_spark):
    """Another JVM, a jar changed, added or taken away: another archive, so a driver never
    starts from one made for other classes."""
    java_home, spark_home = java_and_spark
    names = [warm_start.class_data_archive()]
    assert warm_start.class_data_archive() == names[0]
    (java_home / "lib" / "server" / "libjvm.so").write_bytes(b"jvm 17.0.16")
    names.append(warm_start.class_data_archive())
    (spark_home / "jars" / "spark-sql_2.13-4.2.0.jar").write_bytes(b"classes, patched")
    names.append(warm_start.class_data_archive())
    (spark_home / "jars" / "delta-spark_2.13-4.0.0.jar").write_bytes(b"more classes")
    names.append(warm_start.class_data_archive())
    (spark_home / "jars" / "spark-core_2.13-4.2.0.jar").unlink()
    names.append(warm_start.class_data_archive())
    assert len(set(names)) == 5
    assert all(name.parent == cache and name.suffix == ".jsa" for name in names)


def test_a_local_driver_starts_from_the_archive_when_there_is_one(cache, java_and_spark):
    conf = {"spark.master": "local[*]", "spark.driver.extraJavaOptions": "-Dlog4j2.level=warn"}
    assert warm_start.with_class_data_archive(conf) == conf
    archive = warm_start.class_data_archive()
    cache.mkdir()
    archive.write_bytes(b"archive")
    assert warm_start.with_class_data_archive(conf) == {
        "spark.master": "local[*]",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.level=warn -XX:SharedArchiveFile={archive}",
    }
    assert warm_start.with_class_data_archive({}) == {
        "spark.driver.extraJavaOptions": f"-XX:SharedArchiveFile={archive}"
    }
    own_class_path = {**conf, "spark.driver.extraClassPath": "/opt/extra/*"}
    assert warm_start.with_class_data_archive(own_class_path) == own_class_path
    for own_archive in ("-XX:SharedArchiveFile=/opt/mine.jsa", "-XX:ArchiveClassesAtExit=/x.jsa"):
        own = {**conf, "spark.driver.extraJavaOptions": f"-Dlog4j2.level=warn {own_archive}"}
        assert warm_start.with_class_data_archive(own) == own


def test_a_local_driver_maps_spark_classes_from_the_installed_archive(tmp_path):
    """The real thing: the archive ``make install`` made (made here if it was not) is mapped
    by a driver the project starts, which loads Spark's classes from it, not from the jars."""
    configure_java()
    archive = warm_start.make_class_data_archive()
    loads = tmp_path / "class-load.log"
    driver = textwrap.dedent(
        f"""
        from cltv.spark import get_or_create_spark_session
        spark = get_or_create_spark_session({{
            "spark.master": "local[1]", "spark.ui.enabled": "false",
            "spark.driver.extraJavaOptions": "-Xlog:class+load=info:file={loads}",
        }})
        assert spark.range(10).groupBy().sum().first()[0] == 45
        """
    )
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    subprocess.run([sys.executable, "-c", driver], check=True, env=env, timeout=300)
    from_archive = re.findall(r"\] (\S+) source: shared objects file \(top\)", loads.read_text())
    assert "org.apache.spark.SparkContext" in from_archive
    assert len(from_archive) > 3_000, f"{len(from_archive)} classes from {archive}"
