"""The Databricks side, checked offline: the bundle files, the generated job, conf/databricks."""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import pytest
import tomllib
import yaml
from click.testing import CliRunner
from databricks.sdk.service import jobs, serving
from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings
from kedro.io import DataCatalog, DatasetError
from kedro.pipeline import Pipeline, node

from cltv.cli import cli
from cltv.datasets import UnityCatalogTableDataset
from cltv.deploy.bundle import (
    JOB_RESOURCE,
    RUNTIME_PARAMS,
    SERVING_RESOURCE,
    bundle_job_resource,
    bundle_serving_resource,
    check_cross_task_datasets,
    pipeline_dependencies,
)

# data_processing -> cltv -> churn_modeling (it reads the models' churn scores) -> reporting
EXPECTED_DAG = {
    "data_processing": [],
    "churn_modeling": ["cltv"],
    "cltv": ["data_processing"],
    "reporting": ["churn_modeling"],
}


def _job(text: str) -> dict:
    return yaml.safe_load(text)["resources"]["jobs"]["cltv_churn"]


def _bundle_files(root: Path) -> dict[str, dict]:
    files = {"databricks.yml": yaml.safe_load((root / "databricks.yml").read_text())}
    for pattern in files["databricks.yml"]["include"]:
        for path in sorted(root.glob(pattern)):
            files[str(path.relative_to(root))] = yaml.safe_load(path.read_text())
    return files


def _databricks_config(root: Path, **runtime_params) -> OmegaConfigLoader:
    return OmegaConfigLoader(
        str(root / "conf"), env="databricks", runtime_params=runtime_params,
        **settings.CONFIG_LOADER_ARGS,
    )  # fmt: skip


# ---------------------------------------------------------------- the generated job
def test_committed_job_resource_is_what_the_registry_generates(project_root):
    committed = (project_root / JOB_RESOURCE).read_text()
    assert committed == bundle_job_resource(project_root)


def test_bundle_command_check_passes_on_the_committed_files(project_root, monkeypatch):
    monkeypatch.chdir(project_root)
    result = CliRunner().invoke(cli, ["cltv", "bundle", "--check"])
    assert result.exit_code == 0, result.output
    assert "differs" not in result.output


def test_job_runs_the_wheel_once_per_pipeline_in_dag_order(project_root):
    job = _job((project_root / JOB_RESOURCE).read_text())
    pyproject = tomllib.loads((project_root / "pyproject.toml").read_text())
    tasks = job["tasks"]
    assert {t["task_key"]: [d["task_key"] for d in t.get("depends_on", [])] for t in tasks} == (
        EXPECTED_DAG
    )
    position = {task["task_key"]: i for i, task in enumerate(tasks)}
    for task in tasks:
        assert all(
            position[d["task_key"]] < position[task["task_key"]] for d in task.get("depends_on", [])
        )
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"] == pyproject["project"]["name"]
        assert wheel_task["entry_point"] in pyproject["project"]["scripts"]
        args = wheel_task["parameters"]
        assert args[args.index("--pipelines") + 1] == task["task_key"]
        assert args[args.index("--env") + 1] == "databricks"
        assert args[args.index("--conf-source") + 1] == "${workspace.file_path}/conf"
        params = dict(p.split("=", 1) for p in args[args.index("--params") + 1].split(","))
        assert set(params) == set(RUNTIME_PARAMS)
        assert task["libraries"] == [{"whl": "../dist/*.whl"}]
        assert task["job_cluster_key"] == job["job_clusters"][0]["job_cluster_key"]


