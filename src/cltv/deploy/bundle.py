"""The Databricks job of this project, generated from the Kedro pipeline registry.

One task per pipeline, each a ``python_wheel_task`` that runs the ``cltv`` wheel's entry
point (``cltv-churn`` = ``kedro run``) with ``--pipelines <name>``. A task depends on the
pipelines whose outputs it reads, so the job follows the Kedro DAG; what crosses from one task
to another must be persisted by the environment's catalog (a memory dataset would be lost
between tasks), which ``cross_task_datasets`` checks.

The same function describes the job for the Asset Bundle (``resources/cltv_churn.job.yml``,
with ``${var.…}`` references that the bundle resolves per target) and for the SDK deploy
(``cltv.deploy.workspace``, with concrete paths), so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from kedro.pipeline import Pipeline

PACKAGE_NAME = "cltv"
ENTRY_POINT = "cltv-churn"  # [project.scripts] in pyproject.toml
JOB_KEY = "cltv_churn"
COMPUTE_KEY = "cltv"
COMPUTE_KINDS = ("cluster", "serverless")
# run-time parameters the databricks environment's catalog reads (conf/databricks/)
RUNTIME_PARAMS = ("catalog", "schema", "volume")


def pipeline_dependencies(pipelines: Mapping[str, Pipeline]) -> dict[str, list[str]]:
    """For each pipeline, the pipelines whose outputs it reads, without implied edges.

    ``reporting`` reads ``data_processing`` outputs too, but it already waits for
    ``churn_modeling``, which waits for ``data_processing``: that edge is dropped, as a
    Databricks job graph would draw it.
    """
    outputs = {name: pipeline.all_outputs() for name, pipeline in pipelines.items()}
    direct = {
        name: {other for other in pipelines if other != name and pipeline.inputs() & outputs[other]}
        for name, pipeline in pipelines.items()
    }
    upstream = {name: _ancestors(name, direct) for name in pipelines}
    return {
        name: sorted(
            dep for dep in deps if not any(dep in upstream[other] for other in deps - {dep})
        )
        for name, deps in direct.items()
    }


def _ancestors(name: str, direct: Mapping[str, set[str]], seen: tuple[str, ...] = ()) -> set:
    if name in seen:
        cycle = " -> ".join((*seen[seen.index(name) :], name))
        raise ValueError(f"pipelines depend on each other in a cycle: {cycle}")
    found: set[str] = set()
    for dep in direct[name]:
        found |= {dep} | _ancestors(dep, direct, (*seen, name))
    return found


def cross_task_datasets(pipelines: Mapping[str, Pipeline]) -> dict[str, str]:
    """Datasets one task writes and another reads: ``{dataset: producing pipeline}``."""
    produced = {
        dataset: name for name, pipeline in pipelines.items() for dataset in pipeline.all_outputs()
    }
    return {
        dataset: produced[dataset]
        for name, pipeline in pipelines.items()
        for dataset in pipeline.inputs()
        if dataset in produced and produced[dataset] != name
    }


@dataclass(frozen=True)
class JobSpec:
    """What varies between the bundle's job and a deploy through the SDK."""

    wheel: str  # path or glob of the wheel: "../dist/*.whl" in a bundle resource
    conf_source: str  # where the task finds conf/ (a folder or the conf-cltv.tar.gz archive)
    runtime_params: Mapping[str, str]  # --params for every task, e.g. catalog=${var.catalog}
    compute: str = "cluster"
    env: str = "databricks"
    cluster: Mapping[str, Any] = field(default_factory=dict)  # new_cluster of the job cluster
    name: str = "cltv-churn"
    # a Quartz cron expression (UTC): the job's schedule, created paused; None: no schedule
    schedule: str | None = None


