"""``kedro cltv deploy``: the SDK deploy, against a local stand-in for the Databricks REST API.

The stand-in answers the endpoints the deploy calls, and checks each request against the SDK's
own signatures and models: a field the API does not know, a body that does not survive the SDK's
``JobSettings``, a path it does not serve, or a missing ``Authorization: Bearer <token>`` header
fails the test. It keeps its jobs and files, so tests read back what a deploy left.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from click.testing import CliRunner
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service import jobs, workspace
from databricks.sdk.service.iam import CurrentUserAPI
from kedro.config import OmegaConfigLoader

from cltv.cli import cli
from cltv.deploy import workspace as deploy_module
from cltv.deploy.bundle import COMPUTE_KINDS
from cltv.deploy.workspace import (
    DeployError,
    deploy,
    deploy_project,
    find_artifacts,
    resolve_credentials,
    target_settings,
)

from .conftest import copy_project

USER = "someone@example.com"
WORKSPACE_ID = "1234567890123456"
# data_processing -> cltv -> churn_modeling (the purchase models' churn scores) -> reporting
EXPECTED_DAG = {
    "data_processing": [],
    "churn_modeling": ["cltv"],
    "cltv": ["data_processing"],
    "reporting": ["churn_modeling"],
}


# ---------------------------------------------------------------- the stand-in workspace
class Rejected(Exception):
    """A request the real API would refuse too: answered with ``status`` and an error code."""

    def __init__(self, status: int, error_code: str, message: str, contract: bool = True):
        super().__init__(message)
        self.status, self.error_code, self.contract = status, error_code, contract


def _parameters(method: Callable) -> set[str]:
    """The request fields of an SDK method: its parameters, as the SDK names them on the wire."""
    return set(inspect.signature(method).parameters) - {"self"}


def _check_fields(payload: dict, method: Callable, required: set[str] = frozenset()) -> None:
    unknown, missing = set(payload) - _parameters(method), required - set(payload)
    if unknown or missing:
        raise Rejected(
            400, "INVALID_PARAMETER_VALUE",
            f"{method.__qualname__}: unknown fields {sorted(unknown)}, missing {sorted(missing)}",
        )  # fmt: skip


def _check_round_trip(model: type, payload: dict, what: str) -> None:
    """``from_dict`` drops what the model does not know: the round trip must be lossless."""
    again = model.from_dict(payload).as_dict()
    if again != payload:
        raise Rejected(
            400, "INVALID_PARAMETER_VALUE",
            f"{what} does not round-trip through {model.__name__}: sent {json.dumps(payload)}, "
            f"the model keeps {json.dumps(again)}",
        )  # fmt: skip


def _multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and posted files of a multipart/form-data body, bytes exact."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    fields, files = {}, {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, content = part[2:].partition(b"\r\n\r\n")  # part[2:]: the CRLF after a boundary
        content = content[:-2]  # the CRLF before the next boundary
        disposition = next(
            line for line in head.decode().split("\r\n") if line.lower().startswith("content-dis")
        )
        params = dict(
            item.strip().split("=", 1) for item in disposition.split(";")[1:] if "=" in item
        )
        name = params["name"].strip('"')
        if "filename" in params:
            files[name] = content
        else:
            fields[name] = content.decode()
    return fields, files


class FakeWorkspace:
    """The stand-in's state: jobs, workspace files and folders, and the requests it was sent."""

    def __init__(self, token: str):
        self.token = token
        self.url = ""
        self.jobs: dict[int, dict] = {}  # job_id -> settings
        self.files: dict[str, bytes] = {}
        self.folders: set[str] = {"/Workspace", "/Workspace/Users", f"/Workspace/Users/{USER}"}
        self.requests: list[dict] = []  # without the Authorization header
        self.failures: list[str] = []  # requests the real API would not accept
        self.rejected_tokens = 0
        self._ids = iter(range(1001, 10_000))
        self.lock = threading.Lock()

    def add_job(self, settings: dict) -> int:
        job_id = next(self._ids)
        self.jobs[job_id] = copy.deepcopy(settings)
        return job_id

    def calls(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    # -------------------------------------------------------------- endpoints
    def well_known(self, request: dict) -> dict:
        # the SDK asks every host for it when a client is made (no credentials sent)
        return {"oidc_endpoint": f"{self.url}/oidc", "workspace_id": WORKSPACE_ID}

    def me(self, request: dict) -> dict:
        _check_fields(request["query"], CurrentUserAPI.me)
        return {"id": "42", "userName": USER, "displayName": "Some One", "active": True}

    def mkdirs(self, request: dict) -> dict:
        body = request["body"]
        _check_fields(body, workspace.WorkspaceAPI.mkdirs, required={"path"})
        path = body["path"].rstrip("/")
        while path.startswith("/Workspace/"):
            self.folders.add(path)
            path = path.rsplit("/", 1)[0]
        return {}

    def workspace_import(self, request: dict) -> dict:
        form, files = request["form"], request["files"]
        _check_fields({**form, **files}, workspace.WorkspaceAPI.import_, required={"path"})
        if set(files) != {"content"}:
            raise Rejected(400, "INVALID_PARAMETER_VALUE", "content must be the posted file")
        try:
            workspace.ImportFormat(form.get("format", "SOURCE"))
            if "language" in form:
                workspace.Language(form["language"])
        except ValueError as exc:
            raise Rejected(400, "INVALID_PARAMETER_VALUE", str(exc)) from exc
        if form.get("overwrite", "false") not in ("true", "false"):
            raise Rejected(400, "INVALID_PARAMETER_VALUE", "overwrite must be true or false")
        path = form["path"]
        if path.rsplit("/", 1)[0] not in self.folders:
            raise Rejected(
                404, "RESOURCE_DOES_NOT_EXIST", f"parent of {path} does not exist", False
            )
        if path in self.files and form.get("overwrite") != "true":
            raise Rejected(400, "RESOURCE_ALREADY_EXISTS", f"{path} already exists", False)
        self.files[path] = files["content"]
        return {}

    def jobs_list(self, request: dict) -> dict:
        query = request["query"]
        _check_fields(query, jobs.JobsAPI.list)
        name = query.get("name")
        found = [
            self._job(job_id, full=query.get("expand_tasks") == "true")
            for job_id, settings in sorted(self.jobs.items())
            if name is None or settings["name"].lower() == name.lower()  # the API ignores case
        ]
        return {"jobs": found, "has_more": False} if found else {"has_more": False}

    def jobs_get(self, request: dict) -> dict:
        _check_fields(request["query"], jobs.JobsAPI.get, required={"job_id"})
        return self._job(self._job_id(request["query"]["job_id"]), full=True)

    def jobs_create(self, request: dict) -> dict:
        body = request["body"]
        _check_fields(body, jobs.JobsAPI.create)
        _check_round_trip(jobs.JobSettings, body, "jobs/create")
        return {"job_id": self.add_job(body)}

    def jobs_reset(self, request: dict) -> dict:
        body = request["body"]
        _check_fields(body, jobs.JobsAPI.reset, required={"job_id", "new_settings"})
        _check_round_trip(jobs.JobSettings, body["new_settings"], "jobs/reset new_settings")
        self.jobs[self._job_id(body["job_id"])] = copy.deepcopy(body["new_settings"])
        return {}

    def jobs_run_now(self, request: dict) -> dict:
        body = request["body"]
        _check_fields(body, jobs.JobsAPI.run_now, required={"job_id"})
        self._job_id(body["job_id"])
        run_id = next(self._ids)
        return {"run_id": run_id, "number_in_job": run_id}

    def _job_id(self, value: Any) -> int:
        if isinstance(value, str) and value.isdigit():  # a query string's job_id
            value = int(value)
        if not isinstance(value, int) or value not in self.jobs:
            raise Rejected(400, "INVALID_PARAMETER_VALUE", f"Job {value} does not exist.", False)
        return value

    def _job(self, job_id: int, full: bool) -> dict:
        settings = copy.deepcopy(self.jobs[job_id])
        if not full:  # the list leaves out the arrays unless asked for them
            for key in ("tasks", "job_clusters", "environments", "parameters"):
                settings.pop(key, None)
        return {
            "job_id": job_id,
            "settings": settings,
            "creator_user_name": USER,
            "created_time": 1_700_000_000_000,
        }


ROUTES: dict[tuple[str, str], Callable[[FakeWorkspace, dict], dict]] = {
    ("GET", "/.well-known/databricks-config"): FakeWorkspace.well_known,
    ("GET", "/api/2.0/preview/scim/v2/Me"): FakeWorkspace.me,
    ("POST", "/api/2.0/workspace/mkdirs"): FakeWorkspace.mkdirs,
    ("POST", "/api/2.0/workspace/import"): FakeWorkspace.workspace_import,
    ("GET", "/api/2.2/jobs/list"): FakeWorkspace.jobs_list,
    ("GET", "/api/2.2/jobs/get"): FakeWorkspace.jobs_get,
    ("POST", "/api/2.2/jobs/create"): FakeWorkspace.jobs_create,
    ("POST", "/api/2.2/jobs/reset"): FakeWorkspace.jobs_reset,
    ("POST", "/api/2.2/jobs/run-now"): FakeWorkspace.jobs_run_now,
}


class _Handler(BaseHTTPRequestHandler):
    server: Any  # a ThreadingHTTPServer with a `workspace`

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: http.server writes every request to stderr."""

    def _handle(self, method: str) -> None:
        state: FakeWorkspace = self.server.workspace
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = {
            "method": method,
            "path": url.path,
            "query": dict(parse_qsl(url.query)),
            "headers": {k: v for k, v in self.headers.items() if k.lower() != "authorization"},
        }
        with state.lock:
            try:
                request.update(self._body(raw))
                state.requests.append(request)
                route = ROUTES.get((method, url.path))
                if route is None:
                    raise Rejected(404, "ENDPOINT_NOT_FOUND", f"no endpoint {method} {url.path}")
                if url.path.startswith("/api/") and self.headers.get("Authorization") != (
                    f"Bearer {state.token}"
                ):
                    state.rejected_tokens += 1
                    raise Rejected(401, "UNAUTHENTICATED", "Invalid access token.", False)
                self._reply(200, route(state, request))
            except Rejected as exc:
                if exc.contract:
                    state.failures.append(f"{method} {url.path}: {exc}")
                self._reply(exc.status, {"error_code": exc.error_code, "message": str(exc)})

    def _body(self, raw: bytes) -> dict:
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            form, files = _multipart(raw, content_type)
            return {"form": form, "files": files}
        if not raw:
            return {"body": {}}
        try:
            return {"body": json.loads(raw)}
        except ValueError as exc:
            raise Rejected(400, "MALFORMED_REQUEST", f"not JSON: {raw[:80]!r}") from exc

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_workspace():
    """The stand-in on 127.0.0.1, a fresh token each test; fails the test on a bad request."""
    state = FakeWorkspace(token=f"dapi{secrets.token_hex(16)}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.workspace = state
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # shutdown() waits for the serving loop's next poll: at the default 0.5 s that was ~8 s
    # of this file's teardowns
    serve = functools.partial(server.serve_forever, poll_interval=0.01)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()
    assert state.failures == [], "requests the Databricks API would not accept"


@pytest.fixture
def no_databricks_env(monkeypatch):
    """No DATABRICKS_* variable and no ~/.databrickscfg, whatever the machine has."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")


