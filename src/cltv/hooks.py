"""Project hooks."""

from __future__ import annotations

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from pyspark.sql import SparkSession

from cltv.spark import get_or_create_spark_session


class SparkHooks:
    """Creates (or reuses) the one SparkSession of a Kedro session, from ``spark.yml``."""

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        get_or_create_spark_session(context.config_loader["spark"])

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
