"""Model Serving endpoints that follow the registry's champions.

A Databricks endpoint serves a model *version*, not an alias, so a promotion alone does not
move it. With ``databricks.serving.enabled``, the training job ends with a task that runs
``cltv-follow-champions`` (a console script of the wheel): for each endpoint it reads the
version holding the alias (``champion``) in Unity Catalog and, when the endpoint serves
another one, points it at the champion through the SDK's serving-endpoint update. An endpoint
already serving its champion is left alone. No champion, or a registry error, stops the task
with one line and changes nothing: the endpoint keeps what it serves.

Example (the task's parameters, as the bundle writes them)::

    cltv-follow-champions \\
        --served cltv-value-prod cltv_value main.cltv_churn.cltv_value \\
        --served cltv-churn-prod cltv_churn main.cltv_churn.cltv_churn
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from databricks.sdk.errors import NotFound
from databricks.sdk.service.serving import ServedEntityInput

from cltv.deploy.bundle import FOLLOW_CHAMPIONS_ENTRY_POINT

ENTRY_POINT = FOLLOW_CHAMPIONS_ENTRY_POINT


class ServingError(RuntimeError):
    """An endpoint cannot follow its champion; nothing was changed."""


@dataclass(frozen=True)
class ServedModel:
    """One endpoint and the registered model it serves."""

    endpoint: str  # the endpoint's name, e.g. cltv-value-prod
    served_name: str  # the served entity's name in the endpoint, e.g. cltv_value
    registered_model: str  # <catalog>.<schema>.<name> in Unity Catalog
    workload_size: str = "Small"


def champion_version(client: Any, registered_model: str, alias: str) -> str:
    """The version of ``registered_model`` holding ``alias``; a one-line error when none does."""
    try:
        return str(client.model_versions.get_by_alias(registered_model, alias).version)
    except NotFound:
        raise ServingError(
            f"no version of {registered_model} has the alias '{alias}': run the training job "
            "first (it promotes one); the endpoint keeps serving what it serves"
        ) from None


def follow_champion(client: Any, served: ServedModel, alias: str = "champion") -> dict[str, Any]:
    """Point ``served.endpoint`` at the version of its model holding ``alias``, unless it
    already serves it. Returns what was done: the endpoint, the version before and after,
    and whether it ``changed``."""
    version = champion_version(client, served.registered_model, alias)
    endpoint = client.serving_endpoints.get(served.endpoint)
    entities = (endpoint.config.served_entities or []) if endpoint.config else []
    serving = sorted(
        {str(e.entity_version) for e in entities if e.entity_name == served.registered_model}
    )
    outcome = {"endpoint": served.endpoint, "before": serving, "version": version}
    if serving == [version]:
        return {**outcome, "changed": False}
    client.serving_endpoints.update_config(
        name=served.endpoint,
        served_entities=[
            ServedEntityInput(
                name=served.served_name,
                entity_name=served.registered_model,
                entity_version=version,
                workload_size=served.workload_size,
                scale_to_zero_enabled=True,
            )
        ],
    )
    return {**outcome, "changed": True}


def main(argv: Sequence[str] | None = None, client: Any = None) -> int:
    """``cltv-follow-champions``: every ``--served`` endpoint follows its champion."""
    parser = argparse.ArgumentParser(prog=ENTRY_POINT, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--served",
        nargs=3,
        action="append",
        required=True,
        metavar=("ENDPOINT", "SERVED_NAME", "REGISTERED_MODEL"),
    )
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--workload-size", default="Small")
    args = parser.parse_args(argv)
    if client is None:
        from databricks.sdk import WorkspaceClient

        client = WorkspaceClient()  # the job's own identity
    try:
        for endpoint, name, model in args.served:
            done = follow_champion(
                client, ServedModel(endpoint, name, model, args.workload_size), args.alias
            )
            before = ", ".join(done["before"]) or "nothing"
            print(
                f"{endpoint}: serves {model} version {done['version']}"
                + (f" (was {before})" if done["changed"] else " already, unchanged")
            )
    except ServingError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
