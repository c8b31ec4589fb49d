"""Why this customer: each customer's churn probability taken apart into one contribution per
model input, in log-odds, and the features that push it up (``churn_reasons``) and down
(``retention_levers``), with the first reason in words.

The contributions are exact: for every customer, their sum plus the bias is the model's
log-odds of churn.

* XGBoost: TreeSHAP (Lundberg, Erion and Lee, "Consistent individualized feature attribution
  for tree ensembles", 2018), XGBoost's own ``pred_contribs``.
* Logistic regression: the coefficient times the feature's deviation from its training mean
  (on the scaled and one-hot inputs the model sees); the bias is the log-odds of the training
  mean. This is what SHAP gives a linear model with independent features.

A categorical feature's one-hot slots are summed back into the feature, so a reason is always
an input the user knows (``country``, not ``country_France``). The phrases for people are here
too, one per feature (:data:`PHRASES`), so every table, list and page says the same thing.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

# one reason or lever: which input, the customer's value of it, and its push in log-odds
REASON_TYPE = "array<struct<feature:string,value:string,contribution:double>>"
# the reason columns churn_predictions gets, in this order
REASON_COLUMNS = ("churn_reasons", "retention_levers", "churn_reason_text")
# doubles are shown to this many decimals in a reason's value (the contribution is exact)
VALUE_DECIMALS = 4


# ------------------------------------------------------------------ contributions
def _slots_per_input(model: Pipeline) -> np.ndarray:
    """A (prepared columns x model inputs) 0/1 matrix: which input each column the classifier
    sees comes from (a numeric input is one column, a categorical one a slot per value)."""
    preparation = model.named_steps["prepare"]
    inputs = list(model.feature_names_in_)
    grouping = np.zeros((len(preparation.get_feature_names_out()), len(inputs)))
    for name, transformer, columns in preparation.transformers_:
        if name == "remainder":
            continue
        start = preparation.output_indices_[name].start
        widths = (
            [len(values) for values in transformer.categories_]
            if hasattr(transformer, "categories_")
            else [1] * len(columns)
        )
        for column, width in zip(columns, widths, strict=True):
            grouping[start : start + width, inputs.index(column)] = 1.0
            start += width
    return grouping


def explains(model: Any) -> bool:
    """Whether :func:`contributions` can take ``model`` apart: a driver pipeline with XGBoost, or
    with a logistic regression fitted with its training mean (every one since reasons exist)."""
    classifier = getattr(model, "named_steps", {}).get("classifier")
    if classifier is None:
        return False
    return hasattr(classifier, "get_booster") or hasattr(classifier, "training_mean_")


def contributions(model: Pipeline, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's contribution of every model input (rows x ``model.feature_names_in_``)
    to the log-odds of churn, and the bias (one per row): their row sums are the log-odds."""
    preparation, classifier = model.named_steps["prepare"], model.named_steps["classifier"]
    prepared = np.asarray(preparation.transform(frame[list(model.feature_names_in_)]), float)
    if hasattr(classifier, "get_booster"):
        from xgboost import DMatrix

        best = getattr(classifier, "best_iteration", None)
        per_column = (
            classifier.get_booster()
            .predict(
                DMatrix(prepared, missing=np.nan),
                pred_contribs=True,
                # the trees predict_proba uses: up to the best round when training stopped early
                iteration_range=(0, best + 1) if best is not None else (0, 0),
            )
            .astype(float)
        )
        per_column, bias = per_column[:, :-1], per_column[:, -1]
    else:
        coefficients = classifier.coef_[0]
        per_column = (prepared - classifier.training_mean_) * coefficients
        bias = np.full(
            len(frame), classifier.intercept_[0] + classifier.training_mean_ @ coefficients
        )
    return per_column @ _slots_per_input(model), bias


