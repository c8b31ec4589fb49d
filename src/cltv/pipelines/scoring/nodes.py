"""Nodes of ``scoring``: what the champion models need to score the current customers."""

from __future__ import annotations

import logging
from typing import Any

from cltv.datasets import ChampionModel
from cltv.models.value_model import CustomerValueModel
from cltv.pipelines.churn_modeling.contract import check_settings, churn_contract
from cltv.pipelines.churn_modeling.nodes import model_flavor

logger = logging.getLogger(__name__)


def unpack_champions(
    churn: ChampionModel,
    cltv: ChampionModel,
    modeling: dict[str, Any],
    features: dict[str, Any],
    holdout_days: int,
    time_unit: str,
) -> tuple[Any, dict[str, Any], CustomerValueModel, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Both champions from the registry, loaded once, first, so that a run without one stops
    before any work: the churn model and how it was chosen (its training run's
    ``churn_model_selection.json``, with its version); the CLV model and its fit (for the
    BG/NBD churn features); ``model_versions.json``: which versions score this run; and this
    run's churn contract settings (:func:`.contract.churn_contract`), which scoring reads.

    The CLV champion takes histories in the time unit it was fitted in: a run whose
    ``time_unit`` differs stops here, before any Spark work, rather than value customers
    whose weeks are read as days. Likewise the churn champion: a run that builds its input
    tables with other settings than it was trained with (:func:`.contract.check_settings`)
    stops here."""
    fitted_in = cltv.model.fit["time_unit"]
    if fitted_in != time_unit:
        raise ValueError(
            f"the CLV champion (cltv_value version {cltv.version}) was fitted with time_unit "
            f"{fitted_in}, but this run's time_unit is {time_unit}: score with "
            f"--params time_unit={fitted_in}, or train and promote a model in {time_unit} "
            f"first (kedro run --params time_unit={time_unit})"
        )
    run_contract = churn_contract(modeling, features, holdout_days, time_unit)
    if "contract" in churn.selection:  # else logged before contracts: its columns are checked
        check_settings({**churn.selection, "version": churn.version}, run_contract)
    logger.info(
        "Scoring with churn model version %d (%s, a %s model, threshold %.4f) and CLV model "
        "version %d (%s)",
        churn.version,
        churn.selection["selected"],
        model_flavor(churn.model),
        churn.selection["threshold"]["value"],
        cltv.version,
        cltv.model.purchase_model_name,
    )
    versions = {
        "produced_by": "scoring",
        "models": {
            name: {"version": champion.version, "alias": "champion", "holds_alias": True}
            for name, champion in (("cltv_churn", churn), ("cltv_value", cltv))
        },
    }
    return (
        churn.model,
        churn.selection,
        cltv.model,
        cltv.model.fit,
        versions,
        run_contract,
    )
