"""Nodes of ``scoring``: the champion churn model scores the current customers."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame

from cltv.datasets import ChampionModel
from cltv.pipelines.churn_modeling.nodes import score_customers

logger = logging.getLogger(__name__)


def champion_selection(champion: ChampionModel) -> dict[str, Any]:
    """How the champion was chosen (its training run's ``churn_model_selection.json``), and
    its version; loading it first makes a run without a champion stop before any work."""
    logger.info(
        "Scoring with churn model version %d (%s, threshold %.4f)",
        champion.version,
        champion.selection["selected"],
        champion.selection["threshold"]["value"],
    )
    return {**champion.selection, "version": champion.version}


def score_with_champion(
    champion: ChampionModel,
    current_features: DataFrame,
    btyd_scores_current: DataFrame,
    selection: dict[str, Any],
    risk_bands: list[dict[str, Any]],
    analysis_period: dict[str, Any],
) -> DataFrame:
    """``churn_predictions`` as training writes them, from the champion and its threshold."""
    return score_customers(
        champion.model,
        current_features,
        btyd_scores_current,
        selection,
        risk_bands,
        analysis_period,
    )
