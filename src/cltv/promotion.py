"""Champion / challenger in the MLflow registry: one mechanism for both registered models.

A training run registers a new version of each model (the challenger). It takes the alias
(``champion``) when it beats the version holding it by ``min_gain`` on a metric both are scored
on with this run's data, or when no version holds the alias yet. Works with any MLflow registry
that has aliases: the local SQLite one, Unity Catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import mlflow

logger = logging.getLogger(__name__)


def _matches(registered: str, name: str) -> bool:
    # on Databricks the name is <catalog>.<schema>.<name>
    return registered == name or registered.endswith(f".{name}")


def registered_in_this_run(name: str) -> tuple[str, int]:
    """The full name and version of ``name`` that the active MLflow run registered."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("promotion needs the run's MLflow run (kedro-mlflow)")
    run_id = run.info.run_id
    versions = [
        version
        for version in mlflow.MlflowClient().search_model_versions(f"run_id='{run_id}'")
        if _matches(version.name, name)
    ]
    if not versions:
        raise RuntimeError(
            f"MLflow run {run_id} registered no version of {name}: set "
            "save_args.registered_model_name on its model's catalog entry"
        )
    latest = max(versions, key=lambda version: int(version.version))
    return latest.name, int(latest.version)


def version_with_alias(registered_model: str, alias: str) -> int | None:
    """The version of ``registered_model`` holding ``alias``; None when none does."""
    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(registered_model, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return int(found.version)


def load_champion(
    registered_model: str, alias: str, load: Callable[[str], Any]
) -> tuple[int, Any] | None:
    """The version holding ``alias`` and its model (``load(model_uri)``); None when no version
    holds it yet."""
    version = version_with_alias(registered_model, alias)
    if version is None:
        return None
    return version, load(f"models:/{registered_model}@{alias}")


def challenge(
    registered_model: str,
    version: int,
    promotion: dict[str, Any],
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
) -> dict[str, Any]:
    """The decision for ``version`` (``challenger``: its ``score`` and what else the report
    shows) against ``champion`` (its ``version`` and ``score``, or None when no version has
    the alias): ``promoted`` and the ``reason``, in the layout of ``model_promotion.json``.
    Nothing is changed in the registry until :func:`settle`."""
    alias, metric, min_gain = promotion["alias"], promotion["metric"], promotion["min_gain"]
    decision: dict[str, Any] = {
        "registered_model": registered_model,
        "alias": alias,
        "metric": metric,
        "min_gain": min_gain,
        "challenger": {"version": version, **challenger},
        "champion": champion,
    }
    if champion is None:
        return {**decision, "promoted": True, "reason": f"no model had the alias '{alias}' yet"}
    gain = challenger["score"] - champion["score"]
    promoted = gain >= min_gain
    reason = (
        f"{metric} {challenger['score']:.4f} vs the champion's {champion['score']:.4f} "
        f"(version {champion['version']}): a gain of {gain:+.4f}, "
        f"{'at least' if promoted else 'below'} the {min_gain} required"
    )
    return {**decision, "promoted": promoted, "reason": reason}


def settle(decision: dict[str, Any], label: str) -> dict[str, dict[str, float]]:
    """Move the alias when ``decision`` promotes; log it. Returns its scores as MLflow
    metrics (``challenger``, ``champion``, ``promoted``)."""
    name, version, alias = (
        decision["registered_model"],
        decision["challenger"]["version"],
        decision["alias"],
    )
    if decision["promoted"]:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))
    logger.info(
        "%s %s version %d %s '%s': %s",
        label,
        name,
        version,
        "takes" if decision["promoted"] else "does not take",
        alias,
        decision["reason"],
    )
    scores = {
        "challenger": decision["challenger"]["score"],
        "promoted": float(decision["promoted"]),
    }
    if decision["champion"]:
        scores["champion"] = decision["champion"]["score"]
    return scores


def produced_by(decision: dict[str, Any]) -> dict[str, Any]:
    """Which version wrote a training run's tables (its own, the challenger) and whether it
    holds the alias after the run: a ``model_versions.json`` entry."""
    return {
        "registered_model": decision["registered_model"],
        "version": decision["challenger"]["version"],
        "alias": decision["alias"],
        "holds_alias": decision["promoted"],
        "champion_version": (
            decision["challenger"]["version"]
            if decision["promoted"]
            else decision["champion"]["version"]
        ),
    }
