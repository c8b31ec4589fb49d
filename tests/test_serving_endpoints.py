"""Serving endpoints follow the champions (issue 36): ``cltv-follow-champions`` reads the
version holding the alias and points an endpoint at it through the SDK's serving-endpoint
update, only when it serves another one. Databricks does not run here: the workspace is a
recorder answering with the SDK's own response types, and every request is checked against
the SDK's request types and signatures."""

from __future__ import annotations

import inspect
import re

import pytest
from databricks.sdk.errors import NotFound
from databricks.sdk.service import catalog, serving

from cltv.deploy.serving import ServedModel, ServingError, follow_champion, main

VALUE = "main.cltv.cltv_value"


class Workspace:
    """What the task calls of a ``WorkspaceClient``, answering with SDK types and recording
    each update request."""

    def __init__(self, champions: dict[str, int], serving_now: dict[str, str]) -> None:
        self.updates: list[dict] = []
        outer = self

        class ModelVersions:
            def get_by_alias(self, full_name: str, alias: str) -> catalog.ModelVersionInfo:
                if full_name not in champions:
                    raise NotFound(f"Model version with alias {alias} not found")
                return catalog.ModelVersionInfo(
                    model_name=full_name, version=champions[full_name], aliases=[]
                )

        class ServingEndpoints:
            def get(self, name: str) -> serving.ServingEndpointDetailed:
                entity_name, version = serving_now[name].split("@")
                entity = serving.ServedEntityOutput(entity_name=entity_name, entity_version=version)
                return serving.ServingEndpointDetailed(
                    name=name, config=serving.EndpointCoreConfigOutput(served_entities=[entity])
                )

            def update_config(self, name: str, **request) -> None:
                accepted = inspect.signature(serving.ServingEndpointsAPI.update_config).parameters
                assert set(request) <= set(accepted) - {"self", "name"}, request
                outer.updates.append({"name": name, **request})

        self.model_versions = ModelVersions()
        self.serving_endpoints = ServingEndpoints()


def test_an_endpoint_serving_an_old_version_is_pointed_at_the_champion():
    workspace = Workspace({VALUE: 5}, {"cltv-value-prod": f"{VALUE}@3"})
    done = follow_champion(workspace, ServedModel("cltv-value-prod", "cltv_value", VALUE))
    assert done == {"endpoint": "cltv-value-prod", "before": ["3"], "version": "5", "changed": True}
    (update,) = workspace.updates
    (entity,) = update["served_entities"]
    assert isinstance(entity, serving.ServedEntityInput)
    # the SDK's request model keeps every field: none unknown or misnamed
    assert serving.ServedEntityInput.from_dict(entity.as_dict()) == entity
    assert entity.as_dict() == {
        "name": "cltv_value",
        "entity_name": VALUE,
        "entity_version": "5",
        "workload_size": "Small",
        "scale_to_zero_enabled": True,
    }
    assert update["name"] == "cltv-value-prod"


def test_an_endpoint_already_serving_its_champion_is_left_alone():
    workspace = Workspace({VALUE: 5}, {"cltv-value-prod": f"{VALUE}@5"})
    done = follow_champion(workspace, ServedModel("cltv-value-prod", "cltv_value", VALUE))
    assert done["changed"] is False and workspace.updates == []


def test_no_champion_stops_the_task_in_one_line_and_changes_nothing(capsys):
    workspace = Workspace({}, {"cltv-value-prod": f"{VALUE}@3"})
    with pytest.raises(ServingError, match=re.escape(f"no version of {VALUE} has the alias")):
        follow_champion(workspace, ServedModel("cltv-value-prod", "cltv_value", VALUE))
    code = main(["--served", "cltv-value-prod", "cltv_value", VALUE], client=workspace)
    assert code == 1 and workspace.updates == []
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("Error: no version of main.cltv.cltv_value has the alias 'champion'")


def test_the_task_moves_each_endpoint_and_says_what_it_did(capsys):
    churn = "main.cltv.cltv_churn"
    workspace = Workspace(
        {VALUE: 5, churn: 2}, {"cltv-value-prod": f"{VALUE}@3", "cltv-churn-prod": f"{churn}@2"}
    )
    argv = ["--served", "cltv-value-prod", "cltv_value", VALUE,
            "--served", "cltv-churn-prod", "cltv_churn", churn]  # fmt: skip
    assert main(argv, client=workspace) == 0
    assert [update["name"] for update in workspace.updates] == ["cltv-value-prod"]
    assert capsys.readouterr().out.splitlines() == [
        f"cltv-value-prod: serves {VALUE} version 5 (was 3)",
        f"cltv-churn-prod: serves {churn} version 2 already, unchanged",
    ]
