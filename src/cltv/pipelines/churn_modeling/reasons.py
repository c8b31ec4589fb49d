"""Why this customer: each customer's churn probability taken apart into one contribution per
model input, in log-odds, and the features that push it up (``churn_reasons``) and down
(``retention_levers``), with the first reason in words.

The contributions are exact: for every customer, their sum plus the bias is the model's
log-odds of churn.

* XGBoost: path-dependent TreeSHAP (Lundberg, Erion and Lee, "Consistent individualized
  feature attribution for tree ensembles", 2018): XGBoost's own ``pred_contribs``, run once per
  distinct path pattern of each tree (:class:`_TreePaths`), which is what makes it cheap.
* Logistic regression: the coefficient times the feature's deviation from its training mean
  (on the scaled and one-hot inputs the model sees); the bias is the log-odds of the training
  mean. This is what SHAP gives a linear model with independent features.

A categorical feature's one-hot slots are summed back into the feature, so a reason is always
an input the user knows (``country``, not ``country_France``). The phrases for people are here
too, one per feature (:data:`PHRASES` for a reason, :data:`LEVER_PHRASES` for a lever), so
every table, list and page says the same thing.

What is shown is chosen, the numbers are not: an input whose value says nothing of this
customer is passed over (:func:`shown_where`), and a lever is an input a retention team can act
on (``churn_modeling.reasons.actionable_levers``). The contributions stay exact either way.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from cltv.parameters import ACTIONABLE_LEVERS
from cltv.spark import executor_cores

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

# one reason or lever: which input, the customer's value of it, and its push in log-odds
REASON_TYPE = "array<struct<feature:string,value:string,contribution:double>>"
# the reason columns churn_predictions gets, in this order
REASON_COLUMNS = (
    "churn_reasons",
    "retention_levers",
    "churn_reason_text",
    "retention_lever_text",
    "reasons_skipped",
)
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
    """Whether :class:`Explainer` can take ``model`` apart: a driver pipeline with XGBoost, or
    with a logistic regression fitted with its training mean (every one since reasons exist)."""
    classifier = getattr(model, "named_steps", {}).get("classifier")
    if classifier is None:
        return False
    return hasattr(classifier, "get_booster") or hasattr(classifier, "training_mean_")


class _TreePaths:
    """Exact TreeSHAP for XGBoost, computed once per distinct path pattern of each tree.

    A customer's path-dependent TreeSHAP values in one tree depend on their features only
    through the way they go at each split of that tree (left or right: one bit per split), and
    the customers of a batch share few such patterns (a few hundred per tree at 10M lines,
    against 60,000 customers). So each tree's values are computed by XGBoost itself for one
    customer per pattern, and every customer gets the sum over the trees of their pattern's
    values: the numbers of ``pred_contribs``, summed in float64, about 10x faster. Trees of
    more than 63 splits, categorical splits or several trees per round fall back to
    ``pred_contribs`` on every row.
    """

    def __init__(self, classifier: Any) -> None:
        booster = classifier.get_booster()
        best = getattr(classifier, "best_iteration", None)
        # the rounds predict_proba uses: up to the best one when training stopped early
        self._rounds = best + 1 if best is not None else booster.num_boosted_rounds()
        self._booster = booster
        self._splits = self._parse(json.loads(booster.save_raw("json")))
        width = booster.num_features()
        # path-dependent TreeSHAP's bias is the same for every row: the trees' expected value
        self.bias = float(self._contribs(booster, np.zeros((1, width)))[0, -1])
        self._rounds_alone = (
            [booster[r : r + 1] for r in range(self._rounds)] if self._splits else []
        )
        for alone in self._rounds_alone:
            # a few hundred rows per call: a thread pool per call costs more than it saves,
            # and the executor's other worker wants the second core
            alone.set_param({"nthread": 1})

    def _parse(self, model: dict[str, Any]) -> list[tuple[np.ndarray, ...]] | None:
        """Per tree of the rounds used: each split's feature, threshold (float32, as XGBoost
        compares) and the way of a missing value; None when the patterns do not apply."""
        boosted = model["learner"]["gradient_booster"]["model"]
        trees = boosted["trees"][: self._rounds]
        one_per_round = boosted.get("iteration_indptr", list(range(len(boosted["trees"]) + 1)))
        if list(one_per_round[: self._rounds + 1]) != list(range(self._rounds + 1)):
            return None
        splits = []
        for tree in trees:
            inner = np.flatnonzero(np.asarray(tree["left_children"]) != -1)
            if len(inner) > 63 or any(tree.get("split_type", [0]) or [0]):
                return None
            splits.append(
                (
                    np.asarray(tree["split_indices"])[inner],
                    np.asarray(tree["split_conditions"], dtype=np.float32)[inner],
                    np.asarray(tree["default_left"], dtype=bool)[inner],
                )
            )
        return splits

    def _contribs(self, booster: Any, prepared: np.ndarray) -> np.ndarray:
        from xgboost import DMatrix

        return booster.predict(
            DMatrix(prepared, missing=np.nan),
            pred_contribs=True,
            iteration_range=(0, self._rounds) if booster is self._booster else (0, 0),
        )

    def __call__(self, prepared: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Each row's contributions, grouped by ``slots`` (prepared columns x inputs)."""
        if self._splits is None:
            return self._contribs(self._booster, prepared)[:, :-1].astype(float) @ slots
        rows = len(prepared)
        values = np.asfortranarray(prepared, dtype=np.float32)  # XGBoost compares in float32
        missing = np.isnan(values).any(axis=0)
        # int32: a chunk's patterns number far fewer than 2**31
        pattern_of_row = np.empty((rows, len(self._splits)), np.int32)
        tables, patterns = [], 0
        for tree, (features, thresholds, default_left) in enumerate(self._splits):
            code = np.zeros(rows, np.int64)
            for bit, (feature, threshold, left) in enumerate(
                zip(features, thresholds, default_left, strict=True)
            ):
                goes_left = values[:, feature] < threshold
                if missing[feature]:
                    goes_left = np.where(np.isnan(values[:, feature]), left, goes_left)
                code |= goes_left.astype(np.int64) << bit
            pattern, distinct = pd.factorize(code)
            first = np.empty(len(distinct), np.int64)
            first[pattern[::-1]] = np.arange(rows)[::-1]  # the first row of each pattern
            tables.append(self._contribs(self._rounds_alone[tree], prepared[first])[:, :-1])
            pattern_of_row[:, tree] = pattern + patterns
            patterns += len(distinct)
        by_pattern = np.vstack(tables).astype(float) @ slots
        # each row adds its pattern's values tree by tree, in tree order: the sums a 0/1
        # matrix of one per tree would make, without that matrix (rows x trees x 24 bytes:
        # 0.5 GB for 131,072 rows at 160 trees)
        contributions = np.zeros((rows, slots.shape[1]))
        for tree in range(len(self._splits)):
            contributions += by_pattern[pattern_of_row[:, tree]]
        return contributions