def job_settings(pipelines: Mapping[str, Pipeline], spec: JobSpec) -> dict[str, Any]:
    """The job in the Jobs API 2.2 / bundle form: one wheel task per pipeline, in DAG order."""
    if spec.compute not in COMPUTE_KINDS:
        raise ValueError(f"compute must be one of {COMPUTE_KINDS}, not {spec.compute!r}")
    dependencies = pipeline_dependencies(pipelines)
    params = ",".join(f"{key}={value}" for key, value in spec.runtime_params.items())
    tasks = []
    for name in _topological_order(dependencies):
        task: dict[str, Any] = {"task_key": name}
        if dependencies[name]:
            task["depends_on"] = [{"task_key": dep} for dep in dependencies[name]]
        parameters = ["--env", spec.env, "--pipelines", name, "--conf-source", spec.conf_source]
        if params:
            parameters += ["--params", params]
        task["python_wheel_task"] = {
            "package_name": PACKAGE_NAME,
            "entry_point": ENTRY_POINT,
            "parameters": parameters,
        }
        if spec.compute == "cluster":
            task["job_cluster_key"] = COMPUTE_KEY
            task["libraries"] = [{"whl": spec.wheel}]
        else:
            task["environment_key"] = COMPUTE_KEY
        tasks.append(task)
    job: dict[str, Any] = {"name": spec.name, "max_concurrent_runs": 1, "tasks": tasks}
    if spec.schedule:
        # present but paused: a deploy never starts runs on its own; unpause in the UI or
        # with `databricks jobs update` once the first runs look right
        job["schedule"] = {
            "quartz_cron_expression": spec.schedule,
            "timezone_id": "UTC",
            "pause_status": "PAUSED",
        }
    if spec.compute == "cluster":
        job["job_clusters"] = [{"job_cluster_key": COMPUTE_KEY, "new_cluster": dict(spec.cluster)}]
    else:
        # serverless: the wheel is a dependency of the task environment
        job["environments"] = [
            {"environment_key": COMPUTE_KEY, "spec": {"client": "2", "dependencies": [spec.wheel]}}
        ]
    return job


def _topological_order(dependencies: Mapping[str, list[str]]) -> list[str]:
    """Pipelines upstream first; ties in name order, so the output is stable."""
    order: list[str] = []
    remaining = dict(dependencies)
    while remaining:
        ready = sorted(n for n, deps in remaining.items() if set(deps) <= set(order))
        if not ready:
            raise ValueError(f"pipelines depend on each other in a cycle: {sorted(remaining)}")
        order += ready
        for name in ready:
            del remaining[name]
    return order


# ---------------------------------------------------------------- the bundle's resource file
BUNDLE_PIPELINES = ("data_processing", "churn_modeling", "cltv", "reporting")
# the second job: scoring with the promoted models, more often than training
SCORING_PIPELINE = "scoring"
SCORING_JOB_KEY = f"{JOB_KEY}_scoring"
JOB_RESOURCE = Path("resources") / "cltv_churn.job.yml"
SERVING_RESOURCE = Path("resources") / "cltv_churn.serving.yml"
# the schema and volume as the bundle created them (development mode prefixes their names)
BUNDLE_RUNTIME_PARAMS = {
    "catalog": "${var.catalog}",
    "schema": "${resources.schemas.cltv_churn.name}",
    "volume": "${resources.volumes.cltv.name}",
}
_HEADER = """\
# Generated by `kedro cltv bundle` from the Kedro pipeline registry
# (src/cltv/deploy/bundle.py): do not edit; regenerate and commit. A test checks it is current.
# Training: one python_wheel_task per pipeline, `depends_on` following the Kedro DAG. Scoring:
# one task, `--pipelines scoring` (both champions from the registry, no training).
# Both have a schedule (conf/databricks/globals.yml `databricks.schedules`), created paused.
"""


@dataclass(frozen=True)
class Environment:
    """What the job is built from: the registry's pipelines and a Kedro environment's conf."""

    pipelines: dict[str, Pipeline]
    catalog: dict[str, Any]
    spark_conf: dict[str, Any]  # the environment's own spark.yml: the job cluster's settings
    compute: str  # `databricks.compute` in its globals.yml: cluster or serverless
    schedules: dict[str, str]  # `databricks.schedules`: training / scoring, Quartz cron (UTC)
    scoring: Pipeline
    serving: dict[str, Any] = field(default_factory=dict)  # `databricks.serving`
    model_names: dict[str, str] = field(default_factory=dict)  # registered models' names


