"""The packaged project, as a Databricks job runs it: ``kedro package`` and the entry point.

``kedro package`` builds the wheel and the conf archive from a copy of the project. The wheel
is installed, without its dependencies, into a fresh venv that borrows this venv's third-party
packages (no download, nothing reinstalled), and runs from an empty folder: no
``pyproject.toml``, no ``src/``, only the installed package and ``--conf-source``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path
from types import SimpleNamespace

import pytest
from deltalake import DeltaTable
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cltv.synthetic import write_csv

from .conftest import PROJECT_ROOT, whole_run_fixture

# what the Databricks runtime ships: only ever in the `spark` extra, never forced on a cluster
RUNTIME_SHIPPED = {"pyspark", "delta-spark"}
HARD_REQUIREMENTS = {"kedro", "kedro-datasets", "kedro-mlflow", "mlflow", "deltalake"}


def _env(**extra: str) -> dict[str, str]:
    """This process's environment, minus what a cluster would not have."""
    # DO_NOT_TRACK: kedro-telemetry makes no network calls from tests
    env = {**os.environ, "DO_NOT_TRACK": "1", **extra}
    # cltv must come from the installed wheel (PYTHONPATH could point at src/), and Spark be
    # the local one that conf/base/spark.yml describes
    for name in ("PYTHONPATH", "SPARK_REMOTE"):
        env.pop(name, None)
    return env


