"""Nodes of ``scoring``: what the champion churn model needs to score the current customers."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.ml import Transformer

from cltv.datasets import ChampionModel

logger = logging.getLogger(__name__)


def unpack_champion(champion: ChampionModel) -> tuple[Transformer, dict[str, Any]]:
    """The champion's model, and how it was chosen (its training run's
    ``churn_model_selection.json``) with its version: what ``score_customers`` takes. Loaded
    once, first, so a run without a champion stops before any work."""
    logger.info(
        "Scoring with churn model version %d (%s, threshold %.4f)",
        champion.version,
        champion.selection["selected"],
        champion.selection["threshold"]["value"],
    )
    return champion.model, {**champion.selection, "version": champion.version}
