"""Deploy the job with ``databricks-sdk`` alone, where the Databricks CLI is absent.

``databricks bundle deploy`` (databricks.yml) stays the main route. This module does the part of
it the job needs: it uploads the wheel and the conf archive that ``kedro package`` builds to
workspace files, then creates the job, or resets it when a job of that name exists, so that
deploying twice leaves one job. The job comes from ``cltv.deploy.bundle.job_settings``, as the
bundle's does, with the uploaded paths in place of the bundle's ``${…}`` references.

Credentials come from ``DATABRICKS_HOST`` + ``DATABRICKS_TOKEN``, else from
``databricks: {host: …, token: …}`` in ``conf/local/credentials.yml``. The token goes to the
SDK's client and nowhere else: not to logs, nor to the messages of the errors raised here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import JobDeploymentKind, JobSettings
from databricks.sdk.service.workspace import ImportFormat

from cltv.deploy.bundle import (
    PACKAGE_NAME,
    JobSpec,
    job_cluster,
    job_settings,
    load_environment,
)

logger = logging.getLogger(__name__)

# the bundle's targets and variables (databricks.yml); a test keeps the two in step
TARGET_SCHEMAS = {"dev": "cltv_churn_dev", "prod": "cltv_churn"}
DEFAULT_CATALOG = "main"
DEFAULT_VOLUME = "cltv"
DEFAULT_SPARK_VERSION = "17.3.x-scala2.13"
DEFAULT_NODE_TYPE_ID = "i3.xlarge"
DEFAULT_NUM_WORKERS = 2

JOB_NAME = "cltv-churn"
PROJECT_FOLDER = ".cltv-churn"  # under /Workspace/Users/<me>/
CREDENTIALS_KEY = "databricks"  # in conf/local/credentials.yml
CONF_ARCHIVE = f"conf-{PACKAGE_NAME}.tar.gz"  # what `kedro package` writes to dist/


class DeployError(Exception):
    """A deploy that cannot go ahead; the message says what to do and never holds the token."""


@dataclass(frozen=True)
class Target:
    """Where and how one deploy target (dev, prod) runs."""

    name: str
    catalog: str
    schema: str
    volume: str
    spark_version: str
    node_type_id: str
    num_workers: int
    workspace_dir: str | None = None  # None: /Workspace/Users/<me>/.cltv-churn/<name>

    @property
    def job_name(self) -> str:
        return f"{JOB_NAME} [{self.name}]"


def target_settings(name: str, **overrides: Any) -> Target:
    """The settings of target ``name``; ``overrides`` that are ``None`` keep the default."""
    if name not in TARGET_SCHEMAS:
        raise DeployError(f"unknown target {name!r}: one of {', '.join(TARGET_SCHEMAS)}")
    defaults = {
        "catalog": DEFAULT_CATALOG,
        "schema": TARGET_SCHEMAS[name],
        "volume": DEFAULT_VOLUME,
        "spark_version": DEFAULT_SPARK_VERSION,
        "node_type_id": DEFAULT_NODE_TYPE_ID,
        "num_workers": DEFAULT_NUM_WORKERS,
        "workspace_dir": None,
    }
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise TypeError(f"unknown target settings: {sorted(unknown)}")
    chosen = {key: value for key, value in overrides.items() if value is not None}
    return Target(name=name, **{**defaults, **chosen})


# ---------------------------------------------------------------- credentials and client
@dataclass(frozen=True)
class Credentials:
    """A workspace URL and a personal access token, and where they were found."""

    host: str
    token: str = field(repr=False)  # repr=False: printing the object must not show it
    source: str = "environment"


def resolve_credentials(project_path: Path, environ: Mapping[str, str] = os.environ) -> Credentials:
    """``DATABRICKS_HOST`` + ``DATABRICKS_TOKEN`` if both are set, else conf/local/credentials.yml.

    Each source must give both values: mixing a host from one with a token from the other would
    make it hard to tell which workspace a deploy went to.
    """
    host, token = environ.get("DATABRICKS_HOST"), environ.get("DATABRICKS_TOKEN")
    if host and token:
        return Credentials(host=host, token=token, source="environment")
    entry = _conf_credentials(project_path).get(CREDENTIALS_KEY) or {}
    if not isinstance(entry, Mapping):
        raise DeployError(
            f"`{CREDENTIALS_KEY}` in conf/local/credentials.yml must be a mapping "
            "with `host` and `token`"
        )
    if entry.get("host") and entry.get("token"):
        return Credentials(
            host=str(entry["host"]), token=str(entry["token"]), source="conf/local/credentials.yml"
        )
    found = [name for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN") if environ.get(name)]
    found += [
        f"{CREDENTIALS_KEY}.{key} in credentials.yml" for key in ("host", "token") if entry.get(key)
    ]
    raise DeployError(
        "no Databricks credentials: set DATABRICKS_HOST and DATABRICKS_TOKEN, or write "
        f"`{CREDENTIALS_KEY}: {{host: https://<workspace>.cloud.databricks.com, token: <PAT>}}` "
        "in conf/local/credentials.yml (git-ignored)"
        + (f"; found only {', '.join(found)}" if found else "")
    )


def _conf_credentials(project_path: Path) -> Mapping[str, Any]:
    """The ``credentials`` of the project's local environment, as a Kedro run would see them."""
    from kedro.config import MissingConfigException, OmegaConfigLoader
    from kedro.framework.project import settings

    loader_args = {**settings.CONFIG_LOADER_ARGS, "env": "local"}
    try:
        loader = OmegaConfigLoader(str(project_path / settings.CONF_SOURCE), **loader_args)
        return loader["credentials"]
    except MissingConfigException:
        return {}
    except Exception as exc:
        # a YAML error can quote the offending line (PyYAML's pure-Python parser does), which
        # may be the token: keep the type only; `from None` keeps it out of the traceback too
        raise DeployError(
            f"could not read the credentials in {project_path / settings.CONF_SOURCE}: "
            f"{type(exc).__name__} (check the YAML of conf/local/credentials.yml)"
        ) from None