def _ranked(values: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns of the ``count`` largest values, largest first (ties: the input
    listed first), and those values."""
    order = np.argsort(-values, axis=1, kind="stable")[:, :count]
    return order, np.take_along_axis(values, order, axis=1)


# ------------------------------------------------------------------ phrases
def _days(n: float) -> str:
    return f"{n:,.0f} day{'' if round(n) == 1 else 's'}"


def _recency(value: float, customer: Mapping[str, Any]) -> str:
    gap = customer.get("mean_days_between_purchases")
    if customer.get("n_purchase_days", 2) > 1 and gap:
        return f"no purchase for {value:,.0f} days; this customer usually buys every {gap:,.0f}"
    return f"no purchase for {_days(value)}"


def _trend(window: str) -> Callable[[float, Mapping[str, Any]], str]:
    def phrase(value: float, customer: Mapping[str, Any]) -> str:
        # value = (last - previous) / (last + previous), so last / previous = (1 + v) / (1 - v)
        if value <= -1:
            return f"no spend in the last {window} days, after spending in the {window} before"
        if value >= 1:
            return f"all spend in the last {window} days, none in the {window} before"
        if value == 0:
            return f"spend flat against the previous {window} days"
        change = 2 * value / (1 - value)
        verb = "fell" if change < 0 else "rose"
        return f"spend {verb} {abs(change):.0%} against the previous {window} days"

    return phrase


def _purchases(window: str) -> Callable[[float, Mapping[str, Any]], str]:
    def phrase(value: float, customer: Mapping[str, Any]) -> str:
        if value == 0:
            return f"no purchase in the last {window} days"
        return f"bought on {_days(value)} in the last {window} days"

    return phrase


def _revenue(window: str) -> Callable[[float, Mapping[str, Any]], str]:
    def phrase(value: float, customer: Mapping[str, Any]) -> str:
        if value <= 0:
            return f"no spend in the last {window} days"
        return f"spent {value:,.0f} in the last {window} days"

    return phrase


def _one_purchase_or(text: str) -> Callable[[float, Mapping[str, Any]], str]:
    def phrase(value: float, customer: Mapping[str, Any]) -> str:
        if customer.get("n_purchase_days", 2) <= 1:
            return "one purchase only"
        return text.format(value=value)

    return phrase


# each feature's phrase: (its value, all of the customer's inputs) -> words
PHRASES: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "recency_days": _recency,
    "tenure_days": lambda v, c: f"first purchase {_days(v)} ago",
    "n_purchase_days": lambda v, c: "one purchase only" if v <= 1 else f"bought on {_days(v)}",
    "is_repeat_customer": lambda v, c: "has bought more than once" if v else "one purchase only",
    "monetary_total": lambda v, c: f"spent {v:,.0f} in all",
    "monetary_mean": lambda v, c: f"spends {v:,.0f} per purchase day",
    "n_invoices": lambda v, c: "one order only" if v <= 1 else f"{v:,.0f} orders",
    "avg_lines_per_invoice": lambda v, c: f"{v:,.1f} lines per order",
    "avg_items_per_invoice": lambda v, c: f"{v:,.0f} items per order",
    "distinct_products": lambda v, c: f"{v:,.0f} different products bought",
    "mean_days_between_purchases": _one_purchase_or("buys every {value:,.0f} days on average"),
    "country": lambda v, c: f"a customer in {v}",
    "rfm_segment": lambda v, c: f"in the RFM segment '{v}'",
    "btyd_p_alive": lambda v, c: f"the purchase model gives a {v:.0%} chance of still buying",
    "btyd_expected_purchases": lambda v, c: (
        f"the purchase model expects {v:,.1f} purchases over the next holdout period"
    ),
}
# features named by their window (churn_modeling's windows_days): the window goes in the words
WINDOWED_PHRASES = {
    re.compile(r"purchases_last_(\d+)d"): _purchases,
    re.compile(r"revenue_last_(\d+)d"): _revenue,
    re.compile(r"revenue_trend_(\d+)d"): _trend,
}


def phrase_for(feature: str) -> Callable[[Any, Mapping[str, Any]], str]:
    """The words for ``feature``; a feature without a phrase of its own reads
    ``<feature> is <value>``."""
    if feature in PHRASES:
        return PHRASES[feature]
    for pattern, phrase in WINDOWED_PHRASES.items():
        match = pattern.fullmatch(feature)
        if match:
            return phrase(match.group(1))
    return lambda v, c: f"{feature} is {v}"


def in_words(features: list[str], first: np.ndarray, pushes: np.ndarray, frame: pd.DataFrame):
    """Each row's first reason in words (None when nothing pushes its churn up)."""
    words = np.full(len(frame), None, dtype=object)
    for column in np.unique(first[pushes]):
        rows = np.flatnonzero(pushes & (first == column))
        feature = features[column]
        phrase = phrase_for(feature)
        for row, customer in zip(rows, frame.iloc[rows].to_dict("records"), strict=True):
            words[row] = phrase(customer[feature], customer)
    return words


# ------------------------------------------------------------------ in Spark
def _explained_udf(model: Pipeline, columns: list[str], reasons: int, levers: int) -> Column:
    """One pass of the pipeline over a batch of customers: the probability (as
    ``predict_proba`` gives it), the inputs ranked by contribution both ways, every input's
    absolute contribution (observed on the write: the global view), and the first reason in
    words."""
    features = list(model.feature_names_in_)
    schema = (
        "churn_probability double, up array<int>, up_by array<double>, down array<int>, "
        "down_by array<double>, magnitude array<double>, churn_reason_text string"
    )

    @pandas_udf(schema)
    def explained(*values: pd.Series) -> pd.DataFrame:
        frame = pd.concat(values, axis=1, keys=columns)
        pushes, _ = contributions(model, frame)
        up, up_by = _ranked(pushes, reasons)
        down, down_by = _ranked(-pushes, levers)
        return pd.DataFrame(
            {
                "churn_probability": model.predict_proba(frame[features])[:, 1],
                "up": list(up.astype("int32")),
                "up_by": list(up_by),
                "down": list(down.astype("int32")),
                "down_by": list(-down_by),
                "magnitude": list(np.abs(pushes)),
                "churn_reason_text": in_words(features, up[:, 0], up_by[:, 0] > 0, frame),
            }
        )

    return explained(*columns)


def _reason_structs(ranked: Column, by: Column, names: Column, values: Column, keep) -> Column:
    """The ranked inputs as (feature, value, contribution) structs, kept where ``keep`` holds
    for the contribution (a reason pushes up, a lever down)."""
    structs = F.transform(
        F.arrays_zip(ranked.alias("i"), by.alias("c")),
        lambda r: F.struct(
            F.element_at(names, r["i"] + 1).alias("feature"),
            F.element_at(values, r["i"] + 1).alias("value"),
            r["c"].alias("contribution"),
        ),
    )
    return F.filter(structs, lambda s: keep(s["contribution"]))


def _shown(column: str, customers: DataFrame) -> Column:
    """A feature's value as the reasons show it: text, doubles to :data:`VALUE_DECIMALS`."""
    kind = customers.schema[column].dataType.typeName()
    value = F.round(column, VALUE_DECIMALS) if kind in ("double", "float") else F.col(column)
    return value.cast("string")


def explained_scores(
    model: Pipeline, customers: DataFrame, reasons: int, levers: int
) -> tuple[DataFrame, Observation]:
    """``customers`` with ``churn_probability`` and the reason columns (:data:`REASON_COLUMNS`),
    from one pandas UDF; and an ``Observation`` of the mean absolute contribution per input,
    filled by the action that writes the result (read it with :func:`global_importance`)."""
    features = list(model.feature_names_in_)
    columns = list(dict.fromkeys(["customer_id", *features]))
    names = F.array(*[F.lit(f) for f in features])
    values = F.array(*[_shown(f, customers) for f in features])
    scored = customers.withColumn("_explained", _explained_udf(model, columns, reasons, levers))
    observation = Observation("churn_reasons")
    part = F.col("_explained")
    observed = scored.observe(
        observation,
        F.count(F.lit(1)).alias("customers"),
        *[F.avg(part["magnitude"][i]).alias(f) for i, f in enumerate(features)],
    )
    result = observed.select(
        *customers.columns,
        part["churn_probability"].alias("churn_probability"),
        _reason_structs(part["up"], part["up_by"], names, values, lambda c: c > 0).alias(
            "churn_reasons"
        ),
        _reason_structs(part["down"], part["down_by"], names, values, lambda c: c < 0).alias(
            "retention_levers"
        ),
        part["churn_reason_text"].alias("churn_reason_text"),
    )
    return result, observation


def without_reasons(scored: DataFrame) -> DataFrame:
    """A model that cannot be taken apart (a Spark ML model): the reason columns, null."""
    return scored.select(
        "*",
        F.lit(None).cast(REASON_TYPE).alias("churn_reasons"),
        F.lit(None).cast(REASON_TYPE).alias("retention_levers"),
        F.lit(None).cast("string").alias("churn_reason_text"),
    )


class GlobalImportance:
    """The mean absolute contribution of each input over the scored customers, observed on the
    write of ``churn_predictions`` (no pass of its own); empty for a model without reasons."""

    # the write has finished when this is read, so its metrics are there at once; a write that
    # never ran the observed plan must not hang the run
    WAIT_SECONDS = 60.0

    def __init__(self, observation: Observation | None = None, model: str = "") -> None:
        self._observation = observation
        self.model = model

    def get(self) -> dict[str, Any]:
        """``{"model", "customers", "observed", "features": [{feature,
        mean_abs_contribution}]}``, largest first; read once the predictions are written."""
        summary = {"model": self.model, "customers": 0, "observed": False, "features": []}
        if self._observation is None:
            return summary
        seen: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: seen.update(self._observation.get), daemon=True)
        reader.start()
        reader.join(self.WAIT_SECONDS)
        if not seen:
            logger.warning(
                "The write of churn_predictions did not report the contributions it observed "
                "within %.0f s: the global view of the churn reasons is left empty",
                self.WAIT_SECONDS,
            )
            return summary
        customers = int(seen.pop("customers"))
        features = [
            {"feature": name, "mean_abs_contribution": float(value or 0.0)}
            for name, value in seen.items()
        ]
        features.sort(key=lambda f: -f["mean_abs_contribution"])
        return {**summary, "customers": customers, "observed": True, "features": features}
