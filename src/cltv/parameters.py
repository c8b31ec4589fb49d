"""Checks of the run's parameters, made when the Kedro context is created: before any Spark work.

Each problem is reported as ``parameter <name>: <what is wrong>``, all of them in one error,
so a user fixes ``--params`` or the YAML once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from cltv.pipelines.data_processing.nodes import (
    DAYS_PER_UNIT,
    RETURN_MODES,
    column_mapping_problem,
    non_product_codes_problem,
)

# The vocabulary of the parameters is kept here, and the pipelines import it, so the check
# runs without importing the models (scipy, MLflow's model flavors) before Spark starts.
# the purchase models (cltv.models.value_model.PURCHASE_MODELS holds their classes)
PURCHASE_MODELS = ("bgnbd", "mbgnbd", "pnbd")
# rules of cltv.model_selection besides naming a candidate: the lowest holdout error of counts
SELECTION_RULES = {"lowest_mae": "mae", "lowest_rmse": "rmse"}
# cltv.promotion.metric: "holdout_revenue_" + a key of metrics.value_ranking
PROMOTION_METRICS = (
    "holdout_revenue_top_20pct",
    "holdout_revenue_top_10pct",
    "holdout_revenue_gini",
)
# BG/NBD's outputs offered to the churn model as features
BTYD_CHURN_FEATURES = ("btyd_p_alive", "btyd_expected_purchases")
SPLITS = ("train", "validation", "test")
# churn_modeling.engine and the candidates each knows
CHURN_CANDIDATES = {
    "driver": ("logistic_regression", "xgboost"),
    "spark_ml": ("logistic_regression", "gradient_boosted_trees"),
}
CHURN_ENGINES = tuple(CHURN_CANDIDATES)
# balanced: each class weighs n / (2 n_class), as scikit-learn's class_weight does
CLASS_WEIGHTS = ("balanced", "none")


class ParameterError(ValueError):
    """One or more parameters are invalid; the message names each of them."""


def _date(value: Any) -> date | None:
    # YAML gives a date for 2011-12-09, --params a string
    return value if isinstance(value, date) or value is None else date.fromisoformat(str(value))


def _not_a_date(value: Any) -> str | None:
    try:
        _date(value)
    except ValueError:
        return f"{value!r} is not a date (YYYY-MM-DD)"
    return None


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _check(problems: list[str], name: str, test: Callable[[], str | None]) -> None:
    """Run ``test`` (a message or None); a value that cannot even be read is a problem too."""
    try:
        message = test()
    except (TypeError, ValueError, KeyError) as exc:
        message = str(exc) or type(exc).__name__
    if message:
        problems.append(f"parameter {name}: {message}")


# how the retention target list can be ordered: by the expected value at risk, or by its lower
# bound (a customer whose value is uncertain does not outrank one whose value is solid)
TARGET_RANKINGS = ("value_at_risk", "value_at_risk_lower")


def problems(params: Mapping[str, Any]) -> list[str]:
    """Everything wrong with ``params`` (the merged parameters of a run), as messages."""
    found: list[str] = []
    _check(found, "time_unit", lambda: _one_of(params["time_unit"], DAYS_PER_UNIT))
    _check(found, "holdout_days", lambda: _positive_whole(params["holdout_days"]))
    _check(found, "observation_end", lambda: _not_a_date(params.get("observation_end")))
    _check(found, "calibration_end", lambda: _calibration_end(params))
    _check(found, "columns", lambda: column_mapping_problem(params.get("columns") or {}))
    cleaning = params.get("cleaning") or {}
    _check(
        found,
        "cleaning.max_quarantine_fraction",
        lambda: _in_unit_interval(cleaning["max_quarantine_fraction"]),
    )
    _check(
        found, "cleaning.latest_valid_date", lambda: _not_a_date(cleaning.get("latest_valid_date"))
    )
    returns = cleaning.get("returns") or {}
    _check(
        found, "cleaning.returns.mode", lambda: _one_of(returns.get("mode", "net"), RETURN_MODES)
    )
    _check(found, "cleaning.returns.max_days", lambda: _optional_positive(returns.get("max_days")))
    _check(
        found,
        "cleaning.non_product_stock_codes",
        lambda: non_product_codes_problem(cleaning.get("non_product_stock_codes", [])),
    )
    cltv = params.get("cltv") or {}
    if "candidates" in cltv:
        _check(found, "cltv.candidates", lambda: _candidates_problem(cltv["candidates"]))
        _check(
            found,
            "cltv.model_selection",
            lambda: _one_of(cltv.get("model_selection"), [*SELECTION_RULES, *cltv["candidates"]]),
        )
    for model in (*PURCHASE_MODELS, "gamma_gamma"):
        if model in cltv:
            _check(
                found,
                f"cltv.{model}.penalizer",
                lambda model=model: (
                    "must not be negative" if _number(cltv[model]["penalizer"]) < 0 else None
                ),
            )
    uncertainty = cltv.get("uncertainty") or {}
    if "interval" in uncertainty:
        _check(
            found,
            "cltv.uncertainty.interval",
            lambda: None if 0 < _number(uncertainty["interval"]) < 1 else "must be between 0 and 1",
        )
    if "draws" in uncertainty:
        _check(
            found,
            "cltv.uncertainty.draws",
            lambda: _positive_whole(uncertainty["draws"]),
        )
    if "seed" in uncertainty:
        _check(
            found,
            "cltv.uncertainty.seed",
            lambda: (
                None
                if float(_number(uncertainty["seed"])) == int(uncertainty["seed"]) >= 0
                else "must be a whole number, 0 or above"
            ),
        )
    targets = (params.get("reporting") or {}).get("targets") or {}
    if "rank_by" in targets:
        _check(
            found,
            "reporting.targets.rank_by",
            lambda: _one_of(targets["rank_by"], TARGET_RANKINGS),
        )
    drift = (params.get("reporting") or {}).get("drift") or {}
    if "bins" in drift:
        _check(
            found,
            "reporting.drift.bins",
            lambda: (
                None
                if _number(drift["bins"]) == int(drift["bins"]) >= 2
                else "must be a whole number, 2 or above"
            ),
        )
    for key in ("psi_warning", "changed_share_warning"):
        if key in drift:
            _check(
                found,
                f"reporting.drift.{key}",
                lambda key=key: None if _number(drift[key]) > 0 else "must be above 0",
            )
    valuation = cltv.get("valuation") or {}
    if valuation:
        _check(
            found,
            "cltv.valuation.horizon_months",
            lambda: _positive_whole(valuation["horizon_months"]),
        )
        _check(
            found,
            "cltv.valuation.discount_rate",
            lambda: "must not be negative" if _number(valuation["discount_rate"]) < 0 else None,
        )
        _check(
            found,
            "cltv.valuation.margin",
            lambda: "must be positive" if _number(valuation["margin"]) <= 0 else None,
        )
    found += _promotion_problems(cltv.get("promotion") or {}, "cltv", PROMOTION_METRICS)
    btyd_features = (params.get("churn_modeling") or {}).get("btyd_features")
    if btyd_features is not None:
        _check(
            found,
            "churn_modeling.btyd_features",
            lambda: _btyd_features_problem(btyd_features),
        )
    split = ((params.get("churn_modeling") or {}).get("split") or {}).get("fractions")
    if split is not None:
        _check(found, "churn_modeling.split.fractions", lambda: _fractions(split))
    modeling = params.get("churn_modeling") or {}
    if "engine" in modeling:
        _check(found, "churn_modeling.engine", lambda: _one_of(modeling["engine"], CHURN_ENGINES))
        if modeling["engine"] in CHURN_ENGINES:
            engine = modeling["engine"]
            _check(
                found,
                f"churn_modeling.candidates.{engine}",
                lambda: _churn_candidates_problem(
                    (modeling.get("candidates") or {}).get(engine), engine
                ),
            )
    if "class_weight" in modeling:
        _check(
            found,
            "churn_modeling.class_weight",
            lambda: _one_of(modeling["class_weight"], CLASS_WEIGHTS),
        )
    if "max_train_customers" in modeling:
        _check(
            found,
            "churn_modeling.max_train_customers",
            lambda: (
                "must be at least 100" if _number(modeling["max_train_customers"]) < 100 else None
            ),
        )
    for part in ("churn_reasons", "retention_levers"):
        if part in (modeling.get("reasons") or {}):
            _check(
                found,
                f"churn_modeling.reasons.{part}",
                lambda part=part: _positive_whole(modeling["reasons"][part]),
            )
    found += _promotion_problems(
        modeling.get("promotion") or {}, "churn_modeling", ("pr_auc", "roc_auc")
    )
    return found


def _promotion_problems(promotion: Mapping, section: str, metrics: Sequence[str]) -> list[str]:
    found: list[str] = []
    if "metric" in promotion:
        _check(found, f"{section}.promotion.metric", lambda: _one_of(promotion["metric"], metrics))
    if "min_gain" in promotion:
        _check(
            found,
            f"{section}.promotion.min_gain",
            lambda: "must not be negative" if _number(promotion["min_gain"]) < 0 else None,
        )
    return found


def _churn_candidates_problem(candidates: Any, engine: str) -> str | None:
    known = CHURN_CANDIDATES[engine]
    if not isinstance(candidates, Mapping) or not candidates:
        return f"{candidates!r} must map at least one of {', '.join(known)} to its settings"
    unknown = sorted(set(candidates) - set(known))
    return f"unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}" if unknown else None


def _candidates_problem(candidates: Any) -> str | None:
    if not isinstance(candidates, list) or not candidates:
        return f"{candidates!r} must be a non-empty list of {', '.join(PURCHASE_MODELS)}"
    unknown = [c for c in candidates if c not in PURCHASE_MODELS]
    if unknown:
        return f"unknown model(s) {', '.join(map(str, unknown))}; use {', '.join(PURCHASE_MODELS)}"
    return None


def _btyd_features_problem(features: Any) -> str | None:
    known = ", ".join(BTYD_CHURN_FEATURES)
    if not isinstance(features, list):
        return f"{features!r} must be a list of {known} ([] for none)"
    unknown = [f for f in features if f not in BTYD_CHURN_FEATURES]
    if unknown:
        return f"unknown feature(s) {', '.join(map(str, unknown))}; use {known}"
    return None


def validate_parameters(params: Mapping[str, Any]) -> None:
    """Raise :class:`ParameterError` naming every invalid parameter."""
    found = problems(params)
    if found:
        raise ParameterError("; ".join(found))


def _one_of(value: Any, allowed: Iterable[str]) -> str | None:
    if value not in allowed:
        return f"{value!r} is not one of {', '.join(allowed)}"
    return None


def _positive_whole(value: Any) -> str | None:
    if _number(value) <= 0 or float(value) != int(value):
        return f"{value!r} must be a whole number above 0"
    return None


def _optional_positive(value: Any) -> str | None:
    if value is not None and _number(value) <= 0:
        return f"{value!r} must be a number of days above 0, or null"
    return None


def _in_unit_interval(value: Any) -> str | None:
    if not 0 <= _number(value) <= 1:
        return f"{value!r} must be between 0 and 1"
    return None


def _calibration_end(params: Mapping[str, Any]) -> str | None:
    not_a_date = _not_a_date(params.get("calibration_end"))
    if not_a_date or _not_a_date(params.get("observation_end")):
        return not_a_date  # a bad observation_end is reported under its own name
    calibration_end = _date(params.get("calibration_end"))
    observation_end = _date(params.get("observation_end"))
    if calibration_end and observation_end and calibration_end >= observation_end:
        return f"{calibration_end} must be before observation_end ({observation_end})"
    return None


def _fractions(fractions: Mapping[str, Any]) -> str | None:
    if set(fractions) != set(SPLITS):
        return f"needs exactly {', '.join(SPLITS)}, got {', '.join(map(str, fractions))}"
    values = [_number(fractions[name]) for name in SPLITS]
    if any(v <= 0 for v in values) or abs(sum(values) - 1) > 1e-9:
        return f"{dict(fractions)} must be positive and sum to 1"
    return None
