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
from typing import ClassVar, NamedTuple

import numpy as np
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1, polygamma
from scipy.stats import nbinom

from cltv.models.fitting import Levels, MaximumLikelihoodFitter

# predictions for |a - 1| below this interpolate between a = 1 -/+ it (eq. 10 is 0/0 at a = 1)
A_NEAR_ONE = 1e-4
_NO_DROPOUT = (
    "No dropout is detectable in this data (BG/NBD's a → 0): the period is too short to see "
    "customers leave. Customers are valued with the limiting NBD model, in which nobody drops "
    "out (P(alive) = 1), so expected purchases are an upper bound if some do leave."
)


class Histories(NamedTuple):
    """Customer histories as ``BetaGeoModel.log_likelihood`` takes them."""

    x: np.ndarray
    counts: Levels  # distinct x
    recencies: Levels  # distinct t_x
    ages: Levels  # distinct T


class BetaGeoModel(MaximumLikelihoodFitter):
    """BG/NBD fitted by weighted maximum likelihood, with ``predict_*`` for customers.

    ``fit`` takes one row per distinct (frequency, recency, T) with its count as the weight.
    The objective is the mean negative log-likelihood plus ``penalizer * sum(theta**2)`` over
    the unit-free coordinates ``log r, log(alpha / mean T), log a, log b`` (see
    :mod:`cltv.models.fitting`), so the fit does not depend on the time unit.

    When no dropout is detectable (``a`` runs to 0, or ``b`` to infinity) the fit is the
    limiting NBD model: ``a = 0``, ``b`` undefined (None), P(alive) = 1, and
    ``boundary_`` / ``note_`` say so.

    Example:

    .. code-block:: python

        model = BetaGeoModel().fit(frequency, recency, T, weights)
        model.params_                       # {"r": ..., "alpha": ..., "a": ..., "b": ...}
        model.predict_purchases(12, frequency, recency, T)
    """

    param_names = ("r", "alpha", "a", "b")
    param_offsets = (0.0, 0.0, 0.0, 0.0)
    # 1 when a customer may also drop out right after the first purchase (MBG/NBD)
    shift: ClassVar[int] = 0
    boundary_notes: ClassVar[dict[tuple[str, str], str]] = {
        ("a", "lower"): _NO_DROPOUT,
        ("b", "upper"): _NO_DROPOUT,
        ("a", "upper"): "Every customer seems to drop out with the same probability (a, b → ∞).",
        ("b", "lower"): "Nearly every customer seems to leave after one repeat purchase (b → 0).",
        ("r", "upper"): "Every customer seems to buy at the same rate (r, alpha → ∞).",
        ("alpha", "upper"): "Every customer seems to buy at the same rate (r, alpha → ∞).",
        ("r", "lower"): "Purchase rates are extremely uneven (r → 0).",
        ("alpha", "lower"): "Purchase rates are extremely uneven (alpha → 0).",
    }

    @staticmethod
    def prepare(frequency, recency, T) -> Histories:
        """The data ``log_likelihood`` takes: the columns and their distinct values."""
        x, t_x, big_t = _as_arrays(frequency, recency, T)
        return Histories(x, Levels(x), Levels(t_x), Levels(big_t))

    @classmethod
    def log_likelihood(cls, params: Sequence[float], data: Histories, weights=None):
        """Per-row log-likelihood (paper eq. 6) and its gradient in (r, alpha, a, b); given
        ``weights``, also the weighted sum of the per-row Hessians.

        The likelihood is a two-component mixture, alive at T (A) or dropped out after t_x
        (D): ll = common + log(e^A + e^D), so its gradient mixes the components' gradients by
        their posterior shares, and its Hessian adds their covariance,
        share_alive * share_dropped * (grad A - grad D)(grad A - grad D)'.
        Functions of x, t_x or T alone are evaluated once per distinct value. ``a = 0`` is the
        limiting NBD (nobody drops out; the a-derivatives are then undefined and unused).
        """
        r, alpha, a, b = params
        x, counts, recencies, ages = data
        d = cls.shift
        with np.errstate(divide="ignore", invalid="ignore"):
            log_alive_end = ages.map(lambda t: np.log(alpha + t))
            log_last = recencies.map(lambda t: np.log(alpha + t))
            log_b_x = counts.map(lambda k: np.log(b + np.maximum(k + d, 1) - 1))
            digamma_a_b_x = counts.map(lambda k: digamma(a + b + k + d))
            common = counts.map(
                lambda k: gammaln(r + k) + gammaln(b + k + d) - gammaln(a + b + k + d)
            ) + (r * np.log(alpha) - gammaln(r) + gammaln(a + b) - gammaln(b))
            # log of the two ways the history can end: still alive at T, or dropped out after
            # the last purchase at t_x (only after a repeat purchase)
            alive = -(r + x) * log_alive_end
            dropped = np.where(cls._can_drop(x), np.log(a) - log_b_x - (r + x) * log_last, -np.inf)
            log_odds = dropped - alive
            small = np.exp(-np.abs(log_odds))  # in [0, 1]: no overflow either way
            ll = common + np.maximum(alive, dropped) + np.log1p(small)
            share_dropped = np.where(log_odds > 0, 1.0, small) / (1.0 + small)
            share_alive = 1.0 - share_dropped
            inverse_end = ages.map(lambda t: 1.0 / (alpha + t))
            inverse_last = recencies.map(lambda t: 1.0 / (alpha + t))
            inverse_b_x = np.exp(-log_b_x)
            digamma_a_b = digamma(a + b)
            grad = np.column_stack(
                [
                    counts.map(lambda k: digamma(r + k))
                    - digamma(r)
                    + np.log(alpha)
                    - share_alive * log_alive_end
                    - share_dropped * log_last,
                    r / alpha
                    - (r + x) * (share_alive * inverse_end + share_dropped * inverse_last),
                    digamma_a_b - digamma_a_b_x + share_dropped / a,
                    digamma_a_b
                    - digamma(b)
                    + counts.map(lambda k: digamma(b + k + d))
                    - digamma_a_b_x
                    - share_dropped * inverse_b_x,
                ]
            )
            if weights is None:
                return ll, grad
            trigamma_a_b_x = counts.map(lambda k: polygamma(1, a + b + k + d))
            # grad A - grad D, and the second derivatives of common, A and D
            difference = (
                log_last - log_alive_end,
                (r + x) * (inverse_last - inverse_end),
                np.full_like(x, -1.0 / a),
                inverse_b_x,
            )
            mixing = weights * share_alive * share_dropped
            hessian = np.array(
                [[mixing @ (difference[i] * difference[j]) for j in range(4)] for i in range(4)]
            )
            trigamma_a_b = polygamma(1, a + b)
            weight_sum = weights.sum()
            hessian[0, 0] += weights @ counts.map(lambda k: polygamma(1, r + k)) - weight_sum * (
                polygamma(1, r)
            )
            r_alpha = weight_sum / alpha - weights @ (
                share_alive * inverse_end + share_dropped * inverse_last
            )
            hessian[0, 1] += r_alpha
            hessian[1, 0] += r_alpha
            hessian[1, 1] += -weight_sum * r / alpha**2 + weights @ (
                (r + x) * (share_alive * inverse_end**2 + share_dropped * inverse_last**2)
            )
            a_b = weight_sum * trigamma_a_b - weights @ trigamma_a_b_x
            hessian[2, 2] += a_b - (weights @ share_dropped) / a**2
            hessian[2, 3] += a_b
            hessian[3, 2] += a_b
            hessian[3, 3] += (
                a_b
                + weights @ counts.map(lambda k: polygamma(1, b + k + d))
                - weight_sum * polygamma(1, b)
                + weights @ (share_dropped * inverse_b_x**2)
            )
        return ll, grad, hessian

    def fit(self, frequency, recency, T, weights=None) -> BetaGeoModel:
        return self._fit_data(_as_arrays(frequency, recency, T), weights)

    def _scales(self, columns, weights) -> np.ndarray:
        mean_t = float(weights @ columns[2]) / weights.sum()
        return np.array([1.0, mean_t if mean_t > 0 else 1.0, 1.0, 1.0])

    def _limit(self, lower, upper):
        a, b = 2, 3
        if lower[a] or (upper[b] and not upper[a]):
            return np.array([0.0, 0.0, -np.inf, np.nan])  # NBD: refit r and alpha
        return None

    @classmethod
    def _can_drop(cls, x: np.ndarray) -> np.ndarray:
        """Who may have dropped out after the last purchase: repeat buyers (BG/NBD), or
        everyone (MBG/NBD)."""
        return np.ones_like(x, dtype=bool) if cls.shift else x > 0

    @property
    def no_dropout(self) -> bool:
        """The limiting NBD model: nobody drops out."""
        return self.params_["a"] == 0.0

    def _log_odds_dropped(self, frequency, recency, T) -> np.ndarray:
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        x, t_x, big_t = _as_arrays(frequency, recency, T)
        if self.no_dropout:
            return np.full(np.broadcast(x, t_x, big_t).shape, -np.inf)
        log_odds = (
            np.log(a)
            - np.log(b + np.maximum(x + self.shift, 1) - 1)
            + (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
        )
        return np.where(self._can_drop(x), log_odds, -np.inf)

    def predict_log_odds_alive(self, frequency, recency, T) -> np.ndarray:
        """log P(alive at T | history) - log P(dropped out): +inf for who cannot have left."""
        return -self._log_odds_dropped(frequency, recency, T)

    def predict_probability_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive at T | history), paper eq. 11, as a logistic of the log-odds (no overflow)."""
        return expit(self.predict_log_odds_alive(frequency, recency, T))

    def predict_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[purchases in (T, T + t] | history], paper eq. 10: P(alive) times
        :meth:`predict_purchases_if_alive`."""
        return self.predict_purchases_if_alive(t, frequency, T) * self.predict_probability_alive(
            frequency, recency, T
        )

    def predict_purchases_if_alive(self, t, frequency, T) -> np.ndarray:
        """E[purchases in (T, T + t] | x purchases by T, alive at T]; recency does not enter.

        The factor ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t)) is
        evaluated through Euler's transformation as
        (1 + t/(alpha+T))^(1-a) 2F1(a+b-1-r, a-1; a+b+x-1; t/(alpha+T+t)): neither of its first
        two parameters grows with the customer's purchases and its argument stays in [0, 1).
        (The paper's form, and Pfaff's 2F1(r+x, a-1; a+b+x-1; -t/(alpha+T)), overflow in
        scipy for a heavy buyer with a short history and a long horizon.)
        """
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        x, big_t, t = _as_arrays(frequency, T, t)
        b = b + self.shift if b is not None else b  # MBG/NBD: the BG/NBD formula at b + 1
        if self.no_dropout:  # the NBD: the posterior mean rate (r + x) / (alpha + T), for t
            return np.broadcast_to((r + x) * t / (alpha + big_t), np.broadcast(x, big_t, t).shape)

        def expected_if_alive(a):
            factor = np.exp((1.0 - a) * np.log1p(t / (alpha + big_t)))
            series = hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, t / (alpha + big_t + t))
            return (a + b + x - 1.0) / (a - 1.0) * (1.0 - factor * series)

        if abs(a - 1.0) < A_NEAR_ONE:
            # 0/0 at a = 1; the expectation is smooth in a: interpolate across
            below, above = expected_if_alive(1.0 - A_NEAR_ONE), expected_if_alive(1.0 + A_NEAR_ONE)
            expected = below + (above - below) * (a - 1.0 + A_NEAR_ONE) / (2 * A_NEAR_ONE)
        else:
            expected = expected_if_alive(a)
        if not np.isfinite(expected).all():
            # a and b run off together (a + b of 1e4 and more) when everyone has the same
            # dropout chance, and the series fails; Beta(a, b + x) is then the point mass at
            # p = a / (a + b + x), and the window's purchases are the smaller of the Poisson
            # count N and a Geometric(p) lifetime: E = (1 - E[(1 - p)^N]) / p, through N's
            # generating function; the series converges to it as 1 / (a + b).
            p = a / (a + b + x)
            log_quiet = (r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + t * p))
            expected = np.where(np.isfinite(expected), expected, -np.expm1(log_quiet) / p)
        return expected

    def predict_no_purchase(self, t, frequency, recency, T) -> np.ndarray:
        """P(no purchase in (T, T + t] | history): dead, or alive and quiet; given alive, the
        rate's posterior is Gamma(r + x, alpha + T)."""
        r, alpha, _, _ = (self.params_[k] for k in self.param_names)
        x, _, big_t = _as_arrays(frequency, recency, T)
        p_alive = self.predict_probability_alive(frequency, recency, T)
        quiet = np.exp((r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + t)))
        return 1.0 - p_alive + p_alive * quiet

    def predict_purchase_count_cdf(self, n, t, frequency, recency, T) -> np.ndarray:
        """P(at most n purchases in (T, T + t] | history), for n = -1 (0), 0, 1, ...

        Dead, a customer buys nothing. Alive, the history leaves the rate Gamma(r + x,
        alpha + T) and the dropout chance Beta(a, b + x) (b + x + 1 for MBG/NBD, which counts
        one more chance), independently. The window's purchases are the smaller of a
        Poisson(lambda t) count and the number of purchases up to the one after which the
        customer drops out, so P(more than n | alive) = P(NB > n) B(a, b + x + n) / B(a, b + x),
        NB the Gamma-Poisson mixture of the window's count. Summed over n it is
        :meth:`predict_purchases`.
        """
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        x, _, big_t = _as_arrays(frequency, recency, T)
        n = np.asarray(n, dtype=float)
        count = np.maximum(n, 0.0)
        more = window_count_survival(count, r + x, alpha + big_t, t)
        if not self.no_dropout:
            opportunities = b + x + self.shift
            more = more * np.exp(betaln(a, opportunities + count) - betaln(a, opportunities))
        p_alive = self.predict_probability_alive(frequency, recency, T)
        return np.where(n < 0, 0.0, 1.0 - p_alive * more)


def window_count_survival(n, shape, rate, t) -> np.ndarray:
    """P(N > n) for N Poisson(lambda t) with lambda ~ Gamma(shape, rate): a negative binomial."""
    return nbinom.sf(n, shape, rate / (rate + np.asarray(t, dtype=float)))


def _as_arrays(*columns) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(column, dtype=float) for column in columns)


class ModifiedBetaGeoModel(BetaGeoModel):
    """MBG/NBD: BG/NBD in which a customer may also drop out right after the first purchase,
    so a one-time buyer who has been quiet for long is not assumed alive.

    Batislam, E. P., Denizel, M. and Filiztekin, A. (2007), "Empirical validation and comparison
    of models for customer base analysis", International Journal of Research in Marketing 24(3),
    201-209. The likelihood is BG/NBD's with the dropout chances counted from x + 1 purchases
    (``shift`` = 1) and the dropped-out branch open to every customer; E[X(t)] is BG/NBD's at
    b + 1. Same parameters (r, alpha, a, b), fitting, boundaries and limit (a -> 0: the NBD).
    """

    shift: ClassVar[int] = 1
