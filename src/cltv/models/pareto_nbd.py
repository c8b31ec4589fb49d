"""The Pareto/NBD model of repeat purchasing in a non-contractual setting.

Schmittlein, D. C., Morrison, D. G. and Colombo, R. (1987), "Counting Your Customers: Who Are
They and What Will They Do Next?", Management Science 33(1), 1-24; the likelihood and
conditional expectation as derived in Fader, P. S. and Hardie, B. G. S. (2005), "A Note on
Deriving the Pareto/NBD Model and Related Expressions".

While alive, a customer buys at rate ``lambda ~ Gamma(r, alpha)``; their lifetime is
exponential with rate ``mu ~ Gamma(s, beta)``, so they may leave at any moment, also before a
repeat purchase. Histories are BG/NBD's: ``frequency`` x, ``recency`` t_x, ``T``.

Numerics. Fader & Hardie write the dropped-out part of the likelihood with Gauss
hypergeometric functions, as a difference of two terms at t_x and T; for heavy buyers and long
histories the functions are hard to evaluate (scipy's ``hyp2f1`` loses accuracy when its
parameters are large or ``c - a - b`` is near an integer) and the difference cancels. Here the
same quantity is kept in its integral form (their eq. 17 before integrating),

    L = Gamma(r+x) alpha^r beta^s / Gamma(r) * [ (alpha+T)^-(r+x) (beta+T)^-s
        + s * int_{t_x}^{T} (alpha+tau)^-(r+x) (beta+tau)^-(s+1) dtau ],

the integral over the moment tau at which the customer left, and integrated by a fixed
Gauss-Legendre rule (``power_integral``) in a variable that turns the integrand's steep power
law near the smaller of alpha, beta and its decay after into smooth functions; the rule is
checked against adaptive quadrature at 1e-7 on parameters spanning twelve orders of magnitude.
The gradient and Hessian follow from the same nodes: the log-likelihood is a mixture over
"alive at T" and "left at tau", so its derivatives are posterior means and covariances of the
components' derivatives (as for BG/NBD in :mod:`cltv.models.bgnbd`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.special import digamma, expit, gammaln, polygamma

from cltv.models.bgnbd import BetaGeoModel, Histories, _as_arrays, window_count_survival
from cltv.models.fitting import MaximumLikelihoodFitter

# the integrand is cut where it has fallen below e^-TAIL of its start (bounded remainder)
TAIL = 60.0
# Gauss-Legendre panels graded geometrically towards both ends of the range: GRADED_LEVELS
# panels per side, each RATIO times wider than the previous, POINTS nodes per panel. A ratio
# of 4 missed 1e-7 by up to 1e-5 where the smaller rate is ~1e-4 of the larger (hypothesis
# found alpha 30, beta 0.0037, p 10, q 0.25); 2 keeps the 48 nodes and stays below 3e-8 on a
# grid of 6,000 parameter sets at the bounds of the test's and 2e-9 on 4,500 random ones
GRADED_LEVELS, RATIO, POINTS = 3, 2.0, 8
# the variable below is near-affine when alpha and beta are this many log units apart or closer
FLAT = 1e3
# rows evaluated together: bounds the (rows, nodes) arrays of the likelihood to a few MB each
CHUNK_ROWS = 8192

_NO_DROPOUT = (
    "No dropout is detectable in this data (Pareto/NBD's s → 0): the period is too short to "
    "see customers leave. Customers are valued with the limiting NBD model, in which nobody "
    "drops out (P(alive) = 1), so expected purchases are an upper bound if some do leave."
)


def _graded_rule() -> tuple[np.ndarray, np.ndarray]:
    points, weights = leggauss(POINTS)
    half = 0.5 * RATIO ** -np.arange(GRADED_LEVELS - 1, -1, -1.0)
    edges = np.concatenate([[0.0], half, 1.0 - half[::-1][1:], [1.0]])
    low, width = edges[:-1, None], np.diff(edges)[:, None]
    return (low + width * (1 + points) / 2).ravel(), (width * weights / 2).ravel()


_NODES, _WEIGHTS = _graded_rule()


def power_integral(alpha, p, beta, q, low, high):
    """Nodes for ``int_low^high (alpha+tau)^-p (beta+tau)^-q dtau`` (p + q > 1, all >= 0).

    Returns ``(log(alpha+tau), log(beta+tau), log_weight)``, each (rows, nodes): the integral
    is ``sum(exp(log_weight))`` and an integral of the same integrand times g(tau) is
    ``sum(exp(log_weight) * g(tau))``. Rows with ``high == low`` have weights 0.

    With M = max(alpha, beta), m = min and y' = log((M+tau)/(M+low)), the integrand is
    e^{-(p+q-1) y'} times a factor (m+tau)^-(exponent of m) that is a power law in
    log(c + y') with c = log((M+low)/(M-m)), steep when m + low is much smaller than M. Nodes
    are Gauss-Legendre in z = log(c + y'), graded towards both ends, over the range where the
    integrand has not yet fallen by e^-TAIL (the cut-off remainder is below e^-TAIL times the
    kept part: both factors decrease).
    """
    alpha, beta = np.asarray(alpha, float), np.asarray(beta, float)
    p, q = np.asarray(p, float), np.asarray(q, float)
    low, high = np.asarray(low, float), np.asarray(high, float)
    alpha_larger = alpha >= beta
    big, small = np.maximum(alpha, beta), np.minimum(alpha, beta)
    power_big = np.where(alpha_larger, p, q)
    power_small = np.where(alpha_larger, q, p)
    decay = p + q - 1.0
    start = big + low
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        cut = np.minimum(np.log1p((high - low) / start), TAIL / decay)
        # where the small factor alone has fallen by e^-TAIL, unless the large one rises enough
        # in the meantime to spoil the bound
        steep = TAIL / (power_small - 1.0)
        kappa = (small + low) / start
        steep_cut = np.log1p(kappa * np.expm1(np.minimum(steep, 700.0)))
        usable = (power_small > 1.0) & (steep < 700.0)
        usable &= (power_small - 1.0) * steep - power_big * steep_cut >= TAIL / 2
        cut = np.where(usable, np.minimum(cut, steep_cut), cut)
        c = np.minimum(np.log1p((small + low) / (big - small)), FLAT)
        span = np.log1p(cut / c)
        offset = span[..., None] * _NODES
        y = c[..., None] * np.expm1(offset)  # y' at the nodes
        log_big = np.log(start)[..., None] + y
        tau = low[..., None] + start[..., None] * np.expm1(y)
        log_small = np.log(small[..., None] + tau)
        # dtau = (M + tau) dy', dy' = c e^z dz
        log_weight = (
            (1.0 - power_big[..., None]) * log_big
            - power_small[..., None] * log_small
            + np.log(c)[..., None]
            + offset
            + np.log(span[..., None] * _WEIGHTS)
        )
    # a zero-length range (span 0) has no weight; NaN from 0 * inf there too
    log_weight[~(log_weight < np.inf)] = -np.inf
    if alpha_larger.ndim == 0:  # scalar parameters, as in a fit: no per-row choice to make
        if alpha_larger:
            return log_big, log_small, log_weight
        return log_small, log_big, log_weight
    log_alpha = np.where(alpha_larger[..., None], log_big, log_small)
    log_beta = np.where(alpha_larger[..., None], log_small, log_big)
    return log_alpha, log_beta, log_weight


def _log_sum_exp(values: np.ndarray) -> np.ndarray:
    """log(sum(exp(values))) along the last axis; -inf for a row of zero weights."""
    top = np.max(values, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(values - top).sum(axis=-1)) + top[..., 0]


class ParetoNBDModel(MaximumLikelihoodFitter):
    """Pareto/NBD fitted by weighted maximum likelihood, with ``predict_*`` for customers.

    Same shape as :class:`cltv.models.BetaGeoModel`: ``fit`` takes the distinct
    (frequency, recency, T) rows and their counts; the coordinates are
    ``log r, log(alpha / mean T), log s, log(beta / mean T)``. When no dropout is detectable
    (``s`` runs to 0, or ``beta`` to infinity) the fit is the limiting NBD model: ``s = 0``,
    ``beta`` undefined (None), P(alive) = 1.

    Example:

    .. code-block:: python

        model = ParetoNBDModel().fit(frequency, recency, T, weights)
        model.params_                       # {"r": ..., "alpha": ..., "s": ..., "beta": ...}
        model.predict_purchases(12, frequency, recency, T)
    """

    param_names = ("r", "alpha", "s", "beta")
    param_offsets = (0.0, 0.0, 0.0, 0.0)
    boundary_notes: ClassVar[dict[tuple[str, str], str]] = {
        ("s", "lower"): _NO_DROPOUT,
        ("beta", "upper"): _NO_DROPOUT,
        ("s", "upper"): "Every customer seems to drop out at the same rate (s, beta → ∞).",
        ("beta", "lower"): "Lifetimes are extremely uneven (beta → 0).",
        **{
            key: note
            for key, note in BetaGeoModel.boundary_notes.items()
            if key[0] in ("r", "alpha")
        },
    }

    prepare = staticmethod(BetaGeoModel.prepare)

    @staticmethod
    def log_likelihood(params: Sequence[float], data: Histories, weights=None):
        """Per-row log-likelihood and its gradient in (r, alpha, s, beta); given ``weights``,
        also the weighted sum of the per-row Hessians. ``s = 0`` is the limiting NBD (the
        s- and beta-derivatives are then undefined and unused)."""
        r, alpha, s, beta = params
        x, counts, recencies, ages = data
        big_t = ages.values[ages.index]
        t_x = recencies.values[recencies.index]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_alpha_end = ages.map(lambda t: np.log(alpha + t))
            common = counts.map(lambda k: gammaln(r + k)) - gammaln(r) + r * np.log(alpha)
            grad_common = [
                counts.map(lambda k: digamma(r + k)) - digamma(r) + np.log(alpha),
                np.full_like(x, r / alpha),
            ]
            if s == 0:  # nobody leaves: the NBD, whose one component is "alive at T"
                inverse_end = np.exp(-log_alpha_end)
                ll = common - (r + x) * log_alpha_end
                nan = np.full_like(x, np.nan)
                mean_grad = np.column_stack([-log_alpha_end, -(r + x) * inverse_end, nan, nan])
                hessian = np.full((4, 4), np.nan)
                hessian[:2, :2] = 0.0
                if weights is not None:
                    hessian[0, 1] = -weights @ inverse_end
                    hessian[1, 1] = weights @ ((r + x) * inverse_end**2)
                dropout_grad = (nan, nan)
            else:
                log_beta_end = ages.map(lambda t: np.log(beta + t))
                ll = common + s * np.log(beta)
                mean_grad = np.empty((len(x), 4))
                hessian = np.zeros((4, 4))
                # rows in chunks: each holds (rows, nodes) arrays
                for rows in (slice(i, i + CHUNK_ROWS) for i in range(0, len(x), CHUNK_ROWS)):
                    log_total, mean_grad[rows], part = _mixture(
                        (r, alpha, s, beta),
                        x[rows],
                        t_x[rows],
                        big_t[rows],
                        log_alpha_end[rows],
                        log_beta_end[rows],
                        None if weights is None else weights[rows],
                    )
                    ll[rows] += log_total
                    hessian += part
                dropout_grad = (np.full_like(x, np.log(beta)), np.full_like(x, s / beta))
            grad = mean_grad + np.column_stack([*grad_common, *dropout_grad])
            if weights is None:
                return ll, grad
            # the second derivatives of the common part
            weight_sum = weights.sum()
            hessian[0, 0] += weights @ counts.map(lambda k: polygamma(1, r + k)) - weight_sum * (
                polygamma(1, r)
            )
            hessian[0, 1] += weight_sum / alpha
            hessian[1, 1] += -weight_sum * r / alpha**2
            if s > 0:
                hessian[2, 3] += weight_sum / beta
                hessian[3, 3] += -weight_sum * s / beta**2
            hessian[1, 0] = hessian[0, 1]
            hessian[3, 2] = hessian[2, 3]
        return ll, grad, hessian

    def fit(self, frequency, recency, T, weights=None) -> ParetoNBDModel:
        return self._fit_data(_as_arrays(frequency, recency, T), weights)

    def _scales(self, columns, weights) -> np.ndarray:
        mean_t = float(weights @ columns[2]) / weights.sum()
        unit = mean_t if mean_t > 0 else 1.0
        return np.array([1.0, unit, 1.0, unit])

    def _limit(self, lower, upper):
        s, beta = 2, 3
        if lower[s] or (upper[beta] and not upper[s]):
            return np.array([0.0, 0.0, -np.inf, np.nan])  # NBD: refit r and alpha
        return None

    @property
    def no_dropout(self) -> bool:
        """The limiting NBD model: nobody drops out."""
        return self.params_["s"] == 0.0

    def _log_odds_left(self, frequency, recency, T) -> np.ndarray:
        """log P(left before T | history) - log P(alive at T | history)."""
        r, alpha, s, beta = (self.params_[k] for k in self.param_names)
        x, t_x, big_t = np.broadcast_arrays(*_as_arrays(frequency, recency, T))
        if self.no_dropout:
            return np.full(x.shape, -np.inf)
        *_, log_weight = power_integral(alpha, r + x, beta, s + 1.0, t_x, big_t)
        alive = -(r + x) * np.log(alpha + big_t) - s * np.log(beta + big_t)
        return np.log(s) + _log_sum_exp(log_weight) - alive

    def predict_log_odds_alive(self, frequency, recency, T) -> np.ndarray:
        """log P(alive at T | history) - log P(left before T)."""
        return -self._log_odds_left(frequency, recency, T)

    def predict_probability_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive at T | history) (Fader & Hardie 2005, eq. 18)."""
        return expit(self.predict_log_odds_alive(frequency, recency, T))

    def predict_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[purchases in (T, T + t] | history] (Fader & Hardie 2005, eq. 22): P(alive) times
        :meth:`predict_purchases_if_alive`."""
        return self.predict_purchases_if_alive(t, frequency, T) * self.predict_probability_alive(
            frequency, recency, T
        )

    def predict_purchases_if_alive(self, t, frequency, T) -> np.ndarray:
        """E[purchases in (T, T + t] | x purchases by T, alive at T]:
        (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)], with the bracket
        over (s - 1) through expm1 (its limit at s = 1 is log((beta+T+t)/(beta+T)))."""
        r, alpha, s, beta = (self.params_[k] for k in self.param_names)
        x, big_t, t = _as_arrays(frequency, T, t)
        if self.no_dropout:
            return np.broadcast_to((r + x) * t / (alpha + big_t), np.broadcast(x, big_t, t).shape)
        log_ratio = np.log1p(t / (beta + big_t))
        if s == 1.0:
            lifetime = log_ratio
        else:
            lifetime = -np.expm1(-(s - 1.0) * log_ratio) / (s - 1.0)
        return (r + x) * (beta + big_t) / (alpha + big_t) * lifetime

    def predict_no_purchase(self, t, frequency, recency, T) -> np.ndarray:
        """P(no purchase in (T, T + t] | history).

        Given alive at T with rates lambda, mu, the first purchase comes before the end of
        the lifetime and of the window with probability
        int_0^t lambda e^-(lambda+mu)u du; averaged over the posterior rates
        (Gamma(r+x, alpha+T), Gamma(s, beta+T)) it is
        (r+x)(alpha+T)^(r+x)(beta+T)^s int_0^t (alpha+T+u)^-(r+x+1) (beta+T+u)^-s du.
        """
        r, alpha, s, beta = (self.params_[k] for k in self.param_names)
        x, t_x, big_t, t = np.broadcast_arrays(*_as_arrays(frequency, recency, T, t))
        p_alive = self.predict_probability_alive(x, t_x, big_t)
        if self.no_dropout:
            quiet = np.exp((r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + t)))
            return 1.0 - p_alive + p_alive * quiet
        *_, log_weight = power_integral(
            alpha + big_t, r + x + 1.0, beta + big_t, s, np.zeros_like(t), t
        )
        log_buy = (
            np.log(r + x)
            + (r + x) * np.log(alpha + big_t)
            + s * np.log(beta + big_t)
            + _log_sum_exp(log_weight)
        )
        return 1.0 - p_alive * np.minimum(np.exp(log_buy), 1.0)

    def predict_purchase_count_cdf(self, n, t, frequency, recency, T) -> np.ndarray:
        """P(at most n purchases in (T, T + t] | history), for n = -1 (0), 0, 1, ...

        Alive at T, the history leaves the rates Gamma(r + x, alpha + T) and Gamma(s, beta + T),
        independently, so the remaining lifetime tau is Lomax: P(tau > u) =
        ((beta+T)/(beta+T+u))^s. The window's purchases are Poisson(lambda min(t, tau)):
        P(more than n | alive) = P(tau > t) P(NB_t > n) + int_0^t f_tau(u) P(NB_u > n) du,
        NB_u the Gamma-Poisson count over u, the integral by Gauss-Legendre quadrature.
        """
        r, alpha, s, beta = (self.params_[k] for k in self.param_names)
        x, t_x, big_t, n = np.broadcast_arrays(*_as_arrays(frequency, recency, T, n))
        count = np.maximum(n, 0.0)
        shape, rate = r + x, alpha + big_t
        more = window_count_survival(count, shape, rate, t)
        if not self.no_dropout:
            nodes, weights = leggauss(COUNT_NODES)
            u = (nodes + 1.0) * t / 2.0
            lifetime_left = ((beta + big_t) / (beta + big_t + t)) ** s
            density = (
                s
                / (beta + big_t[..., None] + u)
                * ((beta + big_t[..., None]) / (beta + big_t[..., None] + u)) ** s
            )
            during = window_count_survival(count[..., None], shape[..., None], rate[..., None], u)
            more = lifetime_left * more + (density * during) @ weights * t / 2.0
        p_alive = self.predict_probability_alive(x, t_x, big_t)
        return np.where(n < 0, 0.0, 1.0 - p_alive * more)


# quadrature nodes over the window for the count distribution (smooth integrand)
COUNT_NODES = 48


def _mixture(params, x, t_x, big_t, log_alpha_end, log_beta_end, weights):
    """The part of the log-likelihood that mixes the two ways a history ends, alive at T or
    left at a moment tau in (t_x, T] (the quadrature's nodes): per row its log and the
    posterior mean of the components' gradients; given weights, the weighted sum over rows of
    the posterior covariance of those gradients plus the posterior mean of the components' own
    second derivatives (the Hessian of this part; zeros without weights).

    A component's log is -(r+x) log(alpha+tau) - s log(beta+tau), + log s - log(beta+tau)
    if the customer left at tau."""
    r, alpha, s, beta = params
    log_alpha_left, log_beta_left, log_weight = power_integral(
        alpha, r + x, beta, s + 1.0, t_x, big_t
    )
    log_alive = -(r + x) * log_alpha_end - s * log_beta_end
    log_left = np.log(s) + log_weight
    top = np.maximum(log_alive, log_left.max(axis=1))
    share_alive = np.exp(log_alive - top)
    share_left = np.exp(log_left - top[:, None])
    total = share_alive + share_left.sum(axis=1)
    log_total = top + np.log(total)
    share_alive /= total
    share_left /= total[:, None]  # the posterior over the components
    inverse_alpha_end, inverse_beta_end = np.exp(-log_alpha_end), np.exp(-log_beta_end)
    inverse_alpha_left, inverse_beta_left = np.exp(-log_alpha_left), np.exp(-log_beta_left)

    def posterior_mean(at_end, at_left):
        return share_alive * at_end + np.einsum("nk,nk->n", share_left, at_left)

    share_gone = 1.0 - share_alive
    mean_grad = np.column_stack(
        [
            -posterior_mean(log_alpha_end, log_alpha_left),
            -(r + x) * posterior_mean(inverse_alpha_end, inverse_alpha_left),
            share_gone / s - posterior_mean(log_beta_end, log_beta_left),
            -s * posterior_mean(inverse_beta_end, inverse_beta_left)
            - np.einsum("nk,nk->n", share_left, inverse_beta_left),
        ]
    )
    if weights is None:
        return log_total, mean_grad, np.zeros((4, 4))
    # covariance: sums of squares of deviations from the mean, scaled by sqrt(weight * share)
    alive_grad = np.column_stack(
        [-log_alpha_end, -(r + x) * inverse_alpha_end, -log_beta_end, -s * inverse_beta_end]
    )
    deviation = (alive_grad - mean_grad) * np.sqrt(weights * share_alive)[:, None]
    hessian = deviation.T @ deviation
    scale = np.sqrt(weights[:, None] * share_left)
    deviation = np.empty((*share_left.shape, 4))
    deviation[..., 0] = (-log_alpha_left - mean_grad[:, :1]) * scale
    deviation[..., 1] = (-(r + x)[:, None] * inverse_alpha_left - mean_grad[:, 1:2]) * scale
    deviation[..., 2] = (1.0 / s - log_beta_left - mean_grad[:, 2:3]) * scale
    deviation[..., 3] = (-(s + 1.0) * inverse_beta_left - mean_grad[:, 3:]) * scale
    deviation = deviation.reshape(-1, 4)
    hessian += deviation.T @ deviation
    # the components' own second derivatives
    hessian[0, 1] -= weights @ posterior_mean(inverse_alpha_end, inverse_alpha_left)
    hessian[1, 1] += weights @ (
        (r + x) * posterior_mean(inverse_alpha_end**2, inverse_alpha_left**2)
    )
    hessian[2, 2] -= (weights @ share_gone) / s**2
    hessian[2, 3] -= weights @ posterior_mean(inverse_beta_end, inverse_beta_left)
    hessian[3, 3] += weights @ (
        s * posterior_mean(inverse_beta_end**2, inverse_beta_left**2)
        + np.einsum("nk,nk->n", share_left, inverse_beta_left**2)
    )
    return log_total, mean_grad, hessian