@pytest.fixture
def databricks_env(fake_workspace, no_databricks_env, monkeypatch):
    """Credentials of the stand-in in the environment, as a CI job would set them."""
    monkeypatch.setenv("DATABRICKS_HOST", fake_workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", fake_workspace.token)
    return fake_workspace


# bytes a text-mode or multipart mix-up would change: CR/LF, NUL, and boundary-like dashes
WHEEL_BYTES = b"PK\x03\x04" + bytes(range(256)) + b"\r\n--\r\n\n\r" + bytes(range(255, -1, -1))
CONF_BYTES = b"\x1f\x8b\x08\x00" + b"conf\r\n--x--\r\n" * 20 + b"\x00\xff"


@pytest.fixture
def project(project_root, tmp_path) -> Path:
    """A project copy (with an empty conf/local) and a tiny fake wheel and conf archive in dist/."""
    path = copy_project(project_root, tmp_path / "project")
    (path / "dist").mkdir()
    (path / "dist" / "cltv-0.1.0-py3-none-any.whl").write_bytes(WHEEL_BYTES)
    (path / "dist" / "conf-cltv.tar.gz").write_bytes(CONF_BYTES)
    return path


def _args(task: dict) -> dict[str, str]:
    parameters = task["python_wheel_task"]["parameters"]
    return dict(zip(parameters[::2], parameters[1::2], strict=True))


def debug_logs(caplog) -> None:
    """Capture every record: conf/logging.yml sets `cltv` to INFO, which would hide debug ones."""
    for name in (None, "cltv", "databricks.sdk", "urllib3"):  # the SDK dumps its round trips
        caplog.set_level(logging.DEBUG, logger=name)


def _no_token_anywhere(state: FakeWorkspace, *texts: str) -> None:
    assert state.requests, "no request was recorded"
    recorded = json.dumps(state.requests, default=lambda b: b.hex())
    for text in (recorded, *texts):
        assert state.token not in text


# ---------------------------------------------------------------- deploys
def test_first_deploy_uploads_the_artifacts_and_creates_the_job(
    databricks_env, project, caplog, capsys
):
    debug_logs(caplog)
    state = databricks_env

    result = deploy_project(project, target_settings("dev"))

    assert result.created
    assert list(state.jobs) == [result.job_id]
    assert result.job_url == f"{state.url}/jobs/{result.job_id}"
    folder = result.wheel_path.rsplit("/", 1)[0]
    assert folder.startswith(f"/Workspace/Users/{USER}/.cltv-churn/dev/artifacts/")
    assert result.wheel_path == f"{folder}/cltv-0.1.0-py3-none-any.whl"
    assert result.conf_path == f"{folder}/conf-cltv.tar.gz"
    assert state.files == {result.wheel_path: WHEEL_BYTES, result.conf_path: CONF_BYTES}
    uploads = state.calls("POST", "/api/2.0/workspace/import")
    assert [u["form"]["format"] for u in uploads] == ["AUTO", "AUTO"]

    job = state.jobs[result.job_id]
    assert job["name"] == "cltv-churn [dev]"
    tasks = job["tasks"]
    assert {t["task_key"]: [d["task_key"] for d in t.get("depends_on", [])] for t in tasks} == (
        EXPECTED_DAG
    )
    for task in tasks:
        assert task["python_wheel_task"]["package_name"] == "cltv"
        assert task["python_wheel_task"]["entry_point"] == "cltv-churn"
        assert task["libraries"] == [{"whl": result.wheel_path}]
        args = _args(task)
        assert args["--pipelines"] == task["task_key"]
        assert args["--env"] == "databricks"
        assert args["--conf-source"] == result.conf_path
        assert args["--params"] == "catalog=main,schema=cltv_churn_dev,volume=cltv"
    (cluster,) = job["job_clusters"]
    assert {k: cluster["new_cluster"][k] for k in ("spark_version", "node_type_id")} == {
        "spark_version": "17.3.x-scala2.13",
        "node_type_id": "i3.xlarge",
    }
    assert cluster["new_cluster"]["num_workers"] == 2
    assert cluster["new_cluster"]["spark_conf"]["spark.sql.adaptive.enabled"] == "true"

    # the logs were captured (ours and the SDK's request dumps), and none shows the token
    assert f"created job {result.job_id}" in caplog.text
    assert "POST /api/2.2/jobs/create" in caplog.text
    out, err = capsys.readouterr()
    _no_token_anywhere(state, caplog.text, out, err)


def test_second_deploy_resets_the_same_job(databricks_env, project):
    state = databricks_env
    first = deploy_project(project, target_settings("dev"))
    settings_after_first = json.loads(json.dumps(state.jobs[first.job_id]))

    second = deploy_project(project, target_settings("dev"))

    assert not second.created and second.job_id == first.job_id
    assert list(state.jobs) == [first.job_id]
    assert state.jobs[first.job_id] == settings_after_first
    assert len(state.calls("POST", "/api/2.2/jobs/create")) == 1
    (reset,) = state.calls("POST", "/api/2.2/jobs/reset")
    assert reset["body"]["job_id"] == first.job_id
    assert (second.wheel_path, second.conf_path) == (first.wheel_path, first.conf_path)


def test_a_new_wheel_goes_to_a_new_folder_and_the_job_follows(databricks_env, project):
    state = databricks_env
    first = deploy_project(project, target_settings("dev"))
    new_wheel = project / "dist" / "cltv-0.1.0-py3-none-any.whl"
    new_wheel.write_bytes(WHEEL_BYTES + b"changed")

    second = deploy_project(project, target_settings("dev"))

    assert second.job_id == first.job_id and second.wheel_path != first.wheel_path
    assert state.files[second.wheel_path] == WHEEL_BYTES + b"changed"
    assert state.files[first.wheel_path] == WHEEL_BYTES  # a running job keeps its wheel
    tasks = state.jobs[second.job_id]["tasks"]
    assert {lib["whl"] for task in tasks for lib in task["libraries"]} == {second.wheel_path}


def test_serverless_job_depends_on_the_uploaded_wheel(databricks_env, project):
    state = databricks_env
    result = deploy_project(project, target_settings("prod"), compute="serverless")

    job = state.jobs[result.job_id]
    assert job["name"] == "cltv-churn [prod]"
    (environment,) = job["environments"]
    assert environment["spec"]["dependencies"] == [result.wheel_path]
    assert "job_clusters" not in job
    for task in job["tasks"]:
        assert task["environment_key"] == environment["environment_key"]
        assert "libraries" not in task
        assert _args(task)["--params"] == "catalog=main,schema=cltv_churn,volume=cltv"


def test_run_starts_the_deployed_job(databricks_env, project):
    state = databricks_env
    result = deploy_project(project, target_settings("dev"), run=True)

    (run_now,) = state.calls("POST", "/api/2.2/jobs/run-now")
    assert run_now["body"] == {"job_id": result.job_id}
    assert result.run_id is not None
    assert result.run_url == f"{state.url}/jobs/{result.job_id}/runs/{result.run_id}"


def test_target_options_reach_the_job(databricks_env, project):
    state = databricks_env
    target = target_settings(
        "dev", catalog="sandbox", schema="mine", volume="raw", spark_version="16.4.x-scala2.12",
        node_type_id="m5.large", num_workers=0, workspace_dir="/Workspace/Shared/cltv",
    )  # fmt: skip
    result = deploy_project(project, target)

    assert result.wheel_path.startswith("/Workspace/Shared/cltv/artifacts/")
    assert state.calls("GET", "/api/2.0/preview/scim/v2/Me") == []  # no need to ask who I am
    job = state.jobs[result.job_id]
    assert {_args(t)["--params"] for t in job["tasks"]} == {
        "catalog=sandbox,schema=mine,volume=raw"
    }
    new_cluster = job["job_clusters"][0]["new_cluster"]
    assert (new_cluster["spark_version"], new_cluster["node_type_id"]) == (
        "16.4.x-scala2.12",
        "m5.large",
    )
    assert new_cluster["num_workers"] == 0


@pytest.mark.parametrize("kind", ["bundle", "duplicate"])
def test_a_job_this_deploy_does_not_own_is_left_alone(databricks_env, project, kind):
    state = databricks_env
    name = "cltv-churn [prod]"
    if kind == "bundle":  # what `databricks bundle deploy -t prod` leaves
        state.add_job(
            {
                "name": name,
                "deployment": {"kind": "BUNDLE", "metadata_file_path": "/Workspace/x/metadata"},
            }
        )
    else:
        state.add_job({"name": name})
        state.add_job({"name": name.upper()})  # the API's filter ignores case: not a duplicate
        state.add_job({"name": name})
    before = copy.deepcopy(state.jobs)

    with pytest.raises(DeployError, match="Asset Bundle" if kind == "bundle" else "2 jobs are"):
        deploy_project(project, target_settings("prod"))

    assert state.jobs == before
    assert state.files == {}  # refused before uploading anything


# ---------------------------------------------------------------- credentials
def test_credentials_come_from_conf_local_when_the_environment_has_none(
    fake_workspace, no_databricks_env, project, caplog, capsys
):
    debug_logs(caplog)
    (project / "conf" / "local" / "credentials.yml").write_text(
        yaml.safe_dump({"databricks": {"host": fake_workspace.url, "token": fake_workspace.token}})
    )

    result = deploy_project(project, target_settings("dev"))

    assert list(fake_workspace.jobs) == [result.job_id]
    assert fake_workspace.rejected_tokens == 0  # every request carried the file's token
    out, err = capsys.readouterr()
    _no_token_anywhere(fake_workspace, caplog.text, out, err, repr(resolve_credentials(project)))


def test_environment_credentials_win_over_conf_local(databricks_env, project):
    (project / "conf" / "local" / "credentials.yml").write_text(
        yaml.safe_dump({"databricks": {"host": "https://elsewhere.invalid", "token": "other"}})
    )
    credentials = resolve_credentials(project)
    assert (credentials.host, credentials.token) == (databricks_env.url, databricks_env.token)


def test_missing_credentials_say_where_to_put_them(no_databricks_env, project, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")
    with pytest.raises(DeployError) as error:
        resolve_credentials(project)
    message = str(error.value)
    assert "conf/local/credentials.yml" in message and "DATABRICKS_TOKEN" in message
    assert "found only DATABRICKS_HOST" in message


def test_unreadable_credentials_file_does_not_show_the_token(
    no_databricks_env, project, monkeypatch
):
    token = f"dapi{secrets.token_hex(16)}"
    (project / "conf" / "local" / "credentials.yml").write_text(
        f"databricks:\n  host: https://example.cloud.databricks.com\n  token: [{token}\n"
    )

    # PyYAML's pure-Python parser quotes the offending line in its errors (libyaml does not):
    # whichever parses the file, the error raised must not carry it
    def quoting_error(self, key):
        raise yaml.YAMLError(f"while parsing a flow sequence\n    token: [{token}\n           ^")

    monkeypatch.setattr(OmegaConfigLoader, "__getitem__", quoting_error)
    with pytest.raises(DeployError, match="credentials") as error:
        resolve_credentials(project)
    assert token not in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_a_rejected_token_is_not_echoed(databricks_env, project, monkeypatch, caplog):
    debug_logs(caplog)
    wrong = f"dapi{secrets.token_hex(16)}"
    monkeypatch.setenv("DATABRICKS_TOKEN", wrong)

    with pytest.raises(DatabricksError) as error:
        deploy_project(project, target_settings("dev"))

    assert databricks_env.rejected_tokens == 1  # refused at the first call, nothing sent after
    assert databricks_env.files == {} and databricks_env.jobs == {}
    assert wrong not in str(error.value) and wrong not in caplog.text
    assert wrong not in json.dumps(databricks_env.requests, default=lambda b: b.hex())


# ---------------------------------------------------------------- the command
def test_deploy_command_with_explicit_artifacts(databricks_env, project, tmp_path, monkeypatch):
    state = databricks_env
    elsewhere = tmp_path / "built"
    elsewhere.mkdir()
    (elsewhere / "cltv-0.2.0-py3-none-any.whl").write_bytes(b"other wheel")
    (elsewhere / "conf-cltv.tar.gz").write_bytes(b"other conf")
    monkeypatch.chdir(project)

    result = CliRunner().invoke(
        cli,
        ["cltv", "deploy", "--target", "prod", "--run", "--num-workers", "4",
         "--wheel", str(elsewhere / "cltv-0.2.0-py3-none-any.whl"),
         "--conf-archive", str(elsewhere / "conf-cltv.tar.gz")],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    ((job_id, job),) = state.jobs.items()
    assert f"created job {job_id}: {state.url}/jobs/{job_id}" in result.output
    assert f"{state.url}/jobs/{job_id}/runs/" in result.output
    assert sorted(state.files.values()) == [b"other conf", b"other wheel"]
    assert job["name"] == "cltv-churn [prod]"
    assert job["job_clusters"][0]["new_cluster"]["num_workers"] == 4
    _no_token_anywhere(state, result.output)


def test_deploy_command_without_artifacts_asks_for_kedro_package(
    no_databricks_env, project, monkeypatch
):
    for built in (project / "dist").iterdir():
        built.unlink()
    monkeypatch.chdir(project)

    result = CliRunner().invoke(cli, ["cltv", "deploy"])

    assert result.exit_code == 1
    assert "run `kedro package` first" in result.output
    assert "the wheel and the conf archive not found" in result.output


def test_deploy_command_choices_are_the_modules():
    command = cli.commands["cltv"].commands["deploy"]
    choices = {p.name: list(p.type.choices) for p in command.params if hasattr(p.type, "choices")}
    assert choices == {"target": list(deploy_module.TARGET_SCHEMAS), "compute": list(COMPUTE_KINDS)}


# ---------------------------------------------------------------- pieces
def test_newest_wheel_in_dist_is_deployed(tmp_path):
    old, new = tmp_path / "cltv-0.1.0-py3-none-any.whl", tmp_path / "cltv-0.0.9-py3-none-any.whl"
    for age, path in ((2000, old), (1000, new)):
        path.write_bytes(b"wheel")
        os.utime(path, (1_700_000_000 - age, 1_700_000_000 - age))
    (tmp_path / "other-9.9-py3-none-any.whl").write_bytes(b"not ours")
    (tmp_path / "conf-cltv.tar.gz").write_bytes(b"conf")

    assert find_artifacts(tmp_path) == (new, tmp_path / "conf-cltv.tar.gz")


def test_target_defaults_are_the_bundle_variables(project_root):
    bundle = yaml.safe_load((project_root / "databricks.yml").read_text())
    variables = {name: spec.get("default") for name, spec in bundle["variables"].items()}
    for name, spec in bundle["targets"].items():
        target = target_settings(name)
        expected = {**variables, **spec.get("variables", {})}
        assert (target.catalog, target.schema, target.volume) == (
            expected["catalog"],
            expected["schema"],
            expected["volume"],
        )
        assert (target.spark_version, target.node_type_id, target.num_workers) == (
            expected["spark_version"],
            expected["node_type_id"],
            expected["num_workers"],
        )


def test_job_settings_the_api_does_not_know_are_refused_before_any_upload(databricks_env, project):
    def job_with_a_typo(wheel_path: str, conf_path: str) -> dict:
        task = {
            "task_key": "t",
            "python_wheel_task": {"package_name": "cltv", "entry_point": "cltv-churn"},
            "libraries": [{"whl": wheel_path}],
        }
        return {"name": "cltv-churn [dev]", "max_concurent_runs": 1, "tasks": [task]}

    client = WorkspaceClient(host=databricks_env.url, token=databricks_env.token, auth_type="pat")
    with pytest.raises(DeployError, match="unknown fields: max_concurent_runs"):
        deploy(
            client,
            wheel=project / "dist" / "cltv-0.1.0-py3-none-any.whl",
            conf_archive=project / "dist" / "conf-cltv.tar.gz",
            workspace_dir="/Workspace/Shared/cltv",
            job=job_with_a_typo,
        )
    assert databricks_env.files == {} and databricks_env.jobs == {}


def test_the_stand_in_refuses_what_the_api_would(databricks_env):
    """The checks of the stand-in can fail: a typo and an unknown endpoint are refused."""
    client = WorkspaceClient(host=databricks_env.url, token=databricks_env.token, auth_type="pat")
    with pytest.raises(DatabricksError):
        client.api_client.do("POST", "/api/2.2/jobs/create", body={"name": "x", "taskz": []})
    with pytest.raises(DatabricksError):
        client.api_client.do("POST", "/api/2.2/jobs/reset", body={"job_id": 1, "settings": {}})
    with pytest.raises(DatabricksError):
        client.api_client.do("GET", "/api/2.1/jobs/list")
    assert len(databricks_env.failures) == 3
    assert databricks_env.jobs == {}
    databricks_env.failures.clear()  # expected here: the fixture fails a test on any other
