"""One SparkSession for the whole test run, built the way the project builds it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cltv.spark import get_or_create_spark_session

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark():
    conf = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "spark.yml").read_text())
    conf["spark.sql.shuffle.partitions"] = 2
    conf["spark.driver.memory"] = "2g"
    session = get_or_create_spark_session(conf)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT
