"""``data_processing``: raw invoice lines to clean transactions, quarantine and RFM tables."""

from cltv.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
