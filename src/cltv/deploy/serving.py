"""Model Serving endpoints that follow the registry's champions.

A Databricks endpoint serves a model *version*, not an alias, so a promotion alone does not
move it. With ``databricks.serving.enabled``, the training job ends with a task that runs
``cltv-follow-champions`` (a console script of the wheel). It works in two phases:

1. *Check*, every endpoint before changing any: read the version holding the alias
   (``champion``) in Unity Catalog and the endpoint's current config. No champion, a missing
   endpoint, an update already in progress, a served entity that cannot be told apart, or any
   SDK error (permission, conflict, network) stops the task with one line per endpoint, and no
   endpoint is changed.
2. *Move* the endpoints that serve another version. Only the served entity's version (and its
   name, when it is not the one the bundle gives) changes: its workload size and type,
   scale-to-zero, environment variables and provisioned throughput, the endpoint's other served
   entities and its traffic routes are sent back as they are.

If an update request still fails midway, the endpoints already moved are *not* rolled back:
each endpoint follows its own model's champion, so a moved one serves what it should; its
update is still rolling out, and a second update would be refused as a conflict until it ends.
The error line names the endpoint that failed and those already moved, and re-running the task
moves the rest (an endpoint already serving its champion is left alone).

Example (the task's parameters, as the bundle writes them)::

    cltv-follow-champions \\
        --served cltv-value-prod cltv_value main.cltv_churn.cltv_value \\
        --served cltv-churn-prod cltv_churn main.cltv_churn.cltv_churn
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated
from databricks.sdk.service.serving import (
    EndpointStateConfigUpdate,
    ServedEntityInput,
    ServedEntityOutput,
    ServingEndpointDetailed,
    TrafficConfig,
)

from cltv.deploy.bundle import FOLLOW_CHAMPIONS_ENTRY_POINT, FOLLOW_CHAMPIONS_TASK

ENTRY_POINT = FOLLOW_CHAMPIONS_ENTRY_POINT

# Every failure of a workspace call is an OSError: the SDK's DatabricksError (PermissionDenied,
# ResourceConflict, NotFound, ...) subclasses it, and so do requests' connection errors and the
# TimeoutError the SDK raises once it gives up retrying a connection.
WORKSPACE_ERRORS = OSError

RERUN = f"re-run the {FOLLOW_CHAMPIONS_TASK} task"


class ServingError(RuntimeError):
    """An endpoint cannot follow its champion, in one line that names it and what to do."""


@dataclass(frozen=True)
class ServedModel:
    """One endpoint and the registered model it serves."""

    endpoint: str  # the endpoint's name, e.g. cltv-value-prod
    served_name: str  # the served entity's name in the endpoint, e.g. cltv_value
    registered_model: str  # <catalog>.<schema>.<name> in Unity Catalog


@dataclass(frozen=True)
class EndpointMove:
    """What the check phase found for one endpoint, and the update that points it at its
    champion (sent only when ``changed``)."""

    served: ServedModel
    before: str  # the version the endpoint serves now
    version: str  # the champion's version
    served_entities: list[ServedEntityInput]
    traffic_config: TrafficConfig | None

    @property
    def changed(self) -> bool:
        return self.before != self.version


def _failure(error: BaseException) -> str:
    """The SDK error as ``Kind: first line of its message``."""
    message = str(error).strip().splitlines()
    return type(error).__name__ + (f": {message[0]}" if message else "")


def _what_to_do(error: BaseException, permission: str) -> str:
    if isinstance(error, (PermissionDenied, Unauthenticated)):
        return permission
    if not isinstance(error, DatabricksError):  # no answer: a connection error or a timeout
        return f"the workspace did not answer: check DATABRICKS_HOST and the network, then {RERUN}"
    return f"see the endpoint's events in the Serving page, then {RERUN}"


def _as_input(entity: ServedEntityOutput) -> ServedEntityInput:
    """The request that serves ``entity`` as it is served now: every setting the input type
    has (workload size and type, scale-to-zero, environment variables, provisioned throughput
    and concurrency, ...), none of the output-only ones (state, creator, timestamps)."""
    return ServedEntityInput(
        **{
            field.name: getattr(entity, field.name)
            for field in dataclasses.fields(ServedEntityInput)
        }
    )


def _renamed_routes(traffic: TrafficConfig | None, old: str, new: str) -> TrafficConfig | None:
    """``traffic`` with the routes to served entity ``old`` sent to ``new`` instead, each
    keeping its percentage."""
    if traffic is None or old == new:
        return traffic

    def renamed(name: str | None) -> str | None:
        return new if name == old else name

    return TrafficConfig(
        routes=[
            dataclasses.replace(
                route,
                served_entity_name=renamed(route.served_entity_name),
                served_model_name=renamed(route.served_model_name),
            )
            for route in (traffic.routes or [])
        ]
    )


def _served_entity(endpoint: ServingEndpointDetailed, served: ServedModel) -> ServedEntityOutput:
    """The served entity of ``endpoint`` that follows ``served.registered_model``: the one the
    bundle named ``served.served_name``, else the only one serving that model."""
    entities = (endpoint.config.served_entities or []) if endpoint.config else []
    of_model = [entity for entity in entities if entity.entity_name == served.registered_model]
    named = [entity for entity in of_model if entity.name == served.served_name]
    if named:
        return named[0]
    if len(of_model) == 1:
        return of_model[0]
    found = ", ".join(f"{e.name} (version {e.entity_version})" for e in of_model)
    raise ServingError(
        f"{served.endpoint}: "
        + (
            f"serves {len(of_model)} versions of {served.registered_model} as {found} and none is "
            f"named {served.served_name}: rename the one that should follow the champion to "
            f"{served.served_name} in the Serving page"
            if of_model
            else f"serves no version of {served.registered_model}: point it at one in the "
            "Serving page, or delete it and deploy the bundle again to recreate it"
        )
        + f", then {RERUN}"
    )


def check_endpoint(client: Any, served: ServedModel, alias: str = "champion") -> EndpointMove:
    """Read the champion of ``served.registered_model`` and ``served.endpoint``'s config, and
    work out the update that keeps everything of the endpoint except the served version.
    Changes nothing; raises :class:`ServingError` in one line when the endpoint cannot move."""
    model = served.registered_model
    try:
        version = str(client.model_versions.get_by_alias(model, alias).version)
    except NotFound:
        raise ServingError(
            f"{served.endpoint}: no version of {model} has the alias '{alias}': run the "
            "training job first (it promotes one)"
        ) from None
    except WORKSPACE_ERRORS as error:
        raise ServingError(
            f"{served.endpoint}: cannot read {model}@{alias} ({_failure(error)}): "
            + _what_to_do(
                error,
                f"grant the job's identity EXECUTE on {model} (and USE CATALOG, USE SCHEMA), "
                f"then {RERUN}",
            )
        ) from None
    try:
        endpoint = client.serving_endpoints.get(served.endpoint)
    except NotFound:
        raise ServingError(
            f"{served.endpoint}: no such serving endpoint: deploy the bundle with "
            "databricks.serving.enabled to create it (databricks bundle deploy -t <target> "
            "--var cltv_value_version=<v> --var cltv_churn_version=<v>)"
        ) from None
    except WORKSPACE_ERRORS as error:
        raise ServingError(
            f"{served.endpoint}: cannot read the endpoint ({_failure(error)}): "
            + _what_to_do(
                error,
                f"grant the job's identity CAN MANAGE on serving endpoint {served.endpoint}, "
                f"then {RERUN}",
            )
        ) from None
    state = endpoint.state.config_update if endpoint.state else None
    if state == EndpointStateConfigUpdate.IN_PROGRESS or endpoint.pending_config is not None:
        raise ServingError(
            f"{served.endpoint}: an update of the endpoint is already in progress: wait until "
            f"it ends (databricks serving-endpoints get {served.endpoint}), then {RERUN}"
        )
    current = _served_entity(endpoint, served)
    moved = dataclasses.replace(_as_input(current), name=served.served_name, entity_version=version)
    return EndpointMove(
        served=served,
        before=str(current.entity_version),
        version=version,
        served_entities=[
            moved if entity is current else _as_input(entity)
            for entity in endpoint.config.served_entities
        ],
        traffic_config=_renamed_routes(
            endpoint.config.traffic_config, current.name, served.served_name
        ),
    )


def move_endpoint(client: Any, move: EndpointMove) -> None:
    """Send ``move``'s update; :class:`ServingError` in one line when it is refused."""
    try:
        client.serving_endpoints.update_config(
            name=move.served.endpoint,
            served_entities=move.served_entities,
            traffic_config=move.traffic_config,
        )
    except WORKSPACE_ERRORS as error:
        raise ServingError(
            f"{move.served.endpoint}: the update to {move.served.registered_model} version "
            f"{move.version} failed ({_failure(error)})"
        ) from None


