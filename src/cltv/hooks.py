"""Project hooks."""

from __future__ import annotations

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl

from cltv.spark import get_or_create_spark_session


class SparkHooks:
    """Creates (or reuses) the one SparkSession of a Kedro session, from ``spark.yml``."""

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        get_or_create_spark_session(context.config_loader["spark"])