def test_a_second_job_scores_with_the_champion_and_both_schedules_are_paused(project_root):
    resource = yaml.safe_load((project_root / JOB_RESOURCE).read_text())["resources"]["jobs"]
    assert set(resource) == {"cltv_churn", "cltv_churn_scoring"}
    training, scoring = resource["cltv_churn"], resource["cltv_churn_scoring"]
    (task,) = scoring["tasks"]
    args = task["python_wheel_task"]["parameters"]
    assert task["task_key"] == "scoring" and args[args.index("--pipelines") + 1] == "scoring"
    assert "depends_on" not in task
    # the same wheel, conf and Unity Catalog locations as training
    assert (
        args[args.index("--params") + 1]
        == (training["tasks"][0]["python_wheel_task"]["parameters"][-1])
    )
    assert task["libraries"] == [{"whl": "../dist/*.whl"}]
    assert scoring["job_clusters"] == training["job_clusters"]
    schedules = yaml.safe_load((project_root / "conf/databricks/globals.yml").read_text())[
        "databricks"
    ]["schedules"]
    for job, cron in ((training, schedules["training"]), (scoring, schedules["scoring"])):
        assert job["schedule"] == {
            "quartz_cron_expression": cron,
            "timezone_id": "UTC",
            "pause_status": "PAUSED",
        }
        assert jobs.JobSettings.from_dict(job).as_dict() == job
    assert "[${bundle.target}]" in scoring["name"] and scoring["name"] != training["name"]


def test_job_cluster_spark_conf_comes_from_conf_databricks(project_root):
    job = _job((project_root / JOB_RESOURCE).read_text())
    spark_conf = job["job_clusters"][0]["new_cluster"]["spark_conf"]
    own = yaml.safe_load((project_root / "conf" / "databricks" / "spark.yml").read_text())
    assert set(spark_conf) == set(own)
    assert spark_conf["spark.sql.session.timeZone"] == "UTC"
    assert spark_conf["spark.sql.adaptive.enabled"] == "true"  # Spark's spelling, not YAML's


@pytest.mark.parametrize("compute", ["cluster", "serverless"])
def test_job_settings_are_what_the_jobs_api_accepts(project_root, compute):
    # the SDK's models drop fields the Jobs API does not know: a round trip must be lossless
    job = _job(bundle_job_resource(project_root, compute))
    assert jobs.JobSettings.from_dict(job).as_dict() == job
    if compute == "serverless":
        (environment,) = job["environments"]
        assert environment["spec"]["dependencies"] == ["../dist/*.whl"]
        assert {t["environment_key"] for t in job["tasks"]} == {environment["environment_key"]}
        assert all("libraries" not in t and "job_cluster_key" not in t for t in job["tasks"])


# ---------------------------------------------------------------- the bundle files
def test_bundle_files_parse_and_every_reference_resolves(project_root):
    files = _bundle_files(project_root)
    bundle = files["databricks.yml"]
    assert bundle["bundle"]["name"] == "cltv-churn"
    assert set(bundle["targets"]) == {"dev", "prod"}
    assert [t for t, v in bundle["targets"].items() if v.get("default")] == ["dev"]
    resources: dict[str, dict] = {}
    for name, content in files.items():
        if name != "databricks.yml":
            for kind, items in content["resources"].items():
                resources.setdefault(kind, {}).update(items)
    assert {"jobs", "dashboards", "schemas", "volumes"} <= set(resources)
    text = "\n".join(yaml.safe_dump(content) for content in files.values())
    # declared in databricks.yml or in an included file (the serving endpoints' versions)
    declared = {name for content in files.values() for name in content.get("variables", {})}
    for variable in set(re.findall(r"\$\{var\.(\w+)\}", text)):
        assert variable in declared, variable
    for kind, key in set(re.findall(r"\$\{resources\.(\w+)\.(\w+)\.", text)):
        assert key in resources[kind], (kind, key)
    for target in bundle["targets"].values():
        assert set(target.get("variables", {})) <= set(bundle["variables"])


