"""Project commands: ``kedro cltv …`` (Kedro loads the ``cli`` group of ``<package>.cli``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group(name="cltv-churn")
def cli() -> None:
    """Commands of the cltv-churn project."""


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
