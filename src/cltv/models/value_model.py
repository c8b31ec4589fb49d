"""``CustomerValueModel``: the fitted purchase model and Gamma-Gamma as one MLflow pyfunc model.

Customer lifetime value = margin x expected order value (Gamma-Gamma, Fader, Hardie & Lee 2005,
"RFM and CLV: Using Iso-Value Curves for Customer Base Analysis") x the purchases the purchase
model (BG/NBD, Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way"; MBG/NBD;
Pareto/NBD) expects over the horizon, discounted by month, as lifetimes'
``customer_lifetime_value`` counts them. Each value has a central interval over seeded draws
of both fits' parameters (:mod:`cltv.models.uncertainty`).

The same object values customers everywhere: the pipeline's ``predict_customer_value`` runs
:meth:`CustomerValueModel.value_batches` in Spark (``mapInPandas``), and MLflow's
``predict`` (``mlflow.pyfunc.load_model``, ``mlflow models serve``, Databricks Model Serving)
runs the same code on a pandas frame. It needs numpy, scipy, pandas and mlflow, not Spark.

Example (any Python with the model's requirements, no Spark):

.. code-block:: python

    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model("models:/cltv_value@champion")
    model.predict(pd.DataFrame({"frequency": [3], "recency": [20.0], "T": [40.0],
                                "monetary_value": [55.0]}))
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType
from scipy.special import expit

from cltv.models.bgnbd import BetaGeoModel, ModifiedBetaGeoModel
from cltv.models.gamma_gamma import GammaGammaModel, average_order_value
from cltv.models.pareto_nbd import ParetoNBDModel
from cltv.models.uncertainty import (
    LinearisedDraws,
    central_interval,
    parameter_draws,
    spend_draws,
)

# purchase models that can value customers, by the name their parameters have in ``cltv``
PURCHASE_MODELS = {"bgnbd": BetaGeoModel, "mbgnbd": ModifiedBetaGeoModel, "pnbd": ParetoNBDModel}
# time units in a month, as lifetimes' customer_lifetime_value counts them
MONTH_IN_UNITS = {"W": 4.345, "D": 30.0}
# a customer's history, in the fit's time unit: what the model takes
INPUT_COLUMNS = ("frequency", "recency", "T", "monetary_value")
VALUE_COLUMNS = ("p_alive", "expected_purchases", "expected_average_order_value", "clv")
# each of VALUE_COLUMNS with <column>_lower and <column>_upper: its central interval over the
# parameter draws; what ``predict`` returns
OUTPUT_COLUMNS = tuple(
    f"{column}{suffix}" for column in VALUE_COLUMNS for suffix in ("", "_lower", "_upper")
)
# what value_batches yields, as a Spark schema
VALUED_CUSTOMERS_SCHEMA = ", ".join(
    [
        "customer_id string, frequency long, recency double, T double, monetary_value double",
        *(f"{column} double" for column in OUTPUT_COLUMNS),
        "naive_clv double",
        # the batch's sum of CLV at each draw, on one row per batch (else null): the total's
        # interval, which is not a sum of the customers' bounds
        "clv_draw_sums array<double>",
    ]
)


def purchase_model(fit: dict[str, Any], name: str | None = None):
    """The fitted purchase model ``name`` of a fit (default: the one that values customers),
    ready to predict."""
    name = name or fit.get("purchase_model", "bgnbd")
    return PURCHASE_MODELS[name].from_params(fit[name])


def naive_rate(frequency: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """Repeat purchases per time unit so far: the rate a no-dropout model extrapolates."""
    return np.where(big_t > 0, frequency / np.where(big_t > 0, big_t, 1.0), 0.0)


def _purchase_terms(model, x, t_x, big_t, valuation: dict[str, Any], month: float) -> np.ndarray:
    """What the purchase model says about each customer, on scales where it is near linear in
    the log-parameters (see :class:`LinearisedDraws`): the log-odds of being alive, and the
    logs of the purchases expected over the horizon, and of the same discounted by month
    (each month's purchases / (1 + rate)^month), if alive. Multiplied by P(alive), the last
    two are the expected and discounted purchases."""
    months, rate = valuation["horizon_months"], valuation["discount_rate"]
    discounted = np.zeros(len(x))
    previous = np.zeros(len(x))
    for i in range(1, months + 1):
        cumulative = model.predict_purchases_if_alive(i * month, x, big_t)
        discounted += (cumulative - previous) / (1.0 + rate) ** i
        previous = cumulative
    return np.stack(
        [model.predict_log_odds_alive(x, t_x, big_t), np.log(previous), np.log(discounted)]
    )


def _expected_values(terms: np.ndarray, order_value: np.ndarray, margin: float) -> dict:
    """P(alive), the expected purchases and the discounted CLV from :func:`_purchase_terms`
    and the expected order value: at the estimate, or at every parameter draw alike."""
    p_alive = expit(terms[0])
    return {
        "p_alive": p_alive,
        "expected_purchases": p_alive * np.exp(terms[1]),
        "clv": margin * order_value * p_alive * np.exp(terms[2]),
    }


class InvalidCustomers(ValueError):
    """Input the model cannot value (a negative T, recency beyond T, ...); the message names
    the first offending row and column."""


class CustomerValueModel(mlflow.pyfunc.PythonModel):
    """The CLV model: the chosen purchase model and Gamma-Gamma at their estimates and at
    ``uncertainty.draws`` seeded parameter draws, with the valuation settings.

    ``fit`` is ``cltv_model_fit.json`` (``time_unit``, ``purchase_model``, each fitted model's
    parameters and covariance), ``naive`` the naive baseline (``cltv_naive_baseline.json``),
    ``valuation`` ``cltv.valuation`` (``horizon_months``, ``discount_rate``, ``margin``) and
    ``uncertainty`` ``cltv.uncertainty`` (``interval``, ``draws``, ``seed``).

    :meth:`predict` takes one row per customer: ``frequency`` (repeat purchase occasions),
    ``recency`` (first to last occasion) and ``T`` (first occasion to now), both in the fit's
    ``time_unit`` (``W``: weeks, ``D``: days), and ``monetary_value`` (mean repeat order value,
    0 without repeats): the columns of ``customer_summary``. It returns ``p_alive``,
    ``expected_purchases`` and ``expected_average_order_value`` over the horizon and the
    discounted ``clv``, each with ``_lower`` / ``_upper``.
    """

    def __init__(
        self,
        fit: dict[str, Any] | None = None,
        naive: dict[str, Any] | None = None,
        valuation: dict[str, Any] | None = None,
        uncertainty: dict[str, Any] | None = None,
    ) -> None:
        # empty when MLflow builds it from code; load_context then gives it its settings
        self.fit, self.naive = fit or {}, naive or {}
        self.valuation = (
            {key: valuation[key] for key in ("horizon_months", "discount_rate", "margin")}
            if valuation
            else {}
        )
        self.uncertainty = (
            {key: uncertainty[key] for key in ("interval", "draws", "seed")} if uncertainty else {}
        )
        self._draws: tuple | None = None

    def model_config(self) -> dict[str, Any]:
        """What MLflow stores with the model (``model_config``) to build it again."""
        return {
            "fit": self.fit,
            "naive": self.naive,
            "valuation": self.valuation,
            "uncertainty": self.uncertainty,
        }

    def load_context(self, context: Any) -> None:
        """Settings from the logged ``model_config`` (see :mod:`cltv.models.value_model_code`)."""
        if context.model_config:
            self.__init__(**context.model_config)

    # Spark ships the model to its Python workers pickled: the draws are rebuilt there from
    # the seed, not shipped
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_draws": None}

    @property
    def purchase_model_name(self) -> str:
        return self.fit.get("purchase_model", "bgnbd")

    @property
    def month(self) -> float:
        return MONTH_IN_UNITS[self.fit["time_unit"]]

    def _parameter_draws(self) -> tuple[LinearisedDraws, dict[str, np.ndarray]]:
        if self._draws is None:
            name, n, seed = (
                self.purchase_model_name,
                self.uncertainty["draws"],
                self.uncertainty["seed"],
            )
            draws = parameter_draws(PURCHASE_MODELS[name], self.fit[name], n, seed)
            self._draws = (
                LinearisedDraws(PURCHASE_MODELS[name], self.fit[name], draws),
                # independent fits: independent draws (a seed of its own)
                spend_draws(self.fit["gamma_gamma"], n, seed + 1),
            )
        return self._draws

    def settings(self) -> dict[str, Any]:
        """What the user chose rather than what was fitted: the time unit of its input, the
        valuation and the intervals. Part of the model: a champion with other settings values
        customers differently on the same fit (see :func:`cltv.promotion.challenge`)."""
        return {
            "time_unit": self.fit["time_unit"],
            **self.valuation,
            **{f"interval_{key}": value for key, value in self.uncertainty.items()},
        }

    def describe(self) -> dict[str, Any]:
        """What is logged beside the model: which models, the settings, the parameters."""
        name = self.purchase_model_name
        parameters = {
            name: {key: self.fit[name][key] for key in PURCHASE_MODELS[name].param_names},
            "gamma_gamma": {key: self.fit["gamma_gamma"][key] for key in ("p", "q", "gamma")},
        }
        return {"purchase_model": name, "parameters": parameters, **self.settings()}

    # ------------------------------------------------------------------ valuing
    def _values(self, batch: pd.DataFrame, table_columns: bool) -> pd.DataFrame:
        purchases, spend = self._parameter_draws()
        margin, level = self.valuation["margin"], self.uncertainty["interval"]
        x, t_x, big_t, m = (batch[c].to_numpy(float) for c in INPUT_COLUMNS)
        terms, term_draws = purchases(_purchase_terms, x, t_x, big_t, self.valuation, self.month)
        order_value = GammaGammaModel.from_params(
            self.fit["gamma_gamma"]
        ).predict_average_order_value(x, m)
        order_value_draws = average_order_value(
            *(spend[k][None, :] for k in ("p", "q", "population_mean")), x[:, None], m[:, None]
        )
        at_estimate = _expected_values(terms, order_value, margin)
        at_draws = _expected_values(term_draws, order_value_draws, margin)
        estimates = {
            "p_alive": (at_estimate["p_alive"], at_draws["p_alive"]),
            "expected_purchases": (
                at_estimate["expected_purchases"],
                at_draws["expected_purchases"],
            ),
            "expected_average_order_value": (order_value, order_value_draws),
            "clv": (at_estimate["clv"], at_draws["clv"]),
        }
        values = batch.copy()
        for column, (estimate, column_draws) in estimates.items():
            lower, upper = central_interval(column_draws, level)
            # the bounds enclose the estimate (they can miss it by rounding when the draws
            # hardly spread, e.g. P(alive) of 1 - 1e-17)
            values[column] = estimate
            values[f"{column}_lower"] = np.minimum(lower, estimate)
            values[f"{column}_upper"] = np.maximum(upper, estimate)
        if table_columns:  # what customer_cltv has besides predict's columns
            values["naive_clv"] = self._naive_clv(x, big_t, m)
            draw_sums = at_draws["clv"].sum(axis=0)
            values["clv_draw_sums"] = [list(draw_sums), *([None] * (len(batch) - 1))]
        _stop_on_invalid(values)
        return values

    def value_batches(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Batches of ``customer_id`` + :data:`INPUT_COLUMNS` valued as
        :data:`VALUED_CUSTOMERS_SCHEMA` (``mapInPandas``): the values and intervals, the naive
        CLV, and the CLV's sums over the batch at each draw."""
        for batch in batches:
            if not batch.empty:
                yield self._values(batch[["customer_id", *INPUT_COLUMNS]], table_columns=True)

    def score_batches(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Batches with :data:`INPUT_COLUMNS` (and any others, kept) plus ``clv`` and
        ``naive_clv`` at the parameters' estimates, without intervals: enough to rank
        customers (``mapInPandas``)."""
        model = purchase_model(self.fit)
        spend = GammaGammaModel.from_params(self.fit["gamma_gamma"])
        margin = self.valuation["margin"]
        for batch in batches:
            x, t_x, big_t, m = (batch[c].to_numpy(float) for c in INPUT_COLUMNS)
            terms = _purchase_terms(model, x, t_x, big_t, self.valuation, self.month)
            order_value = spend.predict_average_order_value(x, m)
            yield batch.assign(
                clv=_expected_values(terms, order_value, margin)["clv"],
                naive_clv=self._naive_clv(x, big_t, m),
            )

    def _naive_clv(self, x: np.ndarray, big_t: np.ndarray, m: np.ndarray) -> np.ndarray:
        """The naive baseline's CLV: the customer's repeat rate so far and own mean order
        value (the repeat customers' mean for one-time buyers), for the expected lifespan."""
        lifespan = min(
            self.valuation["horizon_months"], self.naive["expected_lifespan_months"] or math.inf
        )
        own_order_value = np.where(x > 0, m, self.naive["mean_repeat_order_value"])
        margin = self.valuation["margin"]
        return margin * own_order_value * naive_rate(x, big_t) * self.month * lifespan

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """:data:`OUTPUT_COLUMNS` for each row of ``model_input`` (see the class docstring);
        input it cannot value raises :class:`mlflow.exceptions.MlflowException` naming the
        row and column (a 400 from ``mlflow models serve``)."""
        try:
            histories = check_histories(pd.DataFrame(model_input))
        except InvalidCustomers as exc:
            raise mlflow.exceptions.MlflowException.invalid_parameter_value(str(exc)) from None
        if histories.empty:
            return pd.DataFrame(columns=list(OUTPUT_COLUMNS), dtype=float)
        return self._values(histories, table_columns=False)[list(OUTPUT_COLUMNS)]


def check_histories(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s :data:`INPUT_COLUMNS` as numbers, or :class:`InvalidCustomers` naming the
    first row and column that no customer history can have."""
    missing = [column for column in INPUT_COLUMNS if column not in frame.columns]
    if missing:
        raise InvalidCustomers(
            f"missing column(s) {', '.join(missing)}: each row needs {', '.join(INPUT_COLUMNS)}"
        )
    histories = frame[list(INPUT_COLUMNS)].copy()
    for column in INPUT_COLUMNS:
        numbers = pd.to_numeric(histories[column], errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.astype(float))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InvalidCustomers(
                f"row {row}: {column} = {_shown(histories[column].iloc[row])} is not a finite "
                "number"
            )
        histories[column] = numbers.astype(float)
    rules = [
        ("frequency", histories["frequency"] < 0, "must not be negative"),
        ("frequency", histories["frequency"] % 1 != 0, "must be a whole number of purchases"),
        ("recency", histories["recency"] < 0, "must not be negative"),
        ("T", histories["T"] < 0, "must not be negative"),
        ("recency", histories["recency"] > histories["T"], "must not exceed T"),
        (
            "recency",
            (histories["frequency"] == 0) & (histories["recency"] != 0),
            "must be 0 when frequency is 0",
        ),
        ("monetary_value", histories["monetary_value"] < 0, "must not be negative"),
    ]
    for column, bad, rule in rules:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InvalidCustomers(
                f"row {row}: {column} = {histories[column].iloc[row]:g} {rule}"
                + (f" ({histories['T'].iloc[row]:g})" if rule == "must not exceed T" else "")
            )
    histories["frequency"] = histories["frequency"].astype("int64")
    return histories


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _stop_on_invalid(values: pd.DataFrame) -> None:
    """No table gets a negative, NaN or infinite value: stop, naming the first customer."""
    numbers = values[list(OUTPUT_COLUMNS)].to_numpy()
    invalid = ~np.isfinite(numbers) | (numbers < 0)
    if invalid.any():
        row, column = np.argwhere(invalid)[0]
        customer = values.iloc[row]
        who = f"customer {customer['customer_id']}" if "customer_id" in values else f"row {row}"
        raise ValueError(
            f"{who} (frequency {customer['frequency']}, recency {customer['recency']}, T "
            f"{customer['T']}, monetary_value {customer['monetary_value']}): "
            f"{OUTPUT_COLUMNS[column]} = {numbers[row, column]}; no table is written with such "
            "a value (see cltv_model_fit.json)"
        )


def model_signature() -> ModelSignature:
    """Input: the summary's columns in the fit's time unit; output: the values and intervals.

    ``frequency`` is a whole number that may come as an integer or a float: JSON has one
    number type, so a CRM may send ``3.0``, while ``customer_summary`` holds integers. MLflow
    has no type for that. ``long`` would refuse ``3.0`` from Python and silently truncate
    ``2.5`` to 2 in ``mlflow models serve`` (its JSON parser casts to the schema). ``double``
    would refuse an int64 column. So the column is declared ``Any``, and
    :func:`check_histories` accepts a whole number and refuses a fraction, naming its row."""
    return ModelSignature(
        inputs=Schema(
            [ColSpec(AnyType(), "frequency")]
            + [ColSpec("double", column) for column in INPUT_COLUMNS[1:]]
        ),
        outputs=Schema([ColSpec("double", column) for column in OUTPUT_COLUMNS]),
    )