def test_bundle_paths_point_at_real_files(project_root):
    bundle = _bundle_files(project_root)["databricks.yml"]
    (artifact,) = bundle["artifacts"].values()
    assert artifact["type"] == "whl" and "--no-deps" in artifact["build"]
    assert "--wheel-dir dist" in artifact["build"]  # where the tasks' ../dist/*.whl looks
    dashboard = yaml.safe_load(
        (project_root / "resources" / "cltv_churn.dashboard.yml").read_text()
    )
    (board,) = dashboard["resources"]["dashboards"].values()
    assert (project_root / "resources" / board["file_path"]).resolve().is_file()
    excluded = bundle["sync"]["exclude"]
    assert not any(pattern.startswith("conf") for pattern in excluded)  # tasks read conf/


# ---------------------------------------------------------------- the Kedro DAG
def _identity(*inputs):
    return inputs[0]


def test_dependencies_follow_the_datasets_and_drop_implied_edges():
    pipelines = {
        "a": Pipeline([node(_identity, "raw", "clean", name="a1")]),
        "b": Pipeline([node(_identity, "clean", "model", name="b1")]),
        "c": Pipeline([node(_identity, ["clean", "model"], "report", name="c1")]),
        "d": Pipeline([node(_identity, "other", "unrelated", name="d1")]),
    }
    # c reads from a and b, but b already waits for a
    assert pipeline_dependencies(pipelines) == {"a": [], "b": ["a"], "c": ["b"], "d": []}


def test_dependency_cycle_is_an_error():
    pipelines = {
        "a": Pipeline([node(_identity, "y", "x", name="a1")]),
        "b": Pipeline([node(_identity, "x", "y", name="b1")]),
    }
    with pytest.raises(ValueError, match="cycle"):
        pipeline_dependencies(pipelines)


def test_dataset_crossing_tasks_in_memory_is_refused():
    pipelines = {
        "a": Pipeline([node(_identity, "raw", "clean", name="a1")]),
        "b": Pipeline([node(_identity, "clean", "model", name="b1")]),
    }
    check_cross_task_datasets(pipelines, {"clean": {"type": "json.JSONDataset"}})
    with pytest.raises(ValueError, match=r"clean \(written by a\)"):
        check_cross_task_datasets(pipelines, {})
    with pytest.raises(ValueError, match="clean"):
        check_cross_task_datasets(pipelines, {"clean": {"type": "MemoryDataset"}})


# ---------------------------------------------------------------- conf/databricks
def _stores_something(entry: dict) -> bool:
    inner = entry.get("dataset", {})
    return "filepath" in entry or "filepath" in inner or entry["type"].endswith("TableDataset")


def test_databricks_catalog_replaces_every_local_file_and_table(project_root):
    base = yaml.safe_load((project_root / "conf" / "base" / "catalog.yml").read_text())
    databricks = _databricks_config(project_root)["catalog"]
    for name, entry in base.items():
        if name.startswith("_") or not _stores_something(entry):
            continue
        replaced = databricks[name]
        if entry["type"].endswith("SparkDeltaTableDataset"):
            assert replaced["type"] == "cltv.datasets.UnityCatalogTableDataset", name
            assert (replaced["catalog"], replaced["database"]) == ("main", "cltv_churn"), name
            assert replaced["table"] == Path(entry["filepath"]).name  # the same table
        else:
            path = replaced.get("filepath") or replaced["dataset"]["filepath"]
            assert path.startswith("/Volumes/main/cltv_churn/cltv/"), (name, path)


