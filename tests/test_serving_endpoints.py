"""Serving endpoints follow the champions (issues 36 and 46): ``cltv-follow-champions`` checks
every endpoint first (the champion's version, the endpoint's config, no update in progress),
then points those serving another version at their champion through the SDK's serving-endpoint
update, keeping the served entity's scaling settings and the endpoint's traffic routes. Any
SDK error is one line; nothing moves unless every check passed. Databricks does not run here:
the workspace is a recorder answering with the SDK's own response types, raising its own
errors, and checking every request against the SDK's request types and signatures."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
from databricks.sdk.errors import (
    PermissionDenied,
    ResourceConflict,
    ResourceDoesNotExist,
)
from databricks.sdk.service import catalog, serving

from cltv.deploy.serving import main

VALUE = "main.cltv.cltv_value"
CHURN = "main.cltv.cltv_churn"
BOTH = ["--served", "cltv-value-prod", "cltv_value", VALUE,
        "--served", "cltv-churn-prod", "cltv_churn", CHURN]  # fmt: skip


def entity(name: str, model: str, version: int, **settings) -> serving.ServedEntityOutput:
    return serving.ServedEntityOutput(
        name=name, entity_name=model, entity_version=str(version), **settings
    )


def route(name: str, percentage: int) -> serving.Route:
    return serving.Route(served_entity_name=name, traffic_percentage=percentage)


def endpoint(
    name: str,
    *entities: serving.ServedEntityOutput,
    routes: list[serving.Route] | None = None,
    updating: bool = False,
) -> serving.ServingEndpointDetailed:
    """An endpoint as ``serving_endpoints.get`` returns it; by default as the bundle creates
    it: one served entity taking all the traffic, not updating."""
    config_update = serving.EndpointStateConfigUpdate
    return serving.ServingEndpointDetailed(
        name=name,
        config=serving.EndpointCoreConfigOutput(
            served_entities=list(entities),
            traffic_config=serving.TrafficConfig(
                routes=routes if routes is not None else [route(entities[0].name, 100)]
            ),
        ),
        state=serving.EndpointState(
            config_update=config_update.IN_PROGRESS if updating else config_update.NOT_UPDATING,
            ready=serving.EndpointStateReady.READY,
        ),
        pending_config=serving.EndpointPendingConfig(start_time=1) if updating else None,
    )


def bundle_endpoints(value_version: int = 3, churn_version: int = 2) -> dict:
    """Both endpoints as ``databricks bundle deploy`` creates them."""
    small = {"workload_size": "Small", "scale_to_zero_enabled": True}
    return {
        "cltv-value-prod": endpoint(
            "cltv-value-prod", entity("cltv_value", VALUE, value_version, **small)
        ),
        "cltv-churn-prod": endpoint(
            "cltv-churn-prod", entity("cltv_churn", CHURN, churn_version, **small)
        ),
    }


class Workspace:
    """What the task calls of a ``WorkspaceClient``. Answers with SDK types, records every
    call in ``calls`` and every update request in ``updates``; ``failures`` maps a
    ``(method, endpoint or model)`` to the SDK error that call raises. Like Databricks, it
    refuses an update while another one is in progress."""

    def __init__(
        self,
        champions: dict[str, int],
        endpoints: dict[str, serving.ServingEndpointDetailed],
        failures: dict[tuple[str, str], Exception] | None = None,
    ) -> None:
        self.champions, self.endpoints, self.failures = champions, endpoints, failures or {}
        self.calls: list[tuple[str, str]] = []
        self.updates: list[dict] = []
        self.model_versions = SimpleNamespace(get_by_alias=self.get_by_alias)
        self.serving_endpoints = SimpleNamespace(get=self.get, update_config=self.update_config)

    def _call(self, method: str, key: str) -> None:
        self.calls.append((method, key))
        if (method, key) in self.failures:
            raise self.failures[method, key]

    def get_by_alias(self, full_name: str, alias: str) -> catalog.ModelVersionInfo:
        self._call("get_by_alias", full_name)
        if full_name not in self.champions:
            raise ResourceDoesNotExist(f"Model version with alias {alias} not found")
        return catalog.ModelVersionInfo(
            model_name=full_name, version=self.champions[full_name], aliases=[]
        )

    def get(self, name: str) -> serving.ServingEndpointDetailed:
        self._call("get", name)
        if name not in self.endpoints:
            raise ResourceDoesNotExist(f"Endpoint with name '{name}' does not exist.")
        return self.endpoints[name]

    def update_config(self, name: str, **request) -> None:
        accepted = inspect.signature(serving.ServingEndpointsAPI.update_config).parameters
        assert set(request) <= set(accepted) - {"self", "name"}, request
        for sent in request["served_entities"]:
            assert isinstance(sent, serving.ServedEntityInput)
            # the SDK's request model keeps every field: none unknown or misnamed
            assert serving.ServedEntityInput.from_dict(sent.as_dict()) == sent
        traffic = request.get("traffic_config")
        assert traffic is None or isinstance(traffic, serving.TrafficConfig)
        self._call("update_config", name)
        state = self.endpoints[name].state
        if state and state.config_update == serving.EndpointStateConfigUpdate.IN_PROGRESS:
            raise ResourceConflict(f"Endpoint {name} is currently being updated.")
        self.updates.append({"name": name, **request})


def run(workspace: Workspace, argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    code = main(argv, client=workspace)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def test_an_endpoint_serving_an_old_version_is_pointed_at_the_champion(capsys):
    workspace = Workspace({VALUE: 5, CHURN: 2}, bundle_endpoints(value_version=3, churn_version=2))
    code, out, err = run(workspace, BOTH, capsys)
    assert (code, err) == (0, [])
    assert workspace.updates == [
        {
            "name": "cltv-value-prod",
            "served_entities": [
                serving.ServedEntityInput(
                    name="cltv_value",
                    entity_name=VALUE,
                    entity_version="5",
                    workload_size="Small",
                    scale_to_zero_enabled=True,
                )
            ],
            "traffic_config": serving.TrafficConfig(routes=[route("cltv_value", 100)]),
        }
    ]
    # the churn endpoint already serves its champion: read, never updated
    assert ("update_config", "cltv-churn-prod") not in workspace.calls
    assert out == [
        f"cltv-value-prod: serves {VALUE} version 5 (was 3)",
        f"cltv-churn-prod: serves {CHURN} version 2 already, unchanged",
    ]


def test_the_scaling_and_traffic_settings_survive_the_update(capsys):
    # made by hand in the Serving page: Databricks named the served entity <model>-<version>,
    # sized it, gave it secrets, and split the traffic with a shadow model
    scaling = {
        "workload_size": "Medium",
        "workload_type": serving.ServingModelWorkloadType.GPU_SMALL,
        "scale_to_zero_enabled": False,
        "environment_vars": {"LOG_LEVEL": "info", "TOKEN": "{{secrets/cltv/token}}"},
        "min_provisioned_throughput": 0,
        "max_provisioned_throughput": 1_000,
    }
    shadow = entity("shadow", "main.cltv.cltv_value_shadow", 1, workload_size="Small")
    workspace = Workspace(
        {VALUE: 5},
        {
            "cltv-value-prod": endpoint(
                "cltv-value-prod",
                entity("cltv_value-3", VALUE, 3, creator="someone@example.com", **scaling),
                shadow,
                routes=[route("cltv_value-3", 80), route("shadow", 20)],
            )
        },
    )
    code, out, err = run(workspace, ["--served", "cltv-value-prod", "cltv_value", VALUE], capsys)
    assert (code, out, err) == (0, [f"cltv-value-prod: serves {VALUE} version 5 (was 3)"], [])
    (update,) = workspace.updates
    assert update == {
        "name": "cltv-value-prod",
        "served_entities": [
            serving.ServedEntityInput(
                name="cltv_value", entity_name=VALUE, entity_version="5", **scaling
            ),
            serving.ServedEntityInput(
                name="shadow",
                entity_name="main.cltv.cltv_value_shadow",
                entity_version="1",
                workload_size="Small",
            ),
        ],
        # the route follows its served entity to its new name, with its share
        "traffic_config": serving.TrafficConfig(
            routes=[route("cltv_value", 80), route("shadow", 20)]
        ),
    }


def test_routes_to_a_served_entity_keeping_its_name_are_sent_as_they_are(capsys):
    routes = [route("cltv_value", 90), route("shadow", 10)]
    workspace = Workspace(
        {VALUE: 5},
        {
            "cltv-value-prod": endpoint(
                "cltv-value-prod",
                entity("cltv_value", VALUE, 3, workload_size="Large"),
                entity("shadow", VALUE, 4, workload_size="Small"),
                routes=routes,
            )
        },
    )
    assert main(["--served", "cltv-value-prod", "cltv_value", VALUE], client=workspace) == 0
    (update,) = workspace.updates
    assert update["traffic_config"] == serving.TrafficConfig(routes=routes)
    assert [(e.name, e.entity_version, e.workload_size) for e in update["served_entities"]] == [
        ("cltv_value", "5", "Large"),
        ("shadow", "4", "Small"),  # the other version of the model is not the one that follows
    ]


@pytest.mark.parametrize(
    ("failure", "line"),
    [
        pytest.param(
            {("get", "cltv-churn-prod"): PermissionDenied("User does not have MANAGE on it")},
            "Error: cltv-churn-prod: cannot read the endpoint (PermissionDenied: User does not "
            "have MANAGE on it): grant the job's identity CAN MANAGE on serving endpoint "
            "cltv-churn-prod, then re-run the follow_champions task; no endpoint was changed",
            id="permission on the second endpoint",
        ),
        pytest.param(
            {("get_by_alias", CHURN): PermissionDenied("User does not have EXECUTE")},
            f"Error: cltv-churn-prod: cannot read {CHURN}@champion (PermissionDenied: User does "
            f"not have EXECUTE): grant the job's identity EXECUTE on {CHURN} (and USE CATALOG, "
            "USE SCHEMA), then re-run the follow_champions task; no endpoint was changed",
            id="permission on the second model",
        ),
        pytest.param(
            {("get", "cltv-churn-prod"): TimeoutError("Timed out after 0:05:00")},
            "Error: cltv-churn-prod: cannot read the endpoint (TimeoutError: Timed out after "
            "0:05:00): the workspace did not answer: check DATABRICKS_HOST and the network, "
            "then re-run the follow_champions task; no endpoint was changed",
            id="no answer",
        ),
    ],
)
def test_a_failed_check_moves_nothing_and_says_which_endpoint_in_one_line(capsys, failure, line):
    # the first endpoint passes its check and would move: it must not, the second failed
    workspace = Workspace({VALUE: 5, CHURN: 4}, bundle_endpoints(value_version=3), failure)
    code, out, err = run(workspace, BOTH, capsys)
    assert (code, out, err) == (1, [], [line])
    assert [call for call in workspace.calls if call[0] == "update_config"] == []


def test_an_update_already_in_progress_moves_nothing(capsys):
    endpoints = bundle_endpoints(value_version=3)
    endpoints["cltv-churn-prod"] = endpoint(
        "cltv-churn-prod", entity("cltv_churn", CHURN, 2), updating=True
    )
    workspace = Workspace({VALUE: 5, CHURN: 4}, endpoints)
    code, out, err = run(workspace, BOTH, capsys)
    assert (code, out, workspace.updates) == (1, [], [])
    assert err == [
        "Error: cltv-churn-prod: an update of the endpoint is already in progress: wait until "
        "it ends (databricks serving-endpoints get cltv-churn-prod), then re-run the "
        "follow_champions task; no endpoint was changed"
    ]


def test_no_champion_and_no_endpoint_stop_the_task_in_one_line_each(capsys):
    workspace = Workspace({CHURN: 4}, {"cltv-value-prod": bundle_endpoints()["cltv-value-prod"]})
    code, out, err = run(workspace, BOTH, capsys)
    assert (code, out, workspace.updates) == (1, [], [])
    assert err == [
        f"Error: cltv-value-prod: no version of {VALUE} has the alias 'champion': run the "
        "training job first (it promotes one); no endpoint was changed",
        "Error: cltv-churn-prod: no such serving endpoint: deploy the bundle with "
        "databricks.serving.enabled to create it (databricks bundle deploy -t <target> "
        "--var cltv_value_version=<v> --var cltv_churn_version=<v>); no endpoint was changed",
    ]


def test_a_failed_update_says_which_endpoints_already_moved(capsys):
    workspace = Workspace(
        {VALUE: 5, CHURN: 4},
        bundle_endpoints(value_version=3, churn_version=2),
        {("update_config", "cltv-churn-prod"): ResourceConflict("Endpoint is being updated")},
    )
    code, out, err = run(workspace, BOTH, capsys)
    assert code == 1
    assert [update["name"] for update in workspace.updates] == ["cltv-value-prod"]
    assert out == [f"cltv-value-prod: serves {VALUE} version 5 (was 3)"]
    assert err == [
        f"Error: cltv-churn-prod: the update to {CHURN} version 4 failed (ResourceConflict: "
        "Endpoint is being updated); already moved to their champions, not rolled back: "
        "cltv-value-prod (version 3 -> 5); fix the cause and re-run the follow_champions task "
        "to move the rest"
    ]


@pytest.mark.parametrize(
    ("entities", "problem"),
    [
        pytest.param(
            [entity("other", "main.cltv.other", 1)],
            f"serves no version of {VALUE}: point it at one in the Serving page, or delete it "
            "and deploy the bundle again to recreate it",
            id="another model",
        ),
        pytest.param(
            [entity("a", VALUE, 3), entity("b", VALUE, 4)],
            f"serves 2 versions of {VALUE} as a (version 3), b (version 4) and none is named "
            "cltv_value: rename the one that should follow the champion to cltv_value in the "
            "Serving page",
            id="two versions, neither named",
        ),
    ],
)
def test_an_endpoint_whose_following_entity_is_unclear_is_not_guessed(capsys, entities, problem):
    workspace = Workspace({VALUE: 5}, {"cltv-value-prod": endpoint("cltv-value-prod", *entities)})
    code, out, err = run(workspace, ["--served", "cltv-value-prod", "cltv_value", VALUE], capsys)
    assert (code, out, workspace.updates) == (1, [], [])
    assert err == [
        f"Error: cltv-value-prod: {problem}, then re-run the follow_champions task; "
        "no endpoint was changed"
    ]
