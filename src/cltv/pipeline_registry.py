"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# run only when asked for by name
ON_DEMAND = ("ingest_increment", "scoring")


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline under ``cltv.pipelines``; ``__default__`` runs them all but
    ``ingest_increment``, which adds a batch to existing tables and recomputes the rest, and
    ``scoring``, which scores with the promoted models without training."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        pipeline for name, pipeline in pipelines.items() if name not in ON_DEMAND
    )
    return pipelines