def _training_means(preparation: Any) -> dict[str, float]:
    """Each scaled numeric input's mean over the customers the model was trained on."""
    means = {}
    for _, transformer, columns in preparation.transformers_:
        if hasattr(transformer, "mean_") and transformer.mean_ is not None:
            means.update(zip(columns, map(float, transformer.mean_), strict=True))
    return means


class Explainer:
    """A driver pipeline taken apart: each customer's contribution of every model input
    (``model.feature_names_in_``) to the log-odds of churn, and the bias; their row sums are
    the log-odds. Built once on the driver, it travels to the executors in the UDF.
    ``typical``: each numeric input's training mean, which says which side of it a customer's
    value is on (:func:`shown_where`)."""

    def __init__(self, model: Pipeline) -> None:
        self.inputs = list(model.feature_names_in_)
        self._preparation = model.named_steps["prepare"]
        self.typical = _training_means(self._preparation)
        self._classifier = model.named_steps["classifier"]
        self._slots = _slots_per_input(model)
        self._trees = (
            _TreePaths(self._classifier) if hasattr(self._classifier, "get_booster") else None
        )

    def prepare(self, frame: pd.DataFrame) -> np.ndarray:
        """The matrix the classifier sees (scaled, one-hot)."""
        return np.asarray(self._preparation.transform(frame[self.inputs]), float)

    def probability(self, prepared: np.ndarray) -> np.ndarray:
        """The probability of churn, as the pipeline's ``predict_proba`` gives it."""
        return self._classifier.predict_proba(prepared)[:, 1]

    def contributions(self, prepared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows x inputs contributions, and the bias of each row."""
        if self._trees is not None:
            return self._trees(prepared, self._slots), np.full(len(prepared), self._trees.bias)
        classifier = self._classifier
        coefficients, mean = classifier.coef_[0], classifier.training_mean_
        bias = classifier.intercept_[0] + mean @ coefficients
        return ((prepared - mean) * coefficients) @ self._slots, np.full(len(prepared), bias)


def contributions(model: Pipeline, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``model``'s contributions for the customers of ``frame`` (:class:`Explainer`)."""
    explainer = Explainer(model)
    return explainer.contributions(explainer.prepare(frame))


def _ranked(values: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns of the ``count`` largest values, largest first (ties: the input
    listed first), and those values."""
    order = np.argsort(-values, axis=1, kind="stable")[:, :count]
    return order, np.take_along_axis(values, order, axis=1)


# ------------------------------------------------------------------ phrases
# A phrase says why this customer may leave: a risk, never praise. It reads its own feature's
# value and the customer's other inputs (:data:`PHRASE_CONTEXT`, and the prediction's
# ``horizon_days``); None when the value is no risk to put in words (a segment named for
# praise), so that the text takes the next reason.


def _days(n: float) -> str:
    return f"{n:,.0f} day{'' if round(n) == 1 else 's'}"


def _percent(share: float) -> str:
    """A share as a percentage that reads 0% or 100% only when it is exactly that: 0.996 is
    99.6%, 0.002 is 0.2%, 0.9999 is over 99.9%."""
    for decimals in (0, 1):
        text = f"{share:.{decimals}%}"
        if share in (0, 1) or float(text[:-1]) not in (0, 100):
            return text
    return "under 0.1%" if share < 0.5 else "over 99.9%"


def _one_purchase(customer: Mapping[str, Any]) -> bool:
    # a customer without their purchase days in view is taken for a repeat one: the phrase
    # then says what the value is, which holds either way
    return customer.get("n_purchase_days", 2) <= 1


def _recency(value: float, customer: Mapping[str, Any]) -> str:
    gap = customer.get("mean_days_between_purchases")
    if not _one_purchase(customer) and gap:
        return f"no purchase for {_days(value)}; this customer usually buys every {_days(gap)}"
    return f"no purchase for {_days(value)}"


def _trend(window: str, equal: str = "no higher than") -> Callable[[float, Mapping[str, Any]], str]:
    both = 2 * int(window)

    def phrase(value: float, customer: Mapping[str, Any]) -> str:
        # value = (last - previous) / (last + previous), so last / previous = (1 + v) / (1 - v);
        # 0 also when neither window has spend, which the last window's revenue tells apart
        if value <= -1:
            return f"no spend in the last {window} days, after spending in the {window} before"
        if value >= 1:
            return f"all spend in the last {window} days, none in the {window} before"
        if value == 0:
            if customer.get(f"revenue_last_{window}d", 0) > 0:
                return f"spend {equal} in the previous {window} days"
            return f"no spend in the last {both} days"
        change = 2 * value / (1 - value)
        verb = "fell" if change < 0 else "rose"
        return f"spend {verb} {_percent(abs(change))} against the previous {window} days"

    return phrase


def _purchases(window: str) -> Callable[[float, Mapping[str, Any]], str]:
    def phrase(value: float, customer: Mapping[str, Any]) -> str:
        if value == 0:
            return f"no purchase in the last {window} days"
        return (
            f"only {value:,.0f} purchase day{'' if value == 1 else 's'} in the last {window} days"
        )

    return phrase


def _revenue(window: str) -> Callable[[float, Mapping[str, Any]], str]:
    def phrase(value: float, customer: Mapping[str, Any]) -> str:
        if value <= 0:
            return f"no spend in the last {window} days"
        return f"only {value:,.0f} spent in the last {window} days"

    return phrase


def _one_purchase_or(text: str) -> Callable[[float, Mapping[str, Any]], str]:
    def phrase(value: float, customer: Mapping[str, Any]) -> str:
        if _one_purchase(customer):
            return "one purchase only"
        return text.format(value=value)

    return phrase


def _repeat(value: float, customer: Mapping[str, Any]) -> str:
    if not value:
        return "one purchase only"
    days = customer.get("n_purchase_days")
    return f"only {days:,.0f} purchase days so far" if days else "has bought more than once"


# the RFM segments (data_processing.features.rfm_segments) named for praise are never a reason
# to churn: built from recency, frequency and spend, which the model also sees, a segment
# soaks up what they leave (a positive push for 'Champions' is true to the model and absurd to
# a person), so the text takes the next reason. A segment named for a risk reads as it is.
PRAISE_SEGMENTS = frozenset(
    {"Champions", "Loyal Customers", "Potential Loyalists", "Promising", "New Customers"}
)


_PRAISE = [name.casefold() for name in PRAISE_SEGMENTS]


def _segment(value: Any, customer: Mapping[str, Any]) -> str | None:
    if str(value).casefold() in _PRAISE:
        return None
    return f"in the RFM segment '{value}'"


def _p_alive(value: float, customer: Mapping[str, Any]) -> str:
    # BG/NBD gives P(alive) = 1 to every customer without a repeat purchase, by construction
    if _one_purchase(customer):
        return "one purchase only: the purchase model cannot tell yet"
    return (
        f"the purchase model's probability of still being an active customer is {_percent(value)}"
    )


def _expected_purchases(only: str = "only ") -> Callable[[float, Mapping[str, Any]], str]:
    def phrase(value: float, customer: Mapping[str, Any]) -> str:
        horizon = customer.get("horizon_days")
        over = f"the next {_days(horizon)}" if horizon else "the prediction's horizon"
        count = "fewer than 0.1" if 0 < value < 0.05 else f"{only}{value:,.1f}"
        return f"the purchase model expects {count} purchases over {over}"

    return phrase


# each feature's phrase: (its value, the customer's inputs) -> words, or None for no risk
PHRASES: dict[str, Callable[[Any, Mapping[str, Any]], str | None]] = {
    "recency_days": _recency,
    "tenure_days": lambda v, c: f"first purchase {_days(v)} ago",
    "n_purchase_days": lambda v, c: (
        "one purchase only" if v <= 1 else f"only {v:,.0f} purchase days so far"
    ),
    "is_repeat_customer": _repeat,
    "monetary_total": lambda v, c: f"only {v:,.0f} spent in all",
    "monetary_mean": lambda v, c: f"only {v:,.0f} spent per purchase day",
    "n_invoices": lambda v, c: "one order only" if v <= 1 else f"only {v:,.0f} orders",
    "avg_lines_per_invoice": lambda v, c: f"{v:,.1f} lines per order",
    "avg_items_per_invoice": lambda v, c: f"{v:,.0f} items per order",
    "distinct_products": lambda v, c: f"only {v:,.0f} different products bought",
    "mean_days_between_purchases": _one_purchase_or("buys only every {value:,.0f} days on average"),
    "country": lambda v, c: f"a customer in {v}",
    "rfm_segment": _segment,
    "btyd_p_alive": _p_alive,
    "btyd_expected_purchases": _expected_purchases(),
}
# features named by their window (churn_modeling's windows_days): the window goes in the words
WINDOWED_PHRASES = {
    re.compile(r"purchases_last_(\d+)d"): _purchases,
    re.compile(r"revenue_last_(\d+)d"): _revenue,
    re.compile(r"revenue_trend_(\d+)d"): _trend,
}


def _ago(value: float, customer: Mapping[str, Any]) -> str:
    when = "today" if value == 0 else f"{_days(value)} ago"
    gap = customer.get("mean_days_between_purchases")
    if not _one_purchase(customer) and gap:
        return f"last purchase {when}; usually buys every {_days(gap)}"
    return f"last purchase {when}"


def _counted(one: str, many: str) -> Callable[[float, Mapping[str, Any]], str]:
    return lambda v, c: one if v == 1 else many.format(value=v)


def _purchase_days_in(window: str) -> Callable[[float, Mapping[str, Any]], str]:
    return _counted(
        f"one purchase day in the last {window} days",
        f"{{value:,.0f}} purchase days in the last {window} days",
    )


# A lever is what holds this customer back from leaving, in words an agent builds on: the same
# facts as the reasons, without the "only" that makes a count a risk.
LEVER_PHRASES: dict[str, Callable[[Any, Mapping[str, Any]], str | None]] = {
    **PHRASES,
    "recency_days": _ago,
    "n_purchase_days": _counted("one purchase day so far", "{value:,.0f} purchase days so far"),
    "is_repeat_customer": lambda v, c: "has bought more than once" if v else "one purchase only",
    "monetary_total": lambda v, c: f"{v:,.0f} spent in all",
    "monetary_mean": lambda v, c: f"{v:,.0f} spent per purchase day",
    "n_invoices": _counted("one order so far", "{value:,.0f} orders so far"),
    "distinct_products": lambda v, c: f"{v:,.0f} different products bought",
    "mean_days_between_purchases": _one_purchase_or("buys every {value:,.0f} days on average"),
    "rfm_segment": lambda v, c: f"in the RFM segment '{v}'",
    "btyd_expected_purchases": _expected_purchases(only=""),
}
WINDOWED_LEVER_PHRASES = {
    re.compile(r"purchases_last_(\d+)d"): _purchase_days_in,
    re.compile(r"revenue_last_(\d+)d"): lambda w: (
        lambda v, c: f"{v:,.0f} spent in the last {w} days"
    ),
    re.compile(r"revenue_trend_(\d+)d"): lambda w: _trend(w, equal="as"),
}


def phrase_for(feature: str, lever: bool = False) -> Callable[[Any, Mapping[str, Any]], str | None]:
    """The words for ``feature`` as a reason (or as a ``lever``); a feature without a phrase of
    its own reads ``<feature> is <value>``."""
    phrases, windowed = (
        (LEVER_PHRASES, WINDOWED_LEVER_PHRASES) if lever else (PHRASES, WINDOWED_PHRASES)
    )
    if feature in phrases:
        return phrases[feature]
    for pattern, phrase in windowed.items():
        match = pattern.fullmatch(feature)
        if match:
            return phrase(match.group(1))
    return lambda v, c: f"{feature} is {v}"


# the inputs a phrase may read besides its own feature's value
PHRASE_CONTEXT = ("n_purchase_days", "mean_days_between_purchases")


def phrase_context(features: list[str]) -> list[str]:
    """The columns the phrases of ``features`` read besides the features themselves: the
    purchase days and gap, and for a spend trend its last window's revenue (a trend of 0 is
    also no spend in either window)."""
    trends = [re.fullmatch(r"revenue_trend_(\d+)d", f) for f in features]
    return [*PHRASE_CONTEXT, *[f"revenue_last_{m.group(1)}d" for m in trends if m]]


# Which way an input's value is better for a customer's future: more purchases, spend and
# recent activity, a shorter wait. Shell patterns, as churn_modeling.reasons.actionable_levers.
BETTER_HIGHER = (
    "n_purchase_days",
    "is_repeat_customer",
    "n_invoices",
    "monetary_total",
    "monetary_mean",
    "distinct_products",
    "purchases_last_*d",
    "revenue_last_*d",
    "revenue_trend_*d",
    "btyd_p_alive",
    "btyd_expected_purchases",
)
BETTER_LOWER = ("recency_days", "mean_days_between_purchases")


def _better(feature: str) -> int:
    """+1 when a higher value of ``feature`` is better, -1 when a lower one is, else 0."""
    for sign, patterns in ((1, BETTER_HIGHER), (-1, BETTER_LOWER)):
        if any(fnmatch.fnmatchcase(feature, p) for p in patterns):
            return sign
    return 0


def shown_where(
    features: list[str], frame: pd.DataFrame, typical: Mapping[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per customer (row of ``frame``) and input, whether the input may be shown as a churn
    reason, and as a retention lever: not where its value says nothing of this customer, nor
    where its push contradicts what the value means.

    * P(alive) and the usual gap between purchases of a customer with one purchase: BG/NBD
      gives every such customer P(alive) = 1 by construction, and there is no gap yet (0).
    * A spend trend with no spend in either window: 0, as equal spend would be.
    * An input with a better side (:data:`BETTER_HIGHER`, :data:`BETTER_LOWER`) is a reason
      only where the customer's value is on the worse side of its ``typical`` (training mean)
      value, and a lever only on the better side: "only 4,116 spent per purchase day" as a
      reason to churn, or "no spend in the last 180 days" as what holds a customer, is the
      model leaning on inputs that move together (spend per day with spend in all, the trend
      with recency). True to the model, absurd to a person.
    * Likewise a segment named for praise as a reason to churn, or one named for a risk as a
      lever: built from recency, frequency and spend, which the model also sees, a segment
      soaks up what they leave. Its push is shown only where its sign agrees with its name.
    """
    reason = np.ones((len(frame), len(features)), dtype=bool)
    lever = reason.copy()
    typical = typical or {}
    one_purchase = (
        frame["n_purchase_days"].to_numpy(float) <= 1
        if "n_purchase_days" in frame
        else np.zeros(len(frame), dtype=bool)
    )
    for i, feature in enumerate(features):
        trend = re.fullmatch(r"revenue_trend_(\d+)d", feature)
        if feature in ("btyd_p_alive", "mean_days_between_purchases"):
            reason[:, i] = lever[:, i] = ~one_purchase
        elif trend and f"revenue_last_{trend.group(1)}d" in frame:
            last = frame[f"revenue_last_{trend.group(1)}d"].to_numpy(float)
            reason[:, i] = lever[:, i] = ~((frame[feature].to_numpy(float) == 0) & (last <= 0))
        elif feature == "rfm_segment":
            praised = frame[feature].astype(str).str.casefold().isin(_PRAISE).to_numpy()
            reason[:, i], lever[:, i] = ~praised, praised
        better = _better(feature)
        if better and feature in typical:
            # above (+) or below (-) the typical value; a missing value may show either way
            side = better * (frame[feature].to_numpy(float) - typical[feature])
            reason[:, i] &= ~(side > 0)
            lever[:, i] &= ~(side < 0)
    return reason, lever


def actionable(features: list[str], patterns: list[str] | tuple[str, ...]) -> np.ndarray:
    """Which of ``features`` a retention team can act on: those matching a shell pattern of
    ``patterns`` (``churn_modeling.reasons.actionable_levers``)."""
    return np.array([any(fnmatch.fnmatchcase(f, p) for p in patterns) for f in features], bool)


def in_words(
    features: list[str],
    order: np.ndarray,
    by: np.ndarray,
    frame: pd.DataFrame,
    horizon_days: int | None = None,
    lever: bool = False,
) -> np.ndarray:
    """Each row's churn reason in words (or retention ``lever``): of the inputs ranked by their
    push (``order``, the push ``by``, largest first: up for a reason, down for a lever), the
    first that pushes and has words (a segment named for praise has none as a reason). None
    when none does. ``horizon_days``: the prediction's."""
    words = np.full(len(frame), None, dtype=object)
    context = [c for c in phrase_context(features) if c in frame.columns]
    waiting = np.ones(len(frame), dtype=bool)
    for rank in range(order.shape[1]):
        waiting &= by[:, rank] > 0  # ranked largest first: no later input pushes up either
        if not waiting.any():
            break
        for column in np.unique(order[waiting, rank]):
            rows = np.flatnonzero(waiting & (order[:, rank] == column))
            feature = features[column]
            phrase = phrase_for(feature, lever)
            customers = frame[list(dict.fromkeys([feature, *context]))].iloc[rows]
            words[rows] = [
                phrase(customer[feature], {**customer, "horizon_days": horizon_days})
                for customer in customers.to_dict("records")
            ]
        waiting &= pd.isna(words)
    return words


# ------------------------------------------------------------------ in Spark
# rows explained at once on an executor (Arrow hands the UDF 10,000 rows at a time): the tree
# patterns are found per chunk, so a chunk must hold many customers, but its arrays are held
# at once. With the 50M run's churn model (68 trees, 40 prepared columns), 131,072 customers
# took 1.5-1.9 s in chunks of 131,072, 65,536 or 32,768 alike, and a chunk's peak fell from
# 369 to 139 MB (tracemalloc): at 131,072 the two workers of score_customers held 1.65 GB
CHUNK_ROWS = 32_768


def _explained_udf(
    explainer: Explainer,
    columns: list[str],
    kinds: list[str],
    reasons: int,
    levers: int,
    horizon_days: int | None,
    can_act: np.ndarray,
):
    """One pass over the customers of a partition, in chunks: the probability (as
    ``predict_proba`` gives it), the inputs that may be shown (:func:`shown_where`; a lever
    only where ``can_act``) ranked by contribution both ways with the customer's value of each
    (null for an input of kind ``text``), how many were passed over, the chunk's total absolute
    contribution per input (observed on the write: the global view), and the first reason and
    lever in words; flat numeric columns, which Arrow moves without Python objects."""
    features = explainer.inputs
    numeric = [i for i, kind in enumerate(kinds) if kind != "text"]
    numeric_inputs = [features[i] for i in numeric]
    ranked = [f"up_{i}" for i in range(reasons)], [f"down_{i}" for i in range(levers)]
    schema = ", ".join(
        [
            "churn_probability double",
            *[
                f"{name} int, {name}_by double, {name}_value double"
                for name in (*ranked[0], *ranked[1])
            ],
            *[f"magnitude_{i} double" for i in range(len(features))],
            "churn_reason_text string",
            "retention_lever_text string",
            "reasons_skipped int",
        ]
    )

    def ranked_where(shown: np.ndarray, pushes: np.ndarray, count: int):
        # the shown inputs first, by push; the others last, at 0 (kept as neither way)
        order, by = _ranked(np.where(shown, pushes, -np.inf), count)
        return order, np.where(np.isfinite(by), by, 0.0)

    def passed_over(shown: np.ndarray, pushes: np.ndarray, count: int) -> np.ndarray:
        # of the inputs that the push alone would show, those not shown
        order, by = _ranked(pushes, count)
        return ((by > 0) & ~np.take_along_axis(shown, order, axis=1)).sum(axis=1)

    def explain(frame: pd.DataFrame) -> pd.DataFrame:
        prepared = explainer.prepare(frame)
        pushes, _ = explainer.contributions(prepared)
        as_reason, as_lever = shown_where(features, frame, explainer.typical)
        as_lever &= can_act
        every, every_by = ranked_where(as_reason, pushes, len(features))
        up, up_by = every[:, :reasons], every_by[:, :reasons]
        down, down_by = ranked_where(as_lever, -pushes, levers)
        skipped = passed_over(as_reason, pushes, reasons) + passed_over(
            as_lever, np.where(can_act, -pushes, 0.0), levers
        )
        values = np.full((len(frame), len(features)), np.nan)
        values[:, numeric] = frame[numeric_inputs].to_numpy(float, na_value=np.nan)
        rows = np.arange(len(frame))
        result = {"churn_probability": explainer.probability(prepared)}
        for names, order, by in ((ranked[0], up, up_by), (ranked[1], down, -down_by)):
            for i, name in enumerate(names):
                result[name], result[f"{name}_by"] = order[:, i].astype("int32"), by[:, i]
                result[f"{name}_value"] = values[rows, order[:, i]]
        # the chunk's total |contribution| per input rides on its first row alone (the rest
        # null): the observed sums over the table are then a few values per chunk to move,
        # not one per customer and input
        totals = np.full((len(frame), len(features)), np.nan)
        totals[0] = np.abs(pushes).sum(axis=0)
        for i in range(len(features)):
            result[f"magnitude_{i}"] = totals[:, i]
        result["churn_reason_text"] = in_words(features, every, every_by, frame, horizon_days)
        result["retention_lever_text"] = in_words(
            features, down, down_by, frame, horizon_days, lever=True
        )
        result["reasons_skipped"] = skipped.astype("int32")
        return pd.DataFrame(result)

    def chunks(batches: Iterator[tuple[pd.Series, ...]]) -> Iterator[pd.DataFrame]:
        waiting: list[pd.DataFrame] = []
        for values in batches:
            waiting.append(pd.concat(values, axis=1, keys=columns))
            if sum(map(len, waiting)) >= CHUNK_ROWS:
                yield explain(pd.concat(waiting, ignore_index=True))
                waiting = []
        if waiting:
            yield explain(pd.concat(waiting, ignore_index=True))

    return pandas_udf(chunks, schema)  # an iterator UDF, from the type hints


def _reason_structs(names: list[str], features: list[str], kinds: list[str], keep) -> Column:
    """The ranked inputs ``names`` (columns ``<name>``, ``<name>_by``, ``<name>_value`` of the
    UDF's result) as (feature, value, contribution) structs, kept where ``keep`` holds for the
    contribution (a reason pushes up, a lever down). Ranked, the kept ones come first: a slice
    of the array, not a ``filter``, whose lambda Spark runs without generated code."""
    part = F.col("_explained")
    inputs = F.array(*[F.lit(f) for f in features])
    kind_of_input = F.array(*[F.lit(kind) for kind in kinds])

    def shown(name: str) -> Column:
        # the UDF hands back numbers, so the text is a CASE of four kinds, not one branch per
        # input: a CASE over every input costs seconds at 530,000 customers to compile and run
        index, number = part[name], part[f"{name}_value"]
        kind = F.element_at(kind_of_input, index + 1)
        text = F.lit(None).cast("string")
        for i, (feature, its_kind) in enumerate(zip(features, kinds, strict=True)):
            if its_kind == "text":
                text = F.when(index == i, F.col(feature)).otherwise(text)
        return (
            F.when(kind == "decimal", F.round(number, VALUE_DECIMALS).cast("string"))
            .when(kind == "integral", number.cast("long").cast("string"))
            .when(kind == "boolean", (number != 0).cast("string"))
            .otherwise(text)
        )

    structs = F.array(
        *[
            F.struct(
                F.element_at(inputs, part[name] + 1).alias("feature"),
                shown(name).alias("value"),
                part[f"{name}_by"].alias("contribution"),
            )
            for name in names
        ]
    )
    kept = sum(keep(part[f"{name}_by"]).cast("int") for name in names)
    return F.slice(structs, 1, kept)


def _kind(customers: DataFrame, column: str) -> str:
    """How a reason shows an input's value: ``decimal`` (to :data:`VALUE_DECIMALS`),
    ``integral``, ``boolean`` or ``text`` (as it is)."""
    kind = customers.schema[column].dataType.typeName()
    if kind in ("double", "float"):
        return "decimal"
    if kind in ("byte", "short", "integer", "long"):
        return "integral"
    return "boolean" if kind == "boolean" else "text"


def explained_scores(
    model: Pipeline,
    customers: DataFrame,
    reasons: int,
    levers: int,
    horizon_days: int | None = None,
    actionable_levers: list[str] | tuple[str, ...] = ACTIONABLE_LEVERS,
) -> tuple[DataFrame, Observation]:
    """``customers`` with ``churn_probability`` and the reason columns (:data:`REASON_COLUMNS`),
    from one pandas UDF; and an ``Observation`` of the mean absolute contribution per input,
    filled by the action that writes the result (read it with :class:`GlobalImportance`).
    ``horizon_days``: the predictions' horizon, in the words of a reason that looks ahead;
    ``actionable_levers``: the inputs (shell patterns) a lever may be."""
    explainer = Explainer(model)
    features = explainer.inputs
    reasons, levers = min(reasons, len(features)), min(levers, len(features))
    columns = list(dict.fromkeys(["customer_id", *features, *phrase_context(features)]))
    columns = [c for c in columns if c in customers.columns]
    kinds = [_kind(customers, f) for f in features]
    explained = _explained_udf(
        explainer,
        columns,
        kinds,
        reasons,
        levers,
        horizon_days,
        actionable(features, actionable_levers),
    )
    # the UDF is the scoring's costliest step, and the table arrives in partitions as uneven as
    # its files (199k / 265k / 66k customers at 10M lines): one even share per core instead
    balanced = customers.repartition(executor_cores(customers.sparkSession))
    scored = balanced.withColumn("_explained", explained(*columns))
    observation = Observation("churn_reasons")
    part = F.col("_explained")
    observed = scored.observe(
        observation,
        F.count(F.lit(1)).alias("customers"),
        *[F.sum(part[f"magnitude_{i}"]).alias(f) for i, f in enumerate(features)],
    )
    up = [f"up_{i}" for i in range(reasons)]
    down = [f"down_{i}" for i in range(levers)]
    result = observed.select(
        *customers.columns,
        part["churn_probability"].alias("churn_probability"),
        _reason_structs(up, features, kinds, lambda c: c > 0).alias("churn_reasons"),
        _reason_structs(down, features, kinds, lambda c: c < 0).alias("retention_levers"),
        part["churn_reason_text"].alias("churn_reason_text"),
        part["retention_lever_text"].alias("retention_lever_text"),
        part["reasons_skipped"].alias("reasons_skipped"),
    )
    return result, observation


def without_reasons(scored: DataFrame) -> DataFrame:
    """A model that cannot be taken apart (a Spark ML model): the reason columns, null."""
    return scored.select(
        "*",
        F.lit(None).cast(REASON_TYPE).alias("churn_reasons"),
        F.lit(None).cast(REASON_TYPE).alias("retention_levers"),
        F.lit(None).cast("string").alias("churn_reason_text"),
        F.lit(None).cast("string").alias("retention_lever_text"),
        F.lit(None).cast("int").alias("reasons_skipped"),
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
            {"feature": name, "mean_abs_contribution": float(total or 0.0) / max(customers, 1)}
            for name, total in seen.items()
        ]
        features.sort(key=lambda f: -f["mean_abs_contribution"])
        return {**summary, "customers": customers, "observed": True, "features": features}
