"""The Gamma-Gamma model of spend per transaction.

Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "RFM and CLV: Using Iso-Value Curves for
Customer Base Analysis", Journal of Marketing Research 42(4), 415-430; and Fader, P. S. and
Hardie, B. G. S. (2013), "The Gamma-Gamma Model of Monetary Value" (note).

A customer's transaction values are Gamma(p, nu) with ``nu ~ Gamma(q, gamma)`` across
customers. Fitted on repeat customers only (frequency x > 0) with their mean repeat spend m_x;
the model assumes spend is independent of purchase frequency, which the pipeline checks.

Fitted with q > 1 (as lifetimes' ``q_constraint``), so the population mean spend
``p gamma / (q - 1)`` is finite and every expected order value is positive.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np
from scipy.special import digamma, gammaln, polygamma

from cltv.models.fitting import Levels, MaximumLikelihoodFitter


class Spends(NamedTuple):
    """Repeat customers' spend as ``GammaGammaModel.log_likelihood`` takes it."""

    x: np.ndarray
    m: np.ndarray
    log_x: np.ndarray
    log_m: np.ndarray
    counts: Levels  # distinct x


class GammaGammaModel(MaximumLikelihoodFitter):
    """Gamma-Gamma fitted by weighted maximum likelihood, ``predict_average_order_value``.

    The objective's penalty is on ``log p, log(q - 1), log(gamma / mean spend)`` (see
    :mod:`cltv.models.fitting`): the fit is invariant to the currency. When spend is too
    heavy-tailed for a finite population mean (q runs to 1), ``population_mean_`` is the
    observed mean repeat spend instead, and ``boundary_`` / ``note_`` say so.

    Example:

    .. code-block:: python

        repeat = summary[summary.frequency > 0]
        model = GammaGammaModel().fit(repeat.frequency, repeat.monetary_value)
        model.predict_average_order_value(repeat.frequency, repeat.monetary_value)
    """

    param_names = ("p", "q", "gamma")
    param_offsets = (0.0, 1.0, 0.0)
    boundary_notes: ClassVar[dict[tuple[str, str], str]] = {
        ("q", "lower"): (
            "Spend is too heavy-tailed for a finite mean order value (Gamma-Gamma's q → 1): "
            "one-time buyers are valued at the observed mean repeat order value, and repeat "
            "customers at their own mean."
        ),
        ("p", "upper"): "Each customer spends almost the same on every order (p → ∞).",
        ("p", "lower"): "Order values vary extremely within each customer (p → 0).",
        ("q", "upper"): "Customers' typical order values hardly differ (q, gamma → ∞).",
        ("gamma", "upper"): "Customers' typical order values hardly differ (q, gamma → ∞).",
        ("gamma", "lower"): "Customers' typical order values differ extremely (gamma → 0).",
    }

    @staticmethod
    def prepare(frequency, monetary_value) -> Spends:
        """The data ``log_likelihood`` takes: the columns, their logs and the distinct x."""
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        return Spends(x, m, np.log(x), np.log(m), Levels(x))

    @staticmethod
    def log_likelihood(params, data: Spends, weights=None):
        """Per-row log-likelihood of the mean spend m_x over x transactions and its gradient
        in (p, q, gamma); given ``weights``, also the weighted sum of the per-row Hessians.
        Functions of x alone are evaluated once per distinct x."""
        p, q, gamma = params
        x, m, log_x, log_m = data.x, data.m, data.log_x, data.log_m
        count_terms = data.counts.map(lambda k: gammaln(p * k + q) - gammaln(p * k))
        digamma_px_q = data.counts.map(lambda k: digamma(p * k + q))
        digamma_px = data.counts.map(lambda k: digamma(p * k))
        px = p * x
        total = x * m + gamma
        log_total = np.log(total)
        ll = (
            count_terms
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1) * log_m
            + px * log_x
            - (px + q) * log_total
        )
        grad = np.column_stack(
            [
                x * (digamma_px_q - digamma_px + log_m + log_x - log_total),
                digamma_px_q - digamma(q) + np.log(gamma) - log_total,
                q / gamma - (px + q) / total,
            ]
        )
        if weights is None:
            return ll, grad
        trigamma_px_q = data.counts.map(lambda k: polygamma(1, p * k + q))
        trigamma_px = data.counts.map(lambda k: polygamma(1, p * k))
        weighted_x = weights * x
        p_p = weighted_x @ (x * (trigamma_px_q - trigamma_px))
        p_q = weighted_x @ trigamma_px_q
        p_gamma = -weighted_x @ (1.0 / total)
        q_q = weights @ trigamma_px_q - weights.sum() * polygamma(1, q)
        q_gamma = weights.sum() / gamma - weights @ (1.0 / total)
        gamma_gamma = -weights.sum() * q / gamma**2 + weights @ ((px + q) / total**2)
        hessian = np.array(
            [[p_p, p_q, p_gamma], [p_q, q_q, q_gamma], [p_gamma, q_gamma, gamma_gamma]]
        )
        return ll, grad, hessian

    def fit(self, frequency, monetary_value, weights=None) -> GammaGammaModel:
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        if ((x <= 0) | (m <= 0)).any():
            raise ValueError("Gamma-Gamma is fitted on repeat customers: frequency and spend > 0")
        self._fit_data((x, m), weights)
        p, q, gamma = (self.params_[k] for k in self.param_names)
        if "q → 1" in self.boundary_:
            self.population_mean_ = float(self.scales_[2])  # the observed mean repeat spend
        else:
            self.population_mean_ = p * gamma / (q - 1.0)
        return self

    def _scales(self, columns, weights) -> np.ndarray:
        # gamma's unit: the weighted mean repeat spend
        return np.array([1.0, 1.0, float(weights @ columns[1]) / weights.sum()])

    def _set_limit_values(self, summary) -> None:
        p, q, gamma = (self.params_[k] for k in self.param_names)
        self.population_mean_ = float(summary.get("population_mean") or p * gamma / (q - 1.0))

    def summary(self) -> dict:
        return {**super().summary(), "population_mean": self.population_mean_}

    def predict_average_order_value(self, frequency, monetary_value) -> np.ndarray:
        """E[spend per transaction | x, m_x] = w * population mean + (1 - w) * m_x with
        w = (q - 1) / (p x + q - 1): the population mean p gamma / (q - 1) when x = 0."""
        p, q, _ = (self.params_[k] for k in self.param_names)
        return average_order_value(p, q, self.population_mean_, frequency, monetary_value)


def average_order_value(p, q, population_mean, frequency, monetary_value) -> np.ndarray:
    """Gamma-Gamma's E[spend per transaction | x, m_x] for parameters and data that broadcast
    together (one parameter set per column evaluates many draws at once)."""
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary_value, dtype=float)
    prior_weight = (q - 1.0) / (p * x + q - 1.0)
    return prior_weight * population_mean + (1.0 - prior_weight) * m
