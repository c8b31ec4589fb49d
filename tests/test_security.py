"""Security hygiene: no credentials in the repository, the run log or the MLflow store."""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import FAKE_TOKEN, project_registry

# token shapes of the services this project talks to, and private keys
TOKEN_PATTERNS = {
    "Databricks personal access token": re.compile(r"dapi[0-9a-f]{32}"),
    "GitHub token": re.compile(r"gh[pousr]_[A-Za-z0-9]{36}"),
    "AWS access key": re.compile(r"AKIA[0-9A-Z]{16}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


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


def test_a_run_with_credentials_around_logs_none_of_them(trained_twice):
    """The shell run of :func:`trained_twice` has the token in conf/local/credentials.yml and
    in DATABRICKS_TOKEN: neither its log nor its MLflow run holds it."""
    log = trained_twice.log
    credentials = trained_twice.project / "conf" / "local" / "credentials.yml"
    assert FAKE_TOKEN in credentials.read_text()  # it was there to leak
    assert FAKE_TOKEN not in log and _leaks(log) == []
    # the same run shows what any run's log shows: each node's time, and (not a terminal)
    # no progress bar redraws
    started = re.findall(r"Running node: (\w+):", log)
    assert started and sorted(re.findall(r"Node (\w+) took \d+\.\d s", log)) == sorted(started)
    assert "\r" not in log and "[Stage " not in log
    client = project_registry(trained_twice.project)
    experiment = client.get_experiment_by_name("cltv-churn")
    (run,) = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    assert run.info.start_time / 1000 >= trained_twice.started  # this run's, not the first's
    assert run.data.params  # the run's parameters were logged
    logged = {**run.data.params, **run.data.tags}
    assert [k for k, v in logged.items() if FAKE_TOKEN in v or _leaks(v)] == []