def test_databricks_catalog_builds_with_the_jobs_runtime_params(project_root):
    config = _databricks_config(project_root, catalog="prod", schema="cltv_x", volume="files")
    catalog = DataCatalog.from_config(config["catalog"])
    summary = catalog["customer_summary"]
    assert isinstance(summary, UnityCatalogTableDataset)
    assert summary._describe()["catalog"] == "prod"
    assert summary._describe()["write_mode"] == "overwrite"
    assert summary._describe()["primary_key"] == "customer_id"
    assert catalog["transactions_clean"]._describe()["write_mode"] == "overwrite"
    previous = catalog["previous_churn_predictions"]  # drift: one write back, read only
    assert previous._describe()["table"] == "churn_predictions"
    assert previous._describe()["write_mode"] is None and previous._versions_back == 1
    assert str(catalog["raw_transactions"]._filepath).startswith("/Volumes/prod/cltv_x/files/")
    model = config["catalog"]["churn_model"]["save_args"]["registered_model_name"]
    assert model == "prod.cltv_x.cltv_churn"  # Unity Catalog models are three-level names
    mlflow_conf = config["mlflow"]
    assert mlflow_conf["server"]["mlflow_tracking_uri"] == "databricks"
    assert mlflow_conf["server"]["mlflow_registry_uri"] == "databricks-uc"
    assert mlflow_conf["tracking"]["experiment"]["name"].startswith("/")


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"schema": "cltv; DROP SCHEMA main.cltv"}, "schema"),
        ({"catalog": "main`.x"}, "catalog"),
        ({"schema": "dev-schema"}, "schema"),
        ({"catalog": "1st"}, "catalog"),
    ],
)
def test_bad_catalog_or_schema_names_stop_before_any_sql(project_root, params, named):
    config = _databricks_config(project_root, **params)
    with pytest.raises(DatasetError, match=rf"{named} .* is not a valid Unity Catalog identifier"):
        DataCatalog.from_config(config["catalog"])["customer_summary"]


def test_table_names_and_primary_keys_are_validated():
    ok = UnityCatalogTableDataset(table="t_1", database="s", catalog="c", write_mode="overwrite")
    assert ok._describe()["table"] == "t_1"
    with pytest.raises(DatasetError, match="table 'a b'"):
        UnityCatalogTableDataset(table="a b", database="s", write_mode="overwrite")
    with pytest.raises(DatasetError, match="primary key column 'id=1 OR 1=1'"):
        UnityCatalogTableDataset(
            table="t", database="s", write_mode="overwrite", primary_key=["id", "id=1 OR 1=1"]
        )


def test_a_table_cannot_be_upserted():
    # a MERGE keeps the rows of customers a run no longer scores, with an older model's numbers
    with pytest.raises(
        DatasetError, match=r"^t: write_mode 'upsert' keeps the rows a run no longer writes .* use"
    ):
        UnityCatalogTableDataset(
            table="t", database="s", write_mode="upsert", primary_key="customer_id"
        )


def test_databricks_tables_are_overwritten_as_the_local_tables_are(project_root):
    """After a run, a Unity Catalog table holds exactly that run's rows, as its local Delta
    table does: every table a run writes is overwritten (schema too: see
    tests/test_table_overwrite.py), none merged into; the per-customer ones keep customer_id as
    their primary key."""
    databricks = _databricks_config(project_root)["catalog"]
    local = yaml.safe_load((project_root / "conf" / "base" / "catalog.yml").read_text())
    written = {
        name: entry
        for name, entry in databricks.items()
        if not name.startswith("_")
        and entry.get("type") == "cltv.datasets.UnityCatalogTableDataset"
        and entry.get("write_mode") is not None
    }
    assert {name: entry["write_mode"] for name, entry in written.items()} == {
        name: "overwrite" for name in written
    }
    for name in written:
        if name in local:
            assert local[name]["type"] == "cltv.datasets.SparkDeltaTableDataset", name
            assert local[name].get("save_args", {}).get("mode", "overwrite") == "overwrite", name
    keyed = {name for name, entry in written.items() if "primary_key" in entry}
    assert keyed == {
        "customer_summary",
        "customer_features",
        "customer_features_current",
        "btyd_churn_scores",
        "btyd_churn_scores_current",
        "churn_predictions",
        "customer_summary_current",
        "customer_cltv",
    }
    assert {written[name]["primary_key"] for name in keyed} == {"customer_id"}


