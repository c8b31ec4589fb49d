"""``reporting``: the gold tables as the insights a marketing lead asks for, and a dashboard."""

from cltv.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
