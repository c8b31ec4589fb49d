"""Nodes of ``scoring``: what the champion churn model needs to score the current customers."""

from __future__ import annotations

import logging
from typing import Any

from cltv.datasets import ChampionModel
from cltv.pipelines.churn_modeling.nodes import model_flavor

logger = logging.getLogger(__name__)


def unpack_champion(champion: ChampionModel) -> tuple[Any, dict[str, Any]]:
    """The champion's model, and how it was chosen (its training run's
    ``churn_model_selection.json``) with its version: what ``score_customers`` takes. Loaded
    once, first, so a run without a champion stops before any work."""
    logger.info(
        "Scoring with churn model version %d (%s, a %s model, threshold %.4f)",
        champion.version,
        champion.selection["selected"],
        model_flavor(champion.model),
        champion.selection["threshold"]["value"],
    )
    return champion.model, {**champion.selection, "version": champion.version}
