"""Parameter uncertainty of a fitted model, as seeded draws of its parameters.

A maximum-likelihood estimate is asymptotically normal around the truth with the inverse of
the observed information as covariance. Every fit here records that covariance on its own
unconstrained coordinates, ``log(parameter - offset)`` (see :mod:`cltv.models.fitting`), so
draws made there and mapped back stay inside the parameter space: a positive ``r``, a ``q``
above 1. Evaluating a model once per draw turns the spread of the parameters into the spread
of anything predicted from them (Wasserman, *All of Statistics*, 2004, §9.10 on the
parametric bootstrap and the delta method; the same device as lifetimes' standard errors, but
carried to each customer's prediction).

A coordinate the data do not identify (a boundary fit: no dropout seen, its covariance entry
None) is held at its estimate; the rest are drawn from their own block of the covariance,
except along a direction whose variance says the likelihood is flat there
(``UNIDENTIFIED_LOG_VARIANCE``), which is held too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cltv.models.fitting import MaximumLikelihoodFitter
from cltv.models.gamma_gamma import GammaGammaModel

# A direction of the log-parameters with a variance above this (a standard deviation of 5:
# a factor of 150 either way) is one the data do not identify: e.g. MBG/NBD's a and b running
# off together when everyone has the same dropout chance, a/(a+b) fixed and a+b anywhere up
# to infinity (log-variances of 1e5 on 1,000 customers). Drawn, it would overflow; only the
# identified combinations (here a/(a+b)) are drawn, the flat direction is held.
UNIDENTIFIED_LOG_VARIANCE = 25.0


def parameter_draws(
    model: type[MaximumLikelihoodFitter], fit: dict[str, Any], n_draws: int, seed: int
) -> list[dict[str, Any]]:
    """``n_draws`` parameter sets of ``model`` around ``fit`` (a fit's summary, as in
    ``cltv_model_fit.json``), each ready for ``model.from_params``.

    Parameters the fit leaves undefined (None: a limiting model) stay None; the boundary list
    and whatever else the summary holds are carried into every draw.
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")
    covariance = fit.get("covariance") or {"coordinates": [], "matrix": []}
    drawn = [_coordinate_name(c) for c in covariance["coordinates"]]
    matrix = np.array(
        [[np.nan if v is None else float(v) for v in row] for row in covariance["matrix"]],
        dtype=float,
    ).reshape(len(drawn), len(drawn))
    identified = _identified(matrix)
    block = matrix[np.ix_(identified, identified)]
    rng = np.random.default_rng(seed)
    shifts = np.zeros((n_draws, len(drawn)))
    if identified.any():
        shifts[:, identified] = _normal_draws(rng, block, n_draws)
    offsets = dict(zip(model.param_names, model.param_offsets, strict=True))
    draws = [dict(fit) for _ in range(n_draws)]
    for k, name in enumerate(drawn):
        estimate = fit.get(name)
        if estimate is None:
            continue
        values = offsets[name] + (estimate - offsets[name]) * np.exp(shifts[:, k])
        for draw, value in zip(draws, values, strict=True):
            draw[name] = float(value)
    return draws


def _coordinate_name(coordinate: str) -> str:
    """``log(q - 1)`` → ``q``: the parameter a covariance coordinate belongs to."""
    inner = coordinate.removeprefix("log(").removesuffix(")")
    return inner.split(" - ")[0]


def _identified(matrix: np.ndarray) -> np.ndarray:
    """Coordinates with a finite, positive variance and finite covariances with each other."""
    identified = np.isfinite(np.diag(matrix)) & (np.diag(matrix) > 0)
    while identified.any() and not np.isfinite(matrix[np.ix_(identified, identified)]).all():
        # drop the coordinate with the most undefined covariances, then look again
        undefined = (~np.isfinite(matrix[np.ix_(identified, identified)])).sum(axis=1)
        identified[np.flatnonzero(identified)[np.argmax(undefined)]] = False
    return identified


def _normal_draws(rng: np.random.Generator, covariance: np.ndarray, n: int) -> np.ndarray:
    """Draws of N(0, covariance); a covariance a rounding error away from positive definite
    is projected onto the nearest one rather than refused, and a direction the likelihood is
    flat along (variance above ``UNIDENTIFIED_LOG_VARIANCE``) is held at the estimate."""
    symmetric = (covariance + covariance.T) / 2
    eigenvalues, eigenvectors = np.linalg.eigh(symmetric)
    eigenvalues = np.where(eigenvalues > UNIDENTIFIED_LOG_VARIANCE, 0.0, eigenvalues)
    root = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
    return rng.standard_normal((n, len(symmetric))) @ root.T


