"""Project commands: ``kedro cltv …`` (Kedro loads the ``cli`` group of ``<package>.cli``)."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.io import DatasetError

from cltv.hooks import NODE_NOTE

# where a failed run's full traceback goes, relative to the folder the run started in
FAILURE_LOG = Path("logs") / "last_failure.log"
PACKAGE_DIR = Path(__file__).resolve().parent


@click.group(name="cltv-churn")
def cli() -> None:
    """Commands of the cltv-churn project."""


class _NodeFailureFilter(logging.Filter):
    """Drops Kedro's "Node … failed with error" record: the run's last line says it instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Node %s failed with error")


def _run(**options: Any) -> Any:
    node_logger = logging.getLogger("kedro.pipeline.node")
    node_failure = _NodeFailureFilter()
    node_logger.addFilter(node_failure)
    try:
        return kedro_run.callback(**options)
    except Exception as error:
        # one line with the node and the cause instead of a screen of traceback; click prints
        # it and exits 1, or raises it (chained to the cause) where it must not exit (a
        # Databricks wheel task)
        raise click.ClickException(failure_summary(error, _save_traceback(error))) from error
    finally:
        node_logger.removeFilter(node_failure)


# `kedro run` and `python -m cltv` (kedro's find_run_command takes `run` from this module):
# Kedro's own run, with its options, ending a failed run with one line
run = cli.command(
    name="run",
    params=list(kedro_run.params),
    help=kedro_run.help,
    context_settings=kedro_run.context_settings,
)(_run)


def failure_summary(error: BaseException, traceback_file: Path | None) -> str:
    """``node <name> failed: <cause> (traceback: <file>)`` on one line.

    The cause is the innermost error a dataset wrapped, as its message alone when it is ours
    (raised in ``cltv``, written to be read) and with its type otherwise.
    """
    cause = error
    while isinstance(cause, DatasetError) and cause.__cause__ is not None:
        cause = cause.__cause__
    frames = traceback.extract_tb(cause.__traceback__)
    ours = bool(frames) and PACKAGE_DIR in Path(frames[-1].filename).resolve().parents
    lines = str(cause).strip().splitlines() or [""]
    message = lines[0] if ours else f"{type(cause).__name__}: {lines[0]}".rstrip(": ")
    notes = getattr(error, "__notes__", [])
    nodes = [note.removeprefix(NODE_NOTE) for note in notes if note.startswith(NODE_NOTE)]
    where = f"node {nodes[0]} failed" if nodes else "the run failed"
    saved = f" (traceback: {traceback_file})" if traceback_file else ""
    return f"{where}: {message}{saved}"


def _save_traceback(error: BaseException) -> Path | None:
    try:
        FAILURE_LOG.parent.mkdir(exist_ok=True)
        FAILURE_LOG.write_text("".join(traceback.format_exception(error)))
    except OSError:
        return None  # a read-only folder: the summary alone
    return FAILURE_LOG


@cli.group(name="cltv")
def cltv() -> None:
    """Databricks bundle and deploy commands of cltv-churn."""


@cltv.command()
@click.option(
    "--check", is_flag=True, help="Only compare with the committed files; exit 1 if they differ."
)
def bundle(check: bool) -> None:
    """Write resources/cltv_churn.job.yml from the pipeline registry.

    Job cluster or serverless: `databricks.compute` in conf/databricks/globals.yml.
    """
    from cltv.deploy.bundle import write_bundle_resources

    stale = write_bundle_resources(Path.cwd(), check=check)
    for path in stale:
        click.echo(f"{'differs' if check else 'wrote'}: {path}")
    if check and stale:
        click.echo("run `kedro cltv bundle` and commit the result", err=True)
        sys.exit(1)


@cltv.command()
@click.option(
    "--target",
    type=click.Choice(["dev", "prod"]),
    default="dev",
    show_default=True,
    help="Deploy target: the job is named `cltv-churn [<target>]`.",
)
@click.option(
    "--compute",
    type=click.Choice(["cluster", "serverless"]),
    default=None,
    help="Job cluster or serverless [default: databricks.compute in conf/databricks/globals.yml].",
)
@click.option("--run", "run_job", is_flag=True, help="Start a run of the job once deployed.")
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Wheel to deploy [default: the newest dist/cltv-*.whl].",
)
@click.option(
    "--conf-archive",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Conf archive to deploy [default: dist/conf-cltv.tar.gz].",
)
@click.option("--catalog", help="Unity Catalog catalog [default: main].")
@click.option("--schema", help="Schema [default: cltv_churn_dev for dev, cltv_churn for prod].")
@click.option("--volume", help="UC volume in that schema [default: cltv].")
@click.option(
    "--workspace-dir", help="Workspace folder [default: /Workspace/Users/<me>/.cltv-churn/<target>]"
)
@click.option("--spark-version", help="Job cluster runtime [default: 17.3.x-scala2.13].")
@click.option("--node-type-id", help="Job cluster node type [default: i3.xlarge].")
@click.option("--num-workers", type=click.IntRange(min=0), help="Job cluster workers [default: 2].")
def deploy(
    target: str,
    compute: str | None,
    run_job: bool,  # not `run`: this module's `run` is Kedro's run command (see the import)
    wheel: Path | None,
    conf_archive: Path | None,
    **overrides: str | int | None,
) -> None:
    """Deploy the job with databricks-sdk, without the Databricks CLI.

    Uploads the wheel and conf archive of `kedro package` to the workspace, then creates the
    job `cltv-churn [<target>]` or resets it if it exists. Credentials: DATABRICKS_HOST and
    DATABRICKS_TOKEN, else `databricks: {host, token}` in conf/local/credentials.yml.
    """
    from databricks.sdk.errors import DatabricksError

    from cltv.deploy.workspace import DeployError, deploy_project, target_settings

    try:
        result = deploy_project(
            Path.cwd(),
            target_settings(target, **overrides),
            wheel=wheel,
            conf_archive=conf_archive,
            compute=compute,
            run=run_job,
        )
    except (DeployError, DatabricksError) as exc:
        raise click.ClickException(str(exc)) from exc
    action = "created" if result.created else "updated"
    click.echo(f"{action} job {result.job_id}: {result.job_url}")
    click.echo(f"wheel: {result.wheel_path}")
    click.echo(f"conf:  {result.conf_path}")
    if result.run_id is not None:
        click.echo(f"run {result.run_id}: {result.run_url}")


@cltv.command(name="settings-schema")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the schema to this file [default: standard output].",
)
def settings_schema(out: Path | None) -> None:
    """Print the JSON schema of the parameters, for editors' completion and checks.

    conf/parameters.schema.json is its committed copy (a test keeps it up to date).
    """
    from cltv.parameters import settings_schema as schema_text

    if out is None:
        click.echo(schema_text(), nl=False)
    else:
        out.write_text(schema_text())