def load_environment(project_path: Path, env: str) -> Environment:
    """The pipelines and conf of ``env``, refusing a catalog that would lose what crosses from
    one task to the next (``check_cross_task_datasets``)."""
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import pipelines, settings
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project_path)
    loader = OmegaConfigLoader(
        str(project_path / settings.CONF_SOURCE),
        env=env,
        **settings.CONFIG_LOADER_ARGS,
    )
    registry = {name: pipelines[name] for name in BUNDLE_PIPELINES}
    catalog = loader["catalog"]
    check_cross_task_datasets(registry, catalog)
    spark_file = project_path / settings.CONF_SOURCE / env / "spark.yml"
    return Environment(
        pipelines=registry,
        catalog=catalog,
        spark_conf=yaml.safe_load(spark_file.read_text()) if spark_file.exists() else {},
        compute=loader["globals"].get("databricks", {}).get("compute", "cluster"),
        schedules=dict(loader["globals"].get("databricks", {}).get("schedules", {})),
        scoring=pipelines[SCORING_PIPELINE],
        serving=dict(loader["globals"].get("databricks", {}).get("serving") or {}),
        model_names={
            "cltv_value": loader["globals"]["cltv_model_name"],
            "cltv_churn": loader["globals"]["churn_model_name"],
        },
    )


def job_cluster(
    spark_version: Any, node_type_id: Any, num_workers: Any, spark_conf: Mapping[str, Any]
) -> dict[str, Any]:
    """The job cluster's ``new_cluster``, with the Spark settings of conf/databricks/spark.yml."""
    return {
        "spark_version": spark_version,
        "node_type_id": node_type_id,
        "num_workers": num_workers,
        "data_security_mode": "SINGLE_USER",  # Unity Catalog access from a job cluster
        # Spark reads "true"/"false"; YAML booleans would print as "True"/"False"
        "spark_conf": {
            key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in spark_conf.items()
        },
    }


def check_cross_task_datasets(pipelines: Mapping[str, Pipeline], catalog: Mapping) -> None:
    """Raise when a dataset passed between tasks would not outlive its task in ``catalog``."""
    lost = sorted(
        f"{dataset} (written by {producer})"
        for dataset, producer in cross_task_datasets(pipelines).items()
        if catalog.get(dataset, {}).get("type", "MemoryDataset").endswith("MemoryDataset")
    )
    if lost:
        raise ValueError(
            "these datasets cross from one job task to another but are kept in memory only; "
            f"give them a persistent catalog entry: {', '.join(lost)}"
        )


def bundle_job_resource(project_path: Path, compute: str | None = None) -> str:
    """The text of ``resources/cltv_churn.job.yml`` for the databricks environment.

    ``compute`` (``cluster`` or ``serverless``) defaults to ``databricks.compute`` in
    ``conf/databricks/globals.yml``, so the committed file and its check agree.
    """
    environment = load_environment(project_path, "databricks")
    spec = JobSpec(
        wheel="../dist/*.whl",  # relative to this resource file; built by the bundle artifact
        conf_source="${workspace.file_path}/conf",  # conf/ is synced with the bundle
        runtime_params=BUNDLE_RUNTIME_PARAMS,
        compute=compute or environment.compute,
        # the bundle resolves these per target (databricks.yml `variables`)
        cluster=job_cluster(
            "${var.spark_version}",
            "${var.node_type_id}",
            "${var.num_workers}",
            environment.spark_conf,
        ),
        name="cltv-churn [${bundle.target}]",
    )
    training = job_settings(
        environment.pipelines, replace(spec, schedule=environment.schedules.get("training"))
    )
    if environment.serving.get("enabled", False):
        training["tasks"].append(follow_champions_task(environment, training["tasks"]))
    scoring = job_settings(
        {SCORING_PIPELINE: environment.scoring},
        replace(
            spec,
            name="cltv-churn scoring [${bundle.target}]",
            schedule=environment.schedules.get("scoring"),
        ),
    )
    # a copy: shared objects would be written as YAML anchors and aliases
    resource = {"resources": {"jobs": {JOB_KEY: training, SCORING_JOB_KEY: deepcopy(scoring)}}}
    return _HEADER + yaml.safe_dump(resource, sort_keys=False, width=100)


FOLLOW_CHAMPIONS_TASK = "follow_champions"
FOLLOW_CHAMPIONS_ENTRY_POINT = "cltv-follow-champions"  # [project.scripts], cltv.deploy.serving