def _run(command: list, cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command],
        check=False,  # the callers check the status
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _succeeds(
    command: list, cwd: Path, timeout: int = 300, **env: str
) -> subprocess.CompletedProcess:
    completed = _run(command, cwd, timeout, **env)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> SimpleNamespace:
    """``kedro package`` in a copy of the project: the repo's dist/ and build/ stay untouched."""
    project = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, project)
    shutil.copytree(
        PROJECT_ROOT / "src",
        project / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    # a developer's secrets in conf/local must not travel with the archive
    (project / "conf" / "local").mkdir()
    (project / "conf" / "local" / "credentials.yml").write_text("token: do-not-ship\n")
    _succeeds([Path(sys.executable).parent / "kedro", "package"], cwd=project)
    (wheel,) = (project / "dist").glob("cltv-*-py3-none-any.whl")
    return SimpleNamespace(wheel=wheel, conf=project / "dist" / "conf-cltv.tar.gz")


def _wheel_text(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [m for m in archive.namelist() if m.endswith(f".dist-info/{name}")]
        return archive.read(member).decode()


def _requirements(wheel: Path) -> dict[str, Requirement]:
    metadata = Parser().parsestr(_wheel_text(wheel, "METADATA"))
    requirements = [Requirement(line) for line in metadata.get_all("Requires-Dist")]
    return {canonicalize_name(r.name): r for r in requirements}


def test_wheel_is_cltv_with_the_console_script(package):
    metadata = Parser().parsestr(_wheel_text(package.wheel, "METADATA"))
    assert metadata["Name"] == "cltv"
    entry_points = _wheel_text(package.wheel, "entry_points.txt")
    assert "[console_scripts]" in entry_points
    assert "cltv-churn = cltv.__main__:main" in entry_points.splitlines()


def test_runtime_shipped_packages_only_come_with_the_spark_extra(package):
    requirements = _requirements(package.wheel)
    for name in RUNTIME_SHIPPED:
        marker = requirements[name].marker
        assert marker is not None, f"{name} would be installed on the cluster"
        assert marker.evaluate({"extra": "spark"})
        assert not marker.evaluate({"extra": ""})


def test_framework_and_storage_packages_are_hard_requirements(package):
    requirements = _requirements(package.wheel)
    for name in HARD_REQUIREMENTS:
        assert requirements[name].marker is None, name


def test_conf_archive_has_base_conf_and_no_local_files(package):
    with tarfile.open(package.conf) as archive:
        files = {m.name for m in archive.getmembers() if m.isfile()}
    expected = {"catalog.yml", "parameters.yml", "spark.yml", "mlflow.yml"}
    assert {f"conf/base/{name}" for name in expected} <= files
    assert "conf/logging.yml" in files
    # kedro package keeps the (empty) conf/local folder but none of its YAML
    assert not [name for name in files if name.startswith("conf/local/")]


@pytest.fixture(scope="module")
def venv(package, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed and this venv's packages borrowed."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check"]
    _succeeds([*pip, "install", "--no-deps", "--no-index", package.wheel], cwd=venv)
    site = _succeeds(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=venv
    ).stdout.strip()
    # a plain path line: this venv's site-packages joins sys.path after the fresh one, but its
    # own .pth files (the editable install of cltv among them) are not processed
    borrowed = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site) / "borrowed-site-packages.pth").write_text("\n".join(borrowed) + "\n")
    return venv


def test_installed_cltv_is_the_wheel_not_the_source_tree(venv, tmp_path):
    completed = _succeeds(
        [venv / "bin" / "python", "-c", "import cltv; print(cltv.__file__)"], cwd=tmp_path
    )
    assert Path(completed.stdout.strip()).resolve().is_relative_to(venv.resolve())


def test_python_m_cltv_is_kedro_run(venv, tmp_path):
    completed = _succeeds([venv / "bin" / "python", "-m", "cltv", "--help"], cwd=tmp_path)
    assert "Run the pipeline." in completed.stdout
    for option in ("--conf-source", "--env", "--pipeline", "--params"):
        assert option in completed.stdout


@whole_run_fixture(scope="module")
def packaged_run(venv, package, tmp_path_factory) -> SimpleNamespace:
    """``cltv-churn`` from an empty folder, as a wheel task: data_processing on 5,000 lines."""
    inputs = tmp_path_factory.mktemp("inputs")
    csv = inputs / "invoices.csv"
    truth = write_csv(5000, csv, seed=3)
    # plain one-line log records (Kedro's default, rich, wraps them at 80 columns)
    with tarfile.open(package.conf) as archive:
        logging_yml = archive.extractfile("conf/logging.yml").read()
    (inputs / "logging.yml").write_bytes(logging_yml)
    workdir = tmp_path_factory.mktemp("workdir")
    completed = _succeeds(
        [
            venv / "bin" / "cltv-churn",
            "--conf-source",
            package.conf,
            "--pipeline",  # as the bundle's job passes it
            "data_processing",
            "--params",
            f"input_path={csv}",
        ],
        cwd=workdir,
        timeout=600,
        KEDRO_LOGGING_CONFIG=str(inputs / "logging.yml"),
    )
    return SimpleNamespace(workdir=workdir, truth=truth, log=completed.stdout + completed.stderr)


def _rows(table: Path) -> int:
    assert (table / "_delta_log").is_dir(), table
    return DeltaTable(str(table)).to_pyarrow_dataset().count_rows()


def test_packaged_run_writes_delta_tables_under_the_working_folder(packaged_run):
    # without a pyproject.toml around, Kedro's project folder is the working folder, and the
    # catalog's relative data/... paths are made absolute against it
    data = packaged_run.workdir / "data"
    clean = _rows(data / "02_intermediate" / "transactions_clean")
    quarantined = _rows(data / "02_intermediate" / "transactions_quarantine")
    assert clean > 0
    assert clean + quarantined == packaged_run.truth["rows"]
    customers = _rows(data / "03_primary" / "customer_summary")
    assert 0 < customers <= packaged_run.truth["bgnbd"]["n_customers"]
    report = json.loads((data / "08_reporting" / "quarantine_report.json").read_text())
    assert report["quarantined_rows"] == quarantined


def test_packaged_run_logs_the_delta_engine(packaged_run):
    assert "Delta tables via" in packaged_run.log


def test_packaged_run_keeps_mlflow_in_the_working_folder(packaged_run, venv):
    assert (packaged_run.workdir / "mlflow.db").is_file()
    # nothing lands next to the installed package
    assert not list(venv.rglob("mlflow.db"))
    assert not list(venv.rglob("mlruns"))
    assert not list(venv.rglob("data"))


def test_failing_packaged_run_exits_non_zero_naming_the_file(venv, package, tmp_path, whole_run):
    completed = _run(
        [
            venv / "bin" / "python",
            "-m",
            "cltv",
            "--conf-source",
            package.conf,
            "--pipeline",
            "data_processing",
            "--params",
            "input_path=/nonexistent.csv",
        ],
        cwd=tmp_path,
    )
    assert completed.returncode != 0
    last_line = completed.stderr.strip().splitlines()[-1]
    assert "/nonexistent.csv" in last_line
    assert "not found" in last_line
    assert not (tmp_path / "data" / "02_intermediate" / "transactions_clean").exists()
