"""The churn model's contract: what its prediction means and what it reads.

A model is its code, its settings and its inputs. Like Databricks Feature Engineering's
``log_model(..., training_set=...)``, which logs a model with the feature definitions it was
trained on, a churn model is logged with its contract, inside its run's
``churn_model_selection.json``:

- ``settings``: every setting classified ``contract`` (:func:`cltv.parameters.contract_settings`):
  the features and their definitions, the BTYD features offered, the label horizon
  (``holdout_days``), the threshold rule, the risk bands, the class weight, the time unit;
- ``inputs``: the columns the model reads, with their Spark types.

A challenger whose contract differs from the champion's is promoted as "settings changed"
(the user's decision, not a score's). Scoring and promotion hand a champion only tables built
the way it was trained: :func:`check_settings` before any Spark work, :func:`check_columns` on
the table itself.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame

from cltv.parameters import contract_settings
from cltv.promotion import setting_change


class ContractError(ValueError):
    """The tables of this run cannot feed the champion: it was trained on other inputs."""


def churn_contract(
    modeling: dict[str, Any], features: dict[str, Any], holdout_days: int, time_unit: str
) -> dict[str, Any]:
    """This run's contract settings of the churn model, ``{dotted name: value}``."""
    return contract_settings(
        {
            "churn_modeling": modeling,
            "features": features,
            "holdout_days": holdout_days,
            "time_unit": time_unit,
        }
    )


def model_contract(
    settings: dict[str, Any], model_input: DataFrame, columns: list[str]
) -> dict[str, Any]:
    """The contract logged with a model that reads ``columns`` of ``model_input``."""
    types = {field.name: field.dataType.simpleString() for field in model_input.schema.fields}
    return {"settings": settings, "inputs": {column: types[column] for column in columns}}


# the settings that decide how the tables handed to the model are built: a champion trained
# with others would read columns that mean something else, or that do not exist
_TABLE_SETTINGS = ("features.", "churn_modeling.features")
# and those that only matter when the champion reads the BTYD features (their horizon, unit)
_BTYD_TABLE_SETTINGS = ("churn_modeling.btyd_features", "holdout_days", "time_unit")


def _shapes_tables(name: str, uses_btyd: bool) -> bool:
    return name.startswith(_TABLE_SETTINGS) or (uses_btyd and name in _BTYD_TABLE_SETTINGS)


def _champion(selection: dict[str, Any]) -> str:
    return f"the churn champion (cltv_churn version {selection.get('version', '?')})"


def check_settings(selection: dict[str, Any], run_settings: dict[str, Any]) -> None:
    """Stop, in one line, when this run builds the champion's input tables with other
    settings than those it was trained with (``selection``: the champion's
    ``churn_model_selection.json``). A champion logged before contracts existed is let
    through: :func:`check_columns` still guards its columns."""
    contract = selection.get("contract")
    if contract is None:
        return
    trained = contract["settings"]
    uses_btyd = bool((selection.get("btyd_features") or {}).get("used"))
    differs = [
        name
        for name in sorted(set(trained) | set(run_settings))
        if _shapes_tables(name, uses_btyd) and trained.get(name) != run_settings.get(name)
    ]
    if not differs:
        return
    changes = "; ".join(
        setting_change(name, trained.get(name), run_settings.get(name)) for name in differs
    )
    restore = ", ".join(f"{name} to {_restorable(trained.get(name))}" for name in differs)
    raise ContractError(
        f"{_champion(selection)} was trained on other inputs (its settings → this run's): "
        f"{changes}. Run `kedro run` to train and promote a model on the new settings, or set "
        f"{restore} again in conf"
    )


def check_columns(selection: dict[str, Any], table: DataFrame) -> None:
    """Stop, in one line, when ``table`` lacks a column the champion reads or holds it with
    another type (the schema only: no Spark job)."""
    contract = selection.get("contract")
    if contract is not None:
        wanted = contract["inputs"]
    else:  # logged before contracts: its features, types unknown
        features = selection["features"]
        wanted = dict.fromkeys([*features["numeric"], *features["categorical"]])
    types = {field.name: field.dataType.simpleString() for field in table.schema.fields}
    missing = [column for column in wanted if column not in types]
    if missing:
        raise ContractError(
            f"{_champion(selection)} reads {', '.join(missing)}, which this run's tables do "
            "not have: run `kedro run` to train and promote a model on this run's features, "
            "or restore the feature settings it was trained with"
        )
    retyped = [
        f"{column} ({types[column]}, trained on {kind})"
        for column, kind in wanted.items()
        if kind is not None and types[column] != kind
    ]
    if retyped:
        raise ContractError(
            f"{_champion(selection)} was trained on other column types: {', '.join(retyped)}: "
            "run `kedro run` to train and promote a model on this run's tables"
        )


def _restorable(value: Any) -> str:
    text = str(value)
    if len(text) <= 60:
        return text
    return "its value in the champion's churn_model_selection.json (contract.settings)"