def workspace_client(credentials: Credentials) -> WorkspaceClient:
    """A client that authenticates with the token, whatever else the environment holds."""
    try:
        # auth_type="pat": other DATABRICKS_* variables or a ~/.databrickscfg profile cannot
        # switch the client to another authentication method
        return WorkspaceClient(host=credentials.host, token=credentials.token, auth_type="pat")
    except ValueError as exc:
        # the SDK's configuration errors print the token masked (`token=***`)
        raise DeployError(f"Databricks client ({credentials.source}): {exc}") from None


# ---------------------------------------------------------------- artifacts
def find_artifacts(
    dist: Path, wheel: Path | None = None, conf_archive: Path | None = None
) -> tuple[Path, Path]:
    """The wheel and conf archive to deploy: those given, else the newest in ``dist``."""
    if wheel is None:
        wheels = sorted(dist.glob(f"{PACKAGE_NAME}-*.whl"), key=lambda path: path.stat().st_mtime)
        wheel = wheels[-1] if wheels else None
    if conf_archive is None and (dist / CONF_ARCHIVE).is_file():
        conf_archive = dist / CONF_ARCHIVE
    missing = [
        what
        for what, path in (("the wheel", wheel), ("the conf archive", conf_archive))
        if path is None or not path.is_file()
    ]
    if missing:
        raise DeployError(
            f"{' and '.join(missing)} not found in {dist}: run `kedro package` first "
            "(or pass --wheel / --conf-archive)"
        )
    return wheel, conf_archive


def artifact_folder(workspace_dir: str, *files: Path) -> str:
    """``<workspace_dir>/artifacts/<digest of the files>``.

    A folder per content: a job never sees its wheel replaced under it, the settings change
    whenever the wheel does (so no cluster or serverless environment keeps a stale install of a
    same-named wheel), and an unchanged redeploy gives the very same paths.
    """
    digest = hashlib.sha256()
    for path in files:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{workspace_dir.rstrip('/')}/artifacts/{digest.hexdigest()[:16]}"


def upload_artifacts(client: WorkspaceClient, folder: str, *files: Path) -> list[str]:
    """Upload ``files`` as workspace files into ``folder``; their workspace paths."""
    client.workspace.mkdirs(folder)
    paths = []
    for path in files:
        remote = f"{folder}/{path.name}"
        # AUTO imports a .whl or .tar.gz as a plain workspace file, which a job library or the
        # /Workspace mount on the cluster can read; SOURCE would want a notebook
        client.workspace.upload(remote, path.read_bytes(), format=ImportFormat.AUTO, overwrite=True)
        logger.info("uploaded %s to %s", path.name, remote)
        paths.append(remote)
    return paths


def default_workspace_dir(client: WorkspaceClient, target: str) -> str:
    """``/Workspace/Users/<me>/.cltv-churn/<target>``, as the bundle's own root path."""
    user_name = client.current_user.me().user_name
    return f"/Workspace/Users/{user_name}/{PROJECT_FOLDER}/{target}"


# ---------------------------------------------------------------- the job
def api_settings(settings: Mapping[str, Any]) -> JobSettings:
    """``settings`` as the SDK's model, refusing any field the Jobs API does not know.

    ``from_dict`` drops unknown keys silently, so the round trip must give ``settings`` back.
    """
    model = JobSettings.from_dict(dict(settings))
    kept = model.as_dict()
    if kept != dict(settings):
        lost = sorted(set(settings) - set(kept))
        raise DeployError(
            "the job settings do not survive the SDK's JobSettings model"
            + (f" (unknown fields: {', '.join(lost)})" if lost else "")
        )
    return model


def find_job(client: WorkspaceClient, name: str) -> int | None:
    """The id of the one job called ``name``, or ``None``; refuse a job this deploy must not own."""
    # the API's name filter ignores case; this deploy owns the exact name only
    ids = [
        job.job_id
        for job in client.jobs.list(name=name)
        if job.settings is not None and job.settings.name == name
    ]
    if len(ids) > 1:
        raise DeployError(
            f"{len(ids)} jobs are named {name!r} (ids {', '.join(map(str, ids))}): "
            "delete all but one, then deploy again"
        )
    if not ids:
        return None
    existing = client.jobs.get(ids[0]).settings
    deployment = existing.deployment if existing is not None else None
    if deployment is not None and deployment.kind == JobDeploymentKind.BUNDLE:
        # a reset here would be undone by the next `bundle deploy`, and would undo it
        raise DeployError(
            f"job {ids[0]} {name!r} is managed by a Databricks Asset Bundle: deploy it with "
            "`databricks bundle deploy`, or delete it before deploying with the SDK"
        )
    return ids[0]