# ---------------------------------------------------------------- serving endpoints
def test_serving_endpoints_are_what_the_serving_api_accepts(project_root):
    text = bundle_serving_resource(project_root, enabled=True)
    endpoints = yaml.safe_load(text)["resources"]["model_serving_endpoints"]
    assert set(endpoints) == {"cltv_value", "cltv_churn"}
    accepted = set(inspect.signature(serving.ServingEndpointsAPI.create).parameters) - {"self"}
    # the versions are declared with the endpoints, without a default: a deploy that does not
    # give them is refused by the bundle, never served "1"
    declared = yaml.safe_load(text)["variables"]
    assert all("default" not in variable for variable in declared.values())
    bundle_variables = yaml.safe_load((project_root / "databricks.yml").read_text())["variables"]
    assert not {f"{key}_version" for key in endpoints} & set(bundle_variables)
    for key, endpoint in endpoints.items():
        assert set(endpoint) <= accepted, set(endpoint) - accepted
        request = {"name": endpoint["name"], **endpoint["config"]}
        # the SDK's request model keeps every field: none is unknown or misnamed
        assert serving.EndpointCoreConfigInput.from_dict(request).as_dict() == request
        (entity,) = endpoint["config"]["served_entities"]
        assert entity == {
            "name": key,
            "entity_name": f"${{var.catalog}}.${{resources.schemas.cltv_churn.name}}.{key}",
            "entity_version": f"${{var.{key}_version}}",
            "workload_size": "Small",
            "scale_to_zero_enabled": True,
        }
        assert f"{key}_version" in declared
    assert endpoints["cltv_value"]["name"] == "cltv-value-${bundle.target}"


def test_serving_is_off_by_default_and_the_bundle_command_adds_and_removes_it(
    project_root, tmp_path, monkeypatch
):
    assert bundle_serving_resource(project_root) is None
    assert not (project_root / SERVING_RESOURCE).exists()
    project = tmp_path / "project"
    shutil.copytree(project_root / "conf", project / "conf")
    shutil.copytree(project_root / "resources", project / "resources")
    for name in ("pyproject.toml", "databricks.yml"):
        shutil.copy(project_root / name, project)
    (project / "src").mkdir()  # the package itself is installed
    globals_file = project / "conf/databricks/globals.yml"
    settings_text = globals_file.read_text()
    monkeypatch.chdir(project)
    globals_file.write_text(settings_text.replace("enabled: false", "enabled: true"))
    result = CliRunner().invoke(cli, ["cltv", "bundle"])
    assert result.exit_code == 0, result.output
    # the endpoints, and the training job's task that keeps them on the champions
    assert result.output.splitlines() == [f"wrote: {JOB_RESOURCE}", f"wrote: {SERVING_RESOURCE}"]
    assert (project / SERVING_RESOURCE).read_text() == bundle_serving_resource(project)
    job = _job((project / JOB_RESOURCE).read_text())
    follow = job["tasks"][-1]
    assert follow["task_key"] == "follow_champions"
    assert follow["depends_on"] == [{"task_key": "reporting"}]  # after every pipeline task
    assert follow["python_wheel_task"] == {
        "package_name": "cltv",
        "entry_point": "cltv-follow-champions",
        "parameters": [
            "--served", "cltv-value-${bundle.target}", "cltv_value",
            "${var.catalog}.${resources.schemas.cltv_churn.name}.cltv_value",
            "--served", "cltv-churn-${bundle.target}", "cltv_churn",
            "${var.catalog}.${resources.schemas.cltv_churn.name}.cltv_churn",
            "--workload-size", "Small",
        ],
    }  # fmt: skip
    # the wheel declares that entry point
    scripts = tomllib.loads((project_root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["cltv-follow-champions"] == "cltv.deploy.serving:main"
    # and every reference in the bundle, the new file's included, still resolves
    test_bundle_files_parse_and_every_reference_resolves(project)
    globals_file.write_text(settings_text)
    result = CliRunner().invoke(cli, ["cltv", "bundle", "--check"])
    assert result.exit_code == 1 and f"differs: {SERVING_RESOURCE}" in result.output
    CliRunner().invoke(cli, ["cltv", "bundle"])
    assert not (project / SERVING_RESOURCE).exists()
    assert "follow_champions" not in (project / JOB_RESOURCE).read_text()