def randomised_coverage(below: np.ndarray, at: np.ndarray, level: float) -> np.ndarray:
    """Per customer, the chance that the actual count lies in its central ``level`` interval,
    for counts: ``below`` = F(y - 1) and ``at`` = F(y), F the predictive CDF, y the actual.

    A count's CDF jumps, so a plain interval [F⁻¹(0.1), F⁻¹(0.9)] covers more than 80% even
    for a correct model. The randomised PIT u = F(y - 1) + V (F(y) - F(y - 1)), V ~ U(0, 1), is
    exactly uniform for a correct model (Brockwell 2007; Czado, Gneiting & Held 2009), so the
    share of customers with u inside [(1 - level) / 2, (1 + level) / 2] is ``level`` in
    expectation. This returns that share's expectation over V (how much of [F(y-1), F(y)] lies
    inside), so no random numbers are drawn and the mean over customers is exact to compute.
    """
    low, high = (1.0 - level) / 2.0, (1.0 + level) / 2.0
    width = at - below
    inside = np.clip(np.minimum(at, high) - np.maximum(below, low), 0.0, None)
    # an actual count the model gives no chance at all is outside every interval
    return np.where(width > 0, inside / np.where(width > 0, width, 1.0), 0.0)


# a forward step this small on a log(parameter - offset) coordinate differentiates the
# predictions to ~1e-8 relative while leaving the model's numerics well inside their range
DERIVATIVE_STEP = 1e-4


def coordinate_shifts(
    model: type[MaximumLikelihoodFitter], fit: dict[str, Any], draws: list[dict[str, Any]]
) -> tuple[list[str], np.ndarray]:
    """The parameters that vary across ``draws`` and each draw's shift from ``fit`` on their
    ``log(parameter - offset)`` coordinates: (names, array of shape (draws, names))."""
    offsets = dict(zip(model.param_names, model.param_offsets, strict=True))
    names = [
        name
        for name in model.param_names
        if fit.get(name) is not None and any(draw[name] != fit[name] for draw in draws)
    ]
    shifts = np.array(
        [
            [np.log((draw[name] - offsets[name]) / (fit[name] - offsets[name])) for name in names]
            for draw in draws
        ]
    ).reshape(len(draws), len(names))
    return names, shifts


class LinearisedDraws:
    """Per-customer predictions of a model at each parameter draw, to first order.

    Evaluating an expensive prediction (a hypergeometric series, a quadrature) once per draw
    and customer costs the number of draws times a single prediction. Around the estimate
    each customer's prediction ``f`` is smooth in the log-parameters, so
    ``f(draw) ≈ f(estimate) + ∇f · shift(draw)`` with ``∇f`` from one forward difference per
    drawn coordinate: the cost of ``1 + k`` predictions for any number of draws (the delta
    method of :func:`parameter_draws`' docstring, evaluated on the draws so that predictions
    of several models combine draw by draw). ``f`` should be on a scale where it is near
    linear and unbounded (log-odds, logs); a prediction that is infinite at the estimate (a
    customer who cannot have left) stays at its value in every draw.
    """

    def __init__(
        self,
        model: type[MaximumLikelihoodFitter],
        fit: dict[str, Any],
        draws: list[dict[str, Any]],
    ) -> None:
        offsets = dict(zip(model.param_names, model.param_offsets, strict=True))
        self.estimate = model.from_params(fit)
        self.names, self.shifts = coordinate_shifts(model, fit, draws)
        self.stepped = []
        for name in self.names:
            moved = offsets[name] + (fit[name] - offsets[name]) * np.exp(DERIVATIVE_STEP)
            self.stepped.append(model.from_params({**fit, name: moved}))

    def __call__(self, predict, *arguments) -> tuple[np.ndarray, np.ndarray]:
        """``predict(model, *arguments)`` → array (quantities, customers) at the estimate, and
        the same at every draw: (estimate, array (quantities, customers, draws))."""
        estimate = np.asarray(predict(self.estimate, *arguments), dtype=float)
        if not self.names:
            return estimate, np.repeat(estimate[..., None], len(self.shifts), axis=-1)
        with np.errstate(invalid="ignore"):  # inf - inf: a prediction infinite everywhere
            gradient = np.stack(
                [
                    (np.asarray(predict(m, *arguments), dtype=float) - estimate) / DERIVATIVE_STEP
                    for m in self.stepped
                ]
            )
        gradient = np.where(np.isfinite(gradient), gradient, 0.0)
        return estimate, estimate[..., None] + np.einsum("kqn,dk->qnd", gradient, self.shifts)


def central_interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles over the last axis (linear
    interpolation between order statistics, as ``numpy.quantile``)."""
    low, high = np.quantile(draws, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=-1)
    return low, high


def spend_draws(fit: dict[str, Any], n_draws: int, seed: int) -> dict[str, np.ndarray]:
    """Gamma-Gamma's ``p``, ``q``, ``gamma`` and population mean spend at each of ``n_draws`` draws
    around ``fit``, as arrays for :func:`cltv.models.gamma_gamma.average_order_value`.

    The population mean is ``p gamma / (q - 1)`` of each draw; when spend is too heavy-tailed
    for a finite mean (the boundary q → 1) it is the observed mean repeat spend in every draw,
    as in the fit."""
    draws = parameter_draws(GammaGammaModel, fit, n_draws, seed)
    p, q, gamma = (np.array([draw[name] for draw in draws]) for name in ("p", "q", "gamma"))
    if "q → 1" in fit.get("boundary", []):
        population_mean = np.full(n_draws, float(fit["population_mean"]))
    else:
        population_mean = p * gamma / (q - 1.0)
    return {"p": p, "q": q, "gamma": gamma, "population_mean": population_mean}