_SERVING_HEADER = """\
# Generated by `kedro cltv bundle` because `databricks.serving.enabled` is true in
# conf/databricks/globals.yml (src/cltv/deploy/bundle.py): do not edit; regenerate and commit.
# One Model Serving endpoint per registered model. An endpoint serves a version, not an alias:
# the training job's last task (follow_champions, cltv.deploy.serving) points each endpoint at
# its champion after every run. The first deploy creates them at the versions given, which
# have no default (a bundle never silently serves version 1), e.g.
#   databricks bundle deploy -t prod --var cltv_value_version=3 --var cltv_churn_version=5
# (`databricks model-versions get-by-alias <catalog>.<schema>.cltv_value champion`).
"""


def _endpoint_name(key: str) -> str:
    return f"{key.replace('_', '-')}-${{bundle.target}}"


def _registered_name(registered: str) -> str:
    return f"{BUNDLE_RUNTIME_PARAMS['catalog']}.{BUNDLE_RUNTIME_PARAMS['schema']}.{registered}"


def follow_champions_task(environment: Environment, tasks: list[dict]) -> dict[str, Any]:
    """The training job's last task: every serving endpoint follows its champion
    (:mod:`cltv.deploy.serving`), once every pipeline task has run."""
    parameters = []
    for key, registered in environment.model_names.items():
        parameters += ["--served", _endpoint_name(key), key, _registered_name(registered)]
    parameters += ["--workload-size", environment.serving.get("workload_size", "Small")]
    upstream = {dep["task_key"] for task in tasks for dep in task.get("depends_on", [])}
    task = {key: value for key, value in tasks[0].items() if key not in ("task_key", "depends_on")}
    return {
        "task_key": FOLLOW_CHAMPIONS_TASK,
        "depends_on": [{"task_key": t["task_key"]} for t in tasks if t["task_key"] not in upstream],
        **task,
        "python_wheel_task": {
            "package_name": PACKAGE_NAME,
            "entry_point": FOLLOW_CHAMPIONS_ENTRY_POINT,
            "parameters": parameters,
        },
    }


def serving_endpoints(environment: Environment) -> dict[str, Any]:
    """``model_serving_endpoints`` for both registered models, at the versions the bundle
    variables ``<model>_version`` name, scaling to zero when idle."""
    workload_size = environment.serving.get("workload_size", "Small")
    endpoints = {}
    for key, registered in environment.model_names.items():
        endpoints[key] = {
            "name": _endpoint_name(key),
            "config": {
                "served_entities": [
                    {
                        "name": key,
                        "entity_name": _registered_name(registered),
                        "entity_version": f"${{var.{key}_version}}",
                        "workload_size": workload_size,
                        "scale_to_zero_enabled": True,
                    }
                ]
            },
        }
    return endpoints


def bundle_serving_resource(project_path: Path, enabled: bool | None = None) -> str | None:
    """The text of ``resources/cltv_churn.serving.yml``; None when serving is off
    (``databricks.serving.enabled``, or ``enabled`` if given)."""
    environment = load_environment(project_path, "databricks")
    if not (environment.serving.get("enabled", False) if enabled is None else enabled):
        return None
    resource = {
        # declared here, without a default: required only when the endpoints exist
        "variables": {
            f"{key}_version": {
                "description": f"version of {registered} its endpoint is created with: its "
                f"champion's (databricks model-versions get-by-alias "
                f"<catalog>.<schema>.{registered} champion); the training job's "
                f"{FOLLOW_CHAMPIONS_TASK} task keeps it on the champion afterwards"
            }
            for key, registered in environment.model_names.items()
        },
        "resources": {"model_serving_endpoints": serving_endpoints(environment)},
    }
    return _SERVING_HEADER + yaml.safe_dump(resource, sort_keys=False, width=100)


def write_bundle_resources(project_path: Path, check: bool = False) -> list[Path]:
    """Write (or, with ``check``, only compare) the generated bundle files; return the stale.
    The serving file is removed when serving is off."""
    stale = []
    for relative, text in (
        (JOB_RESOURCE, bundle_job_resource(project_path)),
        (SERVING_RESOURCE, bundle_serving_resource(project_path)),
    ):
        target = project_path / relative
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        stale.append(relative)
        if check:
            continue
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return stale
