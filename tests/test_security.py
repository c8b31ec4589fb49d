"""Security hygiene: no credentials in the repository, the run log or the MLflow store."""

from __future__ import annotations

import re
import subprocess

import mlflow
import pytest
import yaml

from cltv.synthetic import write_csv

from .conftest import copy_project, run_cli

# token shapes of the services this project talks to, and private keys
TOKEN_PATTERNS = {
    "Databricks personal access token": re.compile(r"dapi[0-9a-f]{32}"),
    "GitHub token": re.compile(r"gh[pousr]_[A-Za-z0-9]{36}"),
    "AWS access key": re.compile(r"AKIA[0-9A-Z]{16}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
FAKE_TOKEN = "dapi" + "0123456789abcdef" * 2  # the shape of a real one, for the scans to find


def _leaks(text: str) -> list[str]:
    return [name for name, pattern in TOKEN_PATTERNS.items() if pattern.search(text)]


def _tracked_files(root) -> list:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [root / name for name in listed.stdout.split("\0") if name]


def test_scanner_finds_a_token():
    assert _leaks(f"token: {FAKE_TOKEN}") == ["Databricks personal access token"]
    assert _leaks("token: <personal access token>") == []


def test_no_credentials_are_committed(project_root):
    leaking = {}
    for path in _tracked_files(project_root):
        if path.is_file() and path.suffix not in {".png", ".parquet"}:
            found = _leaks(path.read_text(errors="ignore"))
            if found:
                leaking[str(path.relative_to(project_root))] = found
    assert leaking == {}


def test_local_conf_and_credentials_are_git_ignored(project_root):
    for path in ("conf/local/credentials.yml", "conf/local/spark.yml", "conf/base/credentials.yml"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=project_root, check=False)
        assert ignored.returncode == 0, f"{path} is not git-ignored"


def test_a_run_with_credentials_around_logs_none_of_them(project_root, tmp_path, whole_run):
    project = copy_project(project_root, tmp_path / "project")
    host = "https://example.cloud.databricks.com"
    credentials = {"databricks": {"host": host, "token": FAKE_TOKEN}}
    (project / "conf" / "local" / "credentials.yml").write_text(yaml.safe_dump(credentials))
    csv = tmp_path / "input.csv"
    write_csv(3000, csv, seed=11)
    log = run_cli(
        project,
        "--pipelines=data_processing",
        f"--params=input_path={csv}",
        memory="1g",
        DATABRICKS_TOKEN=FAKE_TOKEN,
    )
    assert FAKE_TOKEN not in log and _leaks(log) == []
    # the same run shows what any run's log shows: each node's time, and (not a terminal)
    # no progress bar redraws
    started = re.findall(r"Running node: (\w+):", log)
    assert started and sorted(re.findall(r"Node (\w+) took \d+\.\d s", log)) == sorted(started)
    assert "\r" not in log and "[Stage " not in log
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["cltv-churn"]).iloc[0]
    logged = {k: str(v) for k, v in run.items() if k.startswith(("params.", "tags."))}
    assert any(k.startswith("params.") for k in logged)  # the run's parameters were logged
    assert [k for k, v in logged.items() if FAKE_TOKEN in v or _leaks(v)] == []