def main(argv: Sequence[str] | None = None, client: Any = None) -> int:
    """``cltv-follow-champions``: every ``--served`` endpoint follows its champion, checked
    all before any is moved."""
    parser = argparse.ArgumentParser(prog=ENTRY_POINT, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--served",
        nargs=3,
        action="append",
        required=True,
        metavar=("ENDPOINT", "SERVED_NAME", "REGISTERED_MODEL"),
    )
    parser.add_argument("--alias", default="champion")
    # Jobs generated by `kedro cltv bundle` pass it; the endpoint's own size is kept instead.
    parser.add_argument("--workload-size", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if client is None:
        from databricks.sdk import WorkspaceClient

        try:
            client = WorkspaceClient()  # the job's own identity
        except ValueError as error:  # the SDK's "cannot configure default credentials"
            print(
                f"Error: cannot connect to the Databricks workspace ({_failure(error)}): run "
                "this as the bundle's job, or set DATABRICKS_HOST and credentials",
                file=sys.stderr,
            )
            return 1

    moves, problems = [], []
    for endpoint, name, model in args.served:
        try:
            moves.append(check_endpoint(client, ServedModel(endpoint, name, model), args.alias))
        except ServingError as problem:
            problems.append(problem)
    for problem in problems:
        print(f"Error: {problem}; no endpoint was changed", file=sys.stderr)
    if problems:
        return 1

    moved: list[EndpointMove] = []
    for move in moves:
        served = move.served
        if move.changed:
            try:
                move_endpoint(client, move)
            except ServingError as problem:
                already = ", ".join(
                    f"{m.served.endpoint} (version {m.before} -> {m.version})" for m in moved
                )
                print(
                    f"Error: {problem}; "
                    + (
                        f"already moved to their champions, not rolled back: {already}; "
                        if moved
                        else "no endpoint was changed; "
                    )
                    + f"fix the cause and {RERUN} to move the rest",
                    file=sys.stderr,
                )
                return 1
            moved.append(move)
        print(
            f"{served.endpoint}: serves {served.registered_model} version {move.version}"
            + (f" (was {move.before})" if move.changed else " already, unchanged")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
