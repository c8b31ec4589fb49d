"""``cltv``: BG/NBD + Gamma-Gamma customer lifetime value, validated on a holdout."""

from cltv.pipelines.cltv.pipeline import create_pipeline

__all__ = ["create_pipeline"]
