"""Delta jar discovery and Java detection never reach the network."""

from __future__ import annotations

import logging
import re
from importlib import metadata

from cltv.java import java_major_version
from cltv.spark import find_local_delta_jars, is_spark_connect


def test_delta_jars_found_in_a_warm_ivy_cache(tmp_path):
    version = metadata.version("delta-spark")
    jars = tmp_path / ".ivy2.5.2" / "jars"
    jars.mkdir(parents=True)
    assert find_local_delta_jars(tmp_path) == []
    (jars / f"io.delta_delta-spark_2.13-{version}.jar").write_bytes(b"")
    assert find_local_delta_jars(tmp_path) == []  # delta-storage is needed too
    (jars / f"io.delta_delta-storage-{version}.jar").write_bytes(b"")
    assert [p.name for p in find_local_delta_jars(tmp_path)] == [
        f"io.delta_delta-spark_2.13-{version}.jar",
        f"io.delta_delta-storage-{version}.jar",
    ]


def test_delta_jars_of_another_version_are_ignored(tmp_path):
    maven = tmp_path / ".m2" / "repository" / "io" / "delta"
    for artifact, name in [
        ("delta-spark_2.13", "delta-spark_2.13-0.0.1.jar"),
        ("delta-storage", "delta-storage-0.0.1.jar"),
    ]:
        (maven / artifact / "0.0.1").mkdir(parents=True)
        (maven / artifact / "0.0.1" / name).write_bytes(b"")
    assert find_local_delta_jars(tmp_path) == []


def test_java_version_of_a_fake_java(tmp_path):
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"21.0.2\" 2024-01-16' >&2\n")
    fake.chmod(0o755)
    assert java_major_version(fake) == 21
    old = tmp_path / "java8"
    old.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    old.chmod(0o755)
    assert java_major_version(old) == 8
    assert java_major_version(tmp_path / "missing") is None


def test_classic_session_is_not_connect(spark):
    assert not is_spark_connect(spark)


def test_node_timing_counts_the_spark_jobs_a_node_runs_at_debug(spark, caplog):
    from kedro.pipeline import Node

    from cltv.hooks import NodeTimingHook

    hook = NodeTimingHook()
    node = Node(lambda: None, inputs=None, outputs="counted", name="two_jobs")
    spark.range(5).count()  # before the node: not its job
    with caplog.at_level(logging.DEBUG, logger="cltv.hooks"):
        hook.before_node_run(node)
        # one job each (a count would add a shuffle stage's job under AQE)
        spark.range(10).collect()
        spark.range(20).collect()
        hook.after_node_run(node, {"counted": None})
        hook.after_dataset_saved("counted", node)
        spark.range(3).count()  # after it: the group has ended
    lines = [r.getMessage() for r in caplog.records if "two_jobs" in r.getMessage()]
    assert lines[0].startswith("Node two_jobs took ") and lines[0].endswith(" s")
    assert re.fullmatch(r"Node two_jobs took \d+\.\d s and ran 2 Spark jobs", lines[1])
    # the same node again (a notebook's second run): its own jobs only
    with caplog.at_level(logging.DEBUG, logger="cltv.hooks"):
        hook.before_node_run(node)
        spark.range(10).collect()
        hook.after_node_run(node, {"counted": None})
        hook.after_dataset_saved("counted", node)
    lines = [r.getMessage() for r in caplog.records if "two_jobs" in r.getMessage()]
    assert re.fullmatch(r"Node two_jobs took \d+\.\d s and ran 1 Spark jobs", lines[-1])
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None
