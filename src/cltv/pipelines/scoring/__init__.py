"""``scoring``: value and score every customer with the promoted models, no training."""

from cltv.pipelines.scoring.pipeline import create_pipeline

__all__ = ["create_pipeline"]
