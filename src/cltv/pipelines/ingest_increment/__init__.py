"""``ingest_increment``: add a batch of later invoice lines to the tables, then recompute."""

from cltv.pipelines.ingest_increment.pipeline import create_pipeline

__all__ = ["create_pipeline"]
