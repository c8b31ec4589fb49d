"""The BG/NBD model of repeat purchasing in a non-contractual setting.

Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "'Counting Your Customers' the Easy Way:
An Alternative to the Pareto/NBD Model", Marketing Science 24(2), 275-284.

While alive, a customer buys at rate ``lambda ~ Gamma(r, alpha)``; after each repeat purchase
they drop out with probability ``p ~ Beta(a, b)``. A customer's history is summarised by
``frequency`` x (repeat purchases), ``recency`` t_x (time of the last one since the first) and
``T`` (time since the first purchase), all in one time unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import digamma, expit, gammaln, hyp2f1

from cltv.models.fitting import MaximumLikelihoodFitter


class BetaGeoModel(MaximumLikelihoodFitter):
    """BG/NBD fitted by weighted maximum likelihood, with ``predict_*`` for customers.

    ``fit`` takes one row per distinct (frequency, recency, T) with its count as the weight.
    Like ``lifetimes.BetaGeoFitter``, the objective is the mean negative log-likelihood plus
    ``penalizer * sum(params**2)``, optimised over log-parameters.

    Example:

    .. code-block:: python

        model = BetaGeoModel().fit(frequency, recency, T, weights)
        model.params_                       # {"r": ..., "alpha": ..., "a": ..., "b": ...}
        model.predict_purchases(12, frequency, recency, T)
    """

    param_names = ("r", "alpha", "a", "b")

    @staticmethod
    def log_likelihood(params: Sequence[float], data: tuple[np.ndarray, ...]):
        """Per-row log-likelihood (paper eq. 6) and its gradient in (r, alpha, a, b)."""
        r, alpha, a, b = params
        x, t_x, big_t = data
        repeat = x > 0
        common = (
            gammaln(r + x)
            - gammaln(r)
            + r * np.log(alpha)
            + gammaln(a + b)
            + gammaln(b + x)
            - gammaln(b)
            - gammaln(a + b + x)
        )
        # log of the two ways the history can end: still alive at T, or dropped out after t_x
        alive = -(r + x) * np.log(alpha + big_t)
        b_x = b + np.maximum(x, 1) - 1
        dropped = np.where(repeat, np.log(a) - np.log(b_x) - (r + x) * np.log(alpha + t_x), -np.inf)
        top = np.maximum(alive, dropped)
        ll = common + top + np.log(np.exp(alive - top) + np.exp(dropped - top))
        share_dropped = np.exp(dropped - (ll - common))
        share_alive = 1.0 - share_dropped
        grad = np.column_stack(
            [
                digamma(r + x)
                - digamma(r)
                + np.log(alpha)
                - share_alive * np.log(alpha + big_t)
                - share_dropped * np.log(alpha + t_x),
                r / alpha
                - share_alive * (r + x) / (alpha + big_t)
                - share_dropped * (r + x) / (alpha + t_x),
                digamma(a + b) - digamma(a + b + x) + share_dropped / a,
                digamma(a + b)
                + digamma(b + x)
                - digamma(b)
                - digamma(a + b + x)
                - share_dropped / b_x,
            ]
        )
        return ll, grad

    def fit(self, frequency, recency, T, weights=None) -> BetaGeoModel:
        return self._fit_data(_as_arrays(frequency, recency, T), weights)

    def _log_odds_dropped(self, frequency, recency, T) -> np.ndarray:
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        x, t_x, big_t = _as_arrays(frequency, recency, T)
        log_odds = (
            np.log(a)
            - np.log(b + np.maximum(x, 1) - 1)
            + (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
        )
        return np.where(x > 0, log_odds, -np.inf)

    def predict_probability_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive at T | history), paper eq. 11, as a logistic of the log-odds (no overflow)."""
        return expit(-self._log_odds_dropped(frequency, recency, T))

    def predict_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[purchases in (T, T + t] | history], paper eq. 10.

        The factor ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t)) is
        evaluated through Pfaff's transformation as 2F1(r+x, a-1; a+b+x-1; -t/(alpha+T)), whose
        second parameter stays small however many purchases a customer made.
        """
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        x, _, big_t = _as_arrays(frequency, recency, T)
        t = np.asarray(t, dtype=float)
        remaining = 1.0 - hyp2f1(r + x, a - 1.0, a + b + x - 1.0, -t / (alpha + big_t))
        expected_if_alive = (a + b + x - 1.0) / (a - 1.0) * remaining
        return expected_if_alive * self.predict_probability_alive(frequency, recency, T)

    def predict_no_purchase(self, t, frequency, recency, T) -> np.ndarray:
        """P(no purchase in (T, T + t] | history): dead, or alive and quiet; given alive, the
        rate's posterior is Gamma(r + x, alpha + T)."""
        r, alpha, _, _ = (self.params_[k] for k in self.param_names)
        x, _, big_t = _as_arrays(frequency, recency, T)
        p_alive = self.predict_probability_alive(frequency, recency, T)
        quiet = np.exp((r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + t)))
        return 1.0 - p_alive + p_alive * quiet


def _as_arrays(*columns) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(column, dtype=float) for column in columns)