def create_or_reset_job(
    client: WorkspaceClient, settings: JobSettings, job_id: int | None
) -> tuple[int, bool]:
    """Create the job, or overwrite all settings of job ``job_id``; the id and whether created."""
    if job_id is not None:
        client.jobs.reset(job_id, new_settings=settings)
        logger.info("reset job %s %r", job_id, settings.name)
        return job_id, False
    # JobsAPI.create takes JobSettings' fields as keyword arguments. Only those the settings
    # hold: from_dict fills absent lists with [], which create would send as such
    fields = {name: getattr(settings, name) for name in settings.as_dict()}
    created = client.jobs.create(**fields)
    logger.info("created job %s %r", created.job_id, settings.name)
    return created.job_id, True


@dataclass(frozen=True)
class DeployResult:
    """What a deploy left in the workspace."""

    job_id: int
    job_url: str
    created: bool  # False: an existing job was reset
    wheel_path: str
    conf_path: str
    run_id: int | None = None
    run_url: str | None = None


def deploy(
    client: WorkspaceClient,
    *,
    wheel: Path,
    conf_archive: Path,
    workspace_dir: str,
    job: Callable[[str, str], Mapping[str, Any]],
    run: bool = False,
) -> DeployResult:
    """Upload ``wheel`` and ``conf_archive``, then create or reset the job; start it if ``run``.

    ``job(wheel_path, conf_path)`` gives the job settings for the uploaded paths. Everything
    that can be checked before writing to the workspace is: the settings and the job's name.
    """
    if not workspace_dir.startswith("/Workspace/"):
        # the tasks read the conf archive through the cluster's /Workspace mount
        raise DeployError(f"the workspace folder must be under /Workspace/, not {workspace_dir!r}")
    folder = artifact_folder(workspace_dir, wheel, conf_archive)
    wheel_path, conf_path = f"{folder}/{wheel.name}", f"{folder}/{conf_archive.name}"
    settings = api_settings(job(wheel_path, conf_path))
    job_id = find_job(client, settings.name)
    upload_artifacts(client, folder, wheel, conf_archive)
    job_id, created = create_or_reset_job(client, settings, job_id)
    host = client.config.host.rstrip("/")
    result = DeployResult(
        job_id=job_id,
        job_url=f"{host}/jobs/{job_id}",
        created=created,
        wheel_path=wheel_path,
        conf_path=conf_path,
    )
    if run:
        run_id = client.jobs.run_now(job_id=job_id).response.run_id
        logger.info("started run %s of job %s", run_id, job_id)
        result = dataclasses.replace(
            result, run_id=run_id, run_url=f"{host}/jobs/{job_id}/runs/{run_id}"
        )
    return result


def project_job(
    pipelines: Mapping[str, Any], target: Target, compute: str, spark_conf: Mapping[str, Any]
) -> Callable[[str, str], dict[str, Any]]:
    """The job of ``target`` for given uploaded paths: the bundle's job, with concrete values."""
    cluster = job_cluster(target.spark_version, target.node_type_id, target.num_workers, spark_conf)
    params = {"catalog": target.catalog, "schema": target.schema, "volume": target.volume}

    def build(wheel_path: str, conf_path: str) -> dict[str, Any]:
        spec = JobSpec(
            wheel=wheel_path,
            conf_source=conf_path,
            runtime_params=params,
            compute=compute,
            cluster=cluster,
            name=target.job_name,
        )
        return job_settings(pipelines, spec)

    return build


def deploy_project(
    project_path: Path,
    target: Target,
    *,
    wheel: Path | None = None,
    conf_archive: Path | None = None,
    compute: str | None = None,
    run: bool = False,
    client: WorkspaceClient | None = None,
) -> DeployResult:
    """Deploy the project's job to ``target``: what ``kedro cltv deploy`` does.

    ``compute`` defaults to ``databricks.compute`` in conf/databricks/globals.yml, as for the
    bundle. Local checks (artifacts, pipelines, credentials) come before any request.
    """
    wheel, conf_archive = find_artifacts(project_path / "dist", wheel, conf_archive)
    try:
        environment = load_environment(project_path, "databricks")
    except ValueError as exc:  # a dataset that would not outlive its task
        raise DeployError(str(exc)) from exc
    if client is None:
        client = workspace_client(resolve_credentials(project_path))
    workspace_dir = target.workspace_dir or default_workspace_dir(client, target.name)
    return deploy(
        client,
        wheel=wheel,
        conf_archive=conf_archive,
        workspace_dir=workspace_dir,
        job=project_job(
            environment.pipelines, target, compute or environment.compute, environment.spark_conf
        ),
        run=run,
    )
