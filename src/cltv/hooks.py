"""Project hooks."""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol, DatasetError
from kedro.pipeline import Node, Pipeline
from kedro_mlflow.framework.hooks import MlflowHook
from kedro_mlflow.framework.hooks.utils import _flatten_dict
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.tracking.fluent import get_active_model_id
from mlflow.tracking.metric_value_conversion_utils import convert_metric_value_to_float_if_possible
from mlflow.utils.time import get_current_time_millis
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from pyspark import SparkContext
from pyspark.sql import SparkSession

from cltv.parameters import validate_parameters
from cltv.spark import is_spark_connect, spark_session, start_spark_session
from cltv.warm_start import start_mlflow_store

logger = logging.getLogger(__name__)
# how a node's failure is marked on its exception (read back by ``kedro run``, cltv.cli)
NODE_NOTE = "in node "


class ParameterCheckHook:
    """Stops a run with bad parameters before a Spark session or MLflow run is started."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: KedroContext) -> None:
        # the config loader's parameters, --params merged in: ``context.params`` would be the
        # same here (no node declares typed parameters) but imports every pipeline's nodes
        # first to look for them, ~2 s that would delay the Spark session's start
        validate_parameters(context.config_loader["parameters"])


class SparkHooks:
    """Creates (or reuses) the one SparkSession of a Kedro session, from ``spark.yml``.

    A local session starts in the background as soon as the context exists (after the
    parameter check and before kedro-mlflow's set-up: see the order of ``HOOKS``), and the run
    waits for it just before its first node.
    """

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: KedroContext) -> None:
        start_spark_session(context.config_loader["spark"])

    @hook_impl
    def before_pipeline_run(self) -> None:
        spark_session()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._release_cache()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release_cache()

    @staticmethod
    def _release_cache() -> None:
        # persisted inputs of this run must not answer for a changed file in the next run of
        # the same session (notebooks, tests)
        spark = SparkSession.getActiveSession()
        if spark is not None:
            spark.catalog.clearCache()


class MlflowStoreHook:
    """Points MLflow at ``<project>/mlflow.db`` wherever Kedro is started from.

    kedro-mlflow makes relative *file* paths absolute against the project, but not a relative
    ``sqlite:///`` URI, which would land in the current folder — a notebook's folder, say.
    When ``mlflow.yml`` leaves ``server.mlflow_tracking_uri`` null, kedro-mlflow reads
    ``MLFLOW_TRACKING_URI``; this hook (running before kedro-mlflow's) sets it to the
    project's database. To use another store, set the URI in ``mlflow.yml`` (e.g. in
    ``conf/local``); an environment variable alone is not enough, because MLflow itself
    rewrites it whenever any code calls ``mlflow.set_tracking_uri``.
    """

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: KedroContext) -> None:
        server = context.config_loader["mlflow"].get("server", {})
        if server.get("mlflow_tracking_uri") is None:
            database = Path(context.project_path).resolve() / "mlflow.db"
            # a new store starts migrated, from the copy made at install (cltv.warm_start)
            start_mlflow_store(database)
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{database}"


class MlflowRunHook(MlflowHook):
    """kedro-mlflow's hook (registered in its place: see ``settings.py``), writing to MLflow in
    one call where kedro-mlflow writes one value per call, each a commit of the SQLite store.

    - The parameters of every node of the run are logged once, in one batch, as the run
      starts; kedro-mlflow logs each node's flattened ``params:`` inputs again before the node,
      one ``log_param`` each (~230 calls on the default pipeline). The run holds the same keys
      and values; a value too long for MLflow follows ``long_params_strategy`` as before.
    - Each metrics dataset logs its metrics in one ``log_batch``, not one ``log_metric`` each.
    """

    @hook_impl
    def after_catalog_created(  # Kedro's hook passes all of these, by name
        self,
        catalog: CatalogProtocol,
        conf_catalog: dict[str, Any],
        conf_creds: dict[str, Any],
        parameters: dict[str, Any],
        save_version: str,
        load_versions: dict[str, str],
    ) -> None:
        # kedro-mlflow rebuilds each metrics dataset with its name as the metrics' prefix
        super().after_catalog_created(
            catalog, conf_catalog, conf_creds, parameters, save_version, load_versions
        )
        for _, dataset in catalog.items():
            if type(dataset) is MlflowMetricsHistoryDataset:
                # the same dataset (prefix, run, metadata), saving in one call; replacing it in
                # the catalog would log "Replacing dataset" for each
                dataset.__class__ = MetricsInOneCallDataset

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        super().before_pipeline_run(run_params, pipeline, catalog)
        if self._is_mlflow_enabled:
            self._log_parameters(pipeline, catalog)

    @hook_impl
    def before_node_run(
        self, node: Node, catalog: CatalogProtocol, inputs: dict[str, Any], is_async: bool
    ) -> None:
        # still re-opens the run for the node's thread; no inputs: no parameters logged again
        super().before_node_run(node, catalog, {}, is_async)

    def _log_parameters(self, pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        parameters = run_parameters(pipeline, catalog)
        if self.flatten:
            parameters = _flatten_dict(d=parameters, recursive=self.recursive, sep=self.sep)
        batch = {}
        for raw_name, value in parameters.items():
            name = self.sanitize_param_name(raw_name)
            if len(str(value)) <= MAX_PARAM_VAL_LENGTH:
                batch[name] = value
            else:
                self._log_param(name, value)  # fails, tags or truncates, as configured
        mlflow.log_params(batch, run_id=self.run_id)


def run_parameters(pipeline: Pipeline, catalog: CatalogProtocol) -> dict[str, Any]:
    """The parameters the nodes of ``pipeline`` take, by the names kedro-mlflow logs them under:
    ``params:a.b`` as ``a.b``, the whole ``parameters`` as ``parameters``."""
    names = {
        name
        for node in pipeline.nodes
        for name in node.inputs
        if name.startswith("params:") or name == "parameters"
    }
    # the datasets' own load: catalog.load would log a "Loading data from" line for each
    return {name.removeprefix("params:"): catalog.get(name).load() for name in sorted(names)}


class MetricsInOneCallDataset(MlflowMetricsHistoryDataset):
    """kedro-mlflow's metrics dataset, logging all its metrics in one ``log_batch`` (no state
    of its own: :class:`MlflowRunHook` turns the catalog's metrics datasets into it)."""

    def _save(self, data: dict[str, Any]) -> None:
        try:
            run_id = self.run_id
        except DatasetError:  # no run to log to: kedro-mlflow's save starts one
            super()._save(data)
            return
        if not self._logging_activated:
            return
        timestamp, model_id = get_current_time_millis(), get_active_model_id()
        metrics = [
            Metric(
                key,
                convert_metric_value_to_float_if_possible(value),
                timestamp,
                step or 0,
                model_id=model_id,
            )
            for name, item in data.items()
            for key, value, step in self._build_args_list_from_metric_item(name, item)
        ]
        MlflowClient().log_batch(run_id, metrics=metrics)


class CltvFitTagHook:
    """Tags the MLflow run with what a CLV fit says in words: ``cltv.purchase_model`` (the model
    that values customers) and, when a fit's optimum is on a boundary (e.g. no dropout is
    detectable), ``<fit>.<model>.boundary`` = ``a → 0``, so runs valued with a limiting model
    can be found with ``mlflow.search_runs``."""

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        if mlflow.active_run() is None:
            return
        for name, output in outputs.items():
            if not isinstance(output, dict):
                continue
            if isinstance(output.get("purchase_model"), str):
                mlflow.set_tag("cltv.purchase_model", output["purchase_model"])
            for model, fit in output.items():
                boundary = fit.get("boundary") if isinstance(fit, dict) else None
                if boundary:
                    mlflow.set_tag(f"{name}.{model}.boundary", ", ".join(boundary))


class NodeTimingHook:
    """Says how long each node took, in a line of its own once its last output is saved, so a
    slow step stands out in a terminal, a log file and CI alike; at ``DEBUG`` also how many
    Spark jobs it ran.

    The time runs from loading the first input to saving the last output: Spark nodes return
    plans, and their work happens when Kedro saves what they return. The jobs are counted by
    putting the node's loads, run and saves in a Spark job group named after the node (a
    classic session only: Spark Connect has no status tracker to ask).
    """

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._unsaved: dict[str, set[str]] = {}
        # the Spark job group of each running node: unique per run of it, since the status
        # tracker keeps a group's jobs for the context's life (a notebook reruns nodes)
        self._job_groups: dict[str, str] = {}

    @hook_impl
    def before_dataset_loaded(self, node: Node) -> None:
        self._start(node)

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        self._start(node)

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        self._unsaved[node.name] = set(outputs)
        self._finish_when_saved(node)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Node) -> None:
        self._unsaved.get(node.name, set()).discard(dataset_name)
        self._finish_when_saved(node)

    def _start(self, node: Node) -> None:
        if node.name not in self._started:
            self._started[node.name] = time.perf_counter()
            self._job_groups[node.name] = f"{node.name} {uuid.uuid4().hex[:12]}"
            _set_job_group(self._job_groups[node.name], node.name)

    def _finish_when_saved(self, node: Node) -> None:
        if self._unsaved.get(node.name):
            return
        self._unsaved.pop(node.name, None)
        started = self._started.pop(node.name, None)
        if started is not None:
            took = time.perf_counter() - started
            logger.info("Node %s took %.1f s", node.name, took)
            jobs = _finish_job_group(self._job_groups.pop(node.name, None))
            if jobs is not None:
                logger.debug("Node %s took %.1f s and ran %d Spark jobs", node.name, took, jobs)

    @hook_impl
    def on_node_error(self, error: Exception, node: Node) -> None:
        self._started.pop(node.name, None)
        self._unsaved.pop(node.name, None)
        _finish_job_group(self._job_groups.pop(node.name, None))
        # `kedro run` names the node in its one-line failure summary (cltv.cli); a traceback
        # shows the note too
        error.add_note(f"{NODE_NOTE}{node.name}")


def _classic_context() -> SparkContext | None:
    spark = SparkSession.getActiveSession()
    if spark is None or is_spark_connect(spark):
        return None
    return spark.sparkContext


def _set_job_group(group: str, node_name: str) -> None:
    if (context := _classic_context()) is not None:
        context.setJobGroup(group, f"node {node_name}")


def _finish_job_group(group: str | None) -> int | None:
    """How many Spark jobs ran in the node's job group, which ends here."""
    if group is None or (context := _classic_context()) is None:
        return None
    jobs = len(context.statusTracker().getJobIdsForGroup(group))
    context.setLocalProperty("spark.jobGroup.id", None)
    context.setLocalProperty("spark.job.description", None)
    return jobs
