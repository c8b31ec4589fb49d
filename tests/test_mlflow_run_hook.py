"""cltv.hooks.MlflowRunHook: kedro-mlflow's hook logging the run's parameters once, in one
batch, and each metrics dataset in one call, with the same keys and values in the MLflow run as
kedro-mlflow's own hook and dataset (run against a real MLflow store here, side by side)."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from kedro_mlflow.framework.hooks import MlflowHook
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from cltv import settings
from cltv.hooks import MetricsInOneCallDataset, MlflowRunHook

from .conftest import PROJECT_ROOT

PARAMETERS = {
    "churn": {"class_weight": "none", "candidates": {"gbt": {"max_depth": 3}}},
    "input_path": "data/01_raw/lines.csv",
    "note": "x" * (MAX_PARAM_VAL_LENGTH + 5),  # longer than MLflow keeps: truncated
}


def _first(churn, class_weight, table):
    return table


def _second(input_path, note, table):
    return table


def _third(parameters, table):
    return table


@pytest.fixture
def pipeline() -> Pipeline:
    # "params:churn.class_weight" is also inside "params:churn": logged once all the same
    return Pipeline(
        [
            node(_first, ["params:churn", "params:churn.class_weight", "lines"], "a", name="first"),
            node(_second, ["params:input_path", "params:note", "a"], "b", name="second"),
            node(_third, ["parameters", "b"], "c", name="third"),
        ]
    )


@pytest.fixture
def catalog() -> DataCatalog:
    datasets = {
        "parameters": MemoryDataset(PARAMETERS),
        "params:churn": MemoryDataset(PARAMETERS["churn"]),
        "params:churn.class_weight": MemoryDataset("none"),
        "params:input_path": MemoryDataset(PARAMETERS["input_path"]),
        "params:note": MemoryDataset(PARAMETERS["note"]),
        "lines": MemoryDataset([1, 2]),
    }
    return DataCatalog(datasets=datasets)


def _configured(hook: MlflowHook) -> MlflowHook:
    # what kedro-mlflow's hook reads from conf/base/mlflow.yml
    hook.mlflow_config = KedroMlflowConfig.model_validate({"tracking": {"run": {"nested": False}}})
    hook.flatten, hook.recursive, hook.sep = True, True, "."
    hook.long_params_strategy = "truncate"
    return hook


def _node_inputs(pipeline_node, catalog: DataCatalog) -> dict:
    # the tables between the nodes are never run here: kedro-mlflow reads only the parameters
    return {name: catalog.load(name) for name in pipeline_node.inputs if name in catalog}


def _calls_to_log_param(monkeypatch) -> list[str]:
    calls, log_param = [], mlflow.log_param

    def counted(key, value, *args, **kwargs):
        calls.append(key)
        return log_param(key, value, *args, **kwargs)

    monkeypatch.setattr(mlflow, "log_param", counted)
    return calls


def test_parameters_are_logged_once_as_the_run_starts_with_kedro_mlflows_keys_and_values(
    registry, pipeline, catalog, monkeypatch
):
    mlflow.set_experiment("hooks")
    with mlflow.start_run() as run:  # kedro-mlflow's way: before each node, its parameters
        per_node = _configured(MlflowHook())
        for pipeline_node in pipeline.nodes:
            per_node.before_node_run(
                pipeline_node, catalog, _node_inputs(pipeline_node, catalog), False
            )
    expected = registry.get_run(run.info.run_id).data.params

    calls = _calls_to_log_param(monkeypatch)
    with mlflow.start_run() as run:
        once = _configured(MlflowRunHook())
        once.run_id = run.info.run_id
        once._log_parameters(pipeline, catalog)
        logged_before_any_node = registry.get_run(run.info.run_id).data.params
        for pipeline_node in pipeline.nodes:
            once.before_node_run(
                pipeline_node, catalog, _node_inputs(pipeline_node, catalog), False
            )

    assert logged_before_any_node == expected
    assert expected["churn.candidates.gbt.max_depth"] == "3"
    assert expected["parameters.churn.class_weight"] == "none"
    assert expected["note"] == "x" * MAX_PARAM_VAL_LENGTH
    # one call per parameter no longer: only a value too long goes on its own (truncated)
    assert sorted(calls) == ["note", "parameters.note"]
    assert registry.get_run(run.info.run_id).data.params == expected


def test_metrics_are_logged_in_one_call_with_the_same_keys_values_and_steps(registry, monkeypatch):
    metrics = {
        "auc": {"value": 0.75, "step": 0},
        "loss": [{"value": 0.5, "step": 1}, {"value": 0.25, "step": 2}],
    }
    mlflow.set_experiment("hooks")
    logged = []
    for dataset_class in (MlflowMetricsHistoryDataset, MetricsInOneCallDataset):
        with mlflow.start_run() as run:
            dataset_class(prefix="churn_metrics").save(metrics)
        history = registry.get_metric_history(run.info.run_id, "churn_metrics.loss")
        logged.append(
            (
                registry.get_run(run.info.run_id).data.metrics,
                [(m.step, m.value) for m in history],
            )
        )

    calls, log_metric = [], mlflow.MlflowClient.log_metric
    monkeypatch.setattr(
        mlflow.MlflowClient, "log_metric", lambda *a, **k: calls.append(a) or log_metric(*a, **k)
    )
    with mlflow.start_run():
        MetricsInOneCallDataset(prefix="churn_metrics").save(metrics)

    assert logged[1] == logged[0]
    assert logged[0] == (
        {"churn_metrics.auc": 0.75, "churn_metrics.loss": 0.25},
        [(1, 0.5), (2, 0.25)],
    )
    assert calls == []


def test_the_project_registers_the_hook_in_place_of_kedro_mlflows():
    assert any(isinstance(hook, MlflowRunHook) for hook in settings.HOOKS)
    assert "kedro_mlflow" in settings.DISABLE_HOOKS_FOR_PLUGINS


def test_the_catalogs_metrics_datasets_keep_their_prefix_and_save_in_one_call(caplog):
    catalog = DataCatalog(
        datasets={
            "quarantine_mlflow_metrics": MlflowMetricsHistoryDataset(prefix="quarantine"),
            "unnamed_metrics": MlflowMetricsHistoryDataset(),
            "lines": MemoryDataset([1, 2]),
        }
    )
    MlflowRunHook().after_catalog_created(catalog, {}, {}, {}, "", {})
    named, unnamed = catalog["quarantine_mlflow_metrics"], catalog["unnamed_metrics"]
    assert (type(named), named._prefix) == (MetricsInOneCallDataset, "quarantine")
    # kedro-mlflow names a dataset's metrics after the dataset when the catalog does not
    assert (type(unnamed), unnamed._prefix) == (MetricsInOneCallDataset, "unnamed_metrics")
    assert type(catalog["lines"]) is MemoryDataset
    assert "Replacing dataset 'quarantine_mlflow_metrics'" not in caplog.text


def test_the_local_mlflow_setup_installs_no_import_hooks(tmp_path):
    """kedro-mlflow's set-up with the project's local configuration leaves MLflow's import
    hooks out of the import system. They take one lock on every import in any thread, and
    ``mlflow.autolog(disable=True)`` holds it while importing: with the run's Spark session
    starting in a background thread (importing pyspark's modules), a run deadlocked at
    start-up. Databricks' configuration still disables autologging there."""
    script = f"""
import sys
from types import SimpleNamespace
from kedro.config import OmegaConfigLoader
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from cltv import settings
for env in ("local", "databricks"):
    loader = OmegaConfigLoader(r"{PROJECT_ROOT / "conf"}",
        **{{**settings.CONFIG_LOADER_ARGS, "default_run_env": env}})
    config = KedroMlflowConfig.model_validate(dict(loader["mlflow"]))
    if env == "local":
        config.server.mlflow_tracking_uri = r"sqlite:///{tmp_path / "mlflow.db"}"
        config.setup(SimpleNamespace(project_path=r"{tmp_path}", config_loader=loader,
            _get_config_credentials=dict))
        print("hooks", any(type(f).__name__ == "ImportHookFinder" for f in sys.meta_path))
    else:
        print("databricks", config.tracking.disable_tracking.disable_autologging)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stdout.splitlines() if line.startswith(("hooks", "databricks"))]
    assert said == ["hooks False", "databricks True"]
