"""Weighted maximum likelihood shared by the BG/NBD and Gamma-Gamma models.

A model supplies ``param_names``, one static ``log_likelihood(params, data, weights=None)``
returning the per-row log-likelihood and its analytic gradient (and, given weights, the weighted
sum of the per-row Hessians), and how its parameters map to unconstrained coordinates; fitting,
the penalty, boundary optima and the standard errors are written here once.

Coordinates. Each parameter is ``offset + scale * exp(theta)``: ``offset`` is its lower limit
(1 for Gamma-Gamma's q, whose population mean spend ``p gamma / (q - 1)`` must be finite, else
0) and ``scale`` carries the unit of the data (the mean T for BG/NBD's alpha, the mean spend for
Gamma-Gamma's gamma, else 1). The optimiser works on ``theta``, so a fit is invariant to the unit
of time or money: multiply every price by 100 and theta does not move, gamma is 100 times larger.

Penalty. ``penalizer * sum(theta**2)``: a ridge on those unit-free coordinates. Unlike
lifetimes' ``penalizer_coef * sum(params**2)`` it does not depend on the currency, and it pulls
a parameter away from its boundaries (0, infinity, q = 1) rather than towards 0.

Boundaries. Some data cannot identify every parameter: over a year too short to see anyone
leave, BG/NBD's dropout ``a`` runs to 0. The optimiser searches ``|theta| <= THETA_BOUND``; a
coordinate that ends on that bound is reported in ``boundary_`` (with the model's plain-language
``note_``), and the model may replace the fit by its limiting model (for BG/NBD with no dropout:
the NBD). ``ConvergenceError`` is left for real failures: a gradient not near zero.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize

# |theta| bound of the search: a parameter within a factor 1e6 of its data's unit either way
THETA_BOUND = float(np.log(1e6))
# a coordinate this close to the bound ended there
ON_BOUND = 1e-6
# largest |gradient| of the mean objective, per unit-free coordinate, accepted as converged
GRADIENT_TOLERANCE = 1e-5
# rows of the warm-start fit on a subsample (large fits only)
WARM_START_ROWS = 20_000
NEWTON_ITERATIONS = 25
# Newton stops when every gradient component of the mean objective is below this
NEWTON_TOLERANCE = 1e-10


class Levels:
    """A column's distinct values and each row's index into them, so that a function of the
    column (a gammaln, a log) is evaluated once per distinct value: few, for purchase counts
    and for times in whole days."""

    def __init__(self, column: np.ndarray) -> None:
        self.values, self.index = np.unique(column, return_inverse=True)

    def map(self, function) -> np.ndarray:
        return function(self.values)[self.index]


class ConvergenceError(RuntimeError):
    """The optimiser stopped away from an optimum; the message says where."""


class MaximumLikelihoodFitter:
    """Fit by minimising the mean negative log-likelihood + ``penalizer * sum(theta**2)``.

    Rows carry weights: the number of customers sharing a summary, so the data can be the
    distinct summaries aggregated in Spark. The search is L-BFGS-B with the analytic gradient,
    from a warm start on a subsample when there are many rows, then Newton's method with the
    analytic Hessian, which the standard errors need anyway.

    After ``fit``: ``params_``, ``standard_errors_`` and ``covariance_`` (the inverse of the
    observed information; the covariance on the unconstrained ``theta`` scale, so draws from it
    stay inside the parameter space), ``log_likelihood_`` (the total, without the penalty),
    ``boundary_`` and ``note_`` (empty when the optimum is interior), ``n_customers_`` (sum of
    weights) and ``n_rows_``.
    """

    param_names: ClassVar[tuple[str, ...]] = ()
    param_offsets: ClassVar[tuple[float, ...]] = ()
    # (parameter, "lower" | "upper") -> what that boundary means, in words
    boundary_notes: ClassVar[dict[tuple[str, str], str]] = {}

    def __init__(self, penalizer: float = 0.0) -> None:
        if not penalizer >= 0:
            raise ValueError(f"penalizer must be >= 0, got {penalizer}")
        self.penalizer = penalizer
        self.params_: dict[str, float | None] = {}
        self.boundary_: list[str] = []
        self.note_ = ""

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MaximumLikelihoodFitter:
        """A model with known parameters (e.g. read back from ``cltv_model_params.json``),
        ready to predict."""
        model = cls()
        model.params_ = {
            name: None if params.get(name) is None else float(params[name])
            for name in cls.param_names
        }
        model.boundary_ = list(params.get("boundary", []))
        model._set_limit_values(params)
        return model

    # ------------------------------------------------------------------ model hooks
    @staticmethod
    def prepare(*columns):  # pragma: no cover - every model defines it
        """The data ``log_likelihood`` takes, from the columns ``fit`` was given."""
        raise NotImplementedError

    @staticmethod
    def log_likelihood(params, data, weights=None):  # pragma: no cover - every model has one
        """Per-row log-likelihood and gradient; with ``weights``, also the weighted Hessian."""
        raise NotImplementedError

    def _scales(self, columns, weights) -> np.ndarray:
        """The unit of each parameter in these columns (see the module docstring)."""
        return np.ones(len(self.param_names))

    def _limit(self, lower: np.ndarray, upper: np.ndarray) -> np.ndarray | None:
        """Coordinates of the limiting model for a fit that ended on the bounds ``lower`` /
        ``upper`` (boolean per coordinate): ``-inf`` / ``+inf`` where a parameter takes its
        limit, NaN where the data then leaves it undefined. None: predict from the fit as is."""
        return None

    def _set_limit_values(self, summary: dict[str, Any]) -> None:
        """Read back what a limiting model needs besides its parameters."""

    # ------------------------------------------------------------------ coordinates
    def _params(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(self.param_offsets) + self.scales_ * np.exp(theta)

    def _evaluate(self, theta, free, full_theta, data, weights, with_hessian=False):
        """Mean penalised negative log-likelihood, its gradient in the free coordinates and,
        with ``with_hessian``, its Hessian there."""
        point = full_theta.copy()
        point[free] = theta
        params = self._params(point)
        total_weight = weights.sum()
        if with_hessian:
            ll, grad, hessian = self.log_likelihood(params, data, weights)
        else:
            ll, grad = self.log_likelihood(params, data)
        value = -(weights @ ll) / total_weight + self.penalizer * (theta**2).sum()
        # chain rule: d param / d theta = param - offset
        slope = (params - np.asarray(self.param_offsets))[free]
        score = -(weights @ grad)[free] / total_weight
        gradient = score * slope + 2.0 * self.penalizer * theta
        if not with_hessian:
            return value, gradient
        curvature = -hessian[np.ix_(free, free)] / total_weight * np.outer(slope, slope)
        curvature += np.diag(score * slope + 2.0 * self.penalizer)
        return value, gradient, curvature

    def _minimise(self, start, free, theta, data, weights) -> np.ndarray:
        """L-BFGS-B inside the bounds; returns the free coordinates."""
        result = minimize(
            self._evaluate,
            x0=start,
            args=(free, theta, data, weights),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-THETA_BOUND, THETA_BOUND)] * len(start),
            options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 1000},
        )
        return result.x

    def _search(self, theta, free, columns, data, weights) -> np.ndarray:
        """Coordinates at the optimum over the free ones: a start from BFGS on a subsample of
        the rows (all of them when they are few), then Newton's method on all rows; L-BFGS-B
        inside the bounds when the start leaves them or Newton fails (a boundary optimum)."""
        theta = theta.copy()
        sample, sample_weights = data, weights
        if len(weights) > WARM_START_ROWS:
            rows = np.random.default_rng(0).choice(len(weights), WARM_START_ROWS, replace=False)
            rows.sort()
            sample = self.prepare(*(column[rows] for column in columns))
            sample_weights = weights[rows]
        start = minimize(
            self._evaluate,
            x0=theta[free],
            args=(free, theta, sample, sample_weights),
            jac=True,
            method="BFGS",
            options={"gtol": 1e-8, "maxiter": 200},
        ).x
        if np.isfinite(start).all() and np.abs(start).max(initial=0.0) < THETA_BOUND - 1.0:
            theta[free] = start
            newton = self._newton(theta, free, data, weights)
            if newton is not None:
                return newton
        theta[free] = self._minimise(
            np.clip(np.nan_to_num(start), -THETA_BOUND, THETA_BOUND), free, theta, data, weights
        )
        return theta

    def _newton(self, theta, free, data, weights) -> np.ndarray | None:
        """Newton's method with step halving from a nearby start; None when it leaves the
        bounds or stops improving (the caller falls back to L-BFGS-B)."""
        theta = theta.copy()
        value, gradient, hessian = self._evaluate(theta[free], free, theta, data, weights, True)
        for _ in range(NEWTON_ITERATIONS):
            if np.abs(gradient).max() < NEWTON_TOLERANCE:
                return theta
            try:
                step = np.linalg.solve(hessian, gradient)
            except np.linalg.LinAlgError:
                return None
            for _ in range(20):
                candidate = theta.copy()
                candidate[free] = theta[free] - step
                if np.abs(candidate[free]).max() >= THETA_BOUND:
                    return None
                new = self._evaluate(candidate[free], free, candidate, data, weights, True)
                # near the optimum the objective moves less than its rounding: then judge by
                # the gradient
                if new[0] < value or np.abs(new[1]).max() < np.abs(gradient).max():
                    break
                step /= 2
            else:
                return None
            theta, (value, gradient, hessian) = candidate, new
        return theta if np.abs(gradient).max() < GRADIENT_TOLERANCE else None

    # ------------------------------------------------------------------ fitting
    def _fit_data(self, columns: tuple[np.ndarray, ...], weights) -> MaximumLikelihoodFitter:
        weights = np.ones_like(columns[0]) if weights is None else np.asarray(weights, float)
        if len(weights) == 0 or weights.sum() <= 0:
            raise ValueError(f"{type(self).__name__}: no customers to fit")
        self.scales_ = self._scales(columns, weights)
        data = self.prepare(*columns)
        n = len(self.param_names)
        theta = self._search(np.zeros(n), np.ones(n, dtype=bool), columns, data, weights)
        lower = theta <= -THETA_BOUND + ON_BOUND
        upper = theta >= THETA_BOUND - ON_BOUND
        free = ~(lower | upper)
        limit = self._limit(lower, upper) if (lower | upper).any() else None
        if limit is not None:
            # the limiting model keeps the coordinates it leaves finite and refits them
            free = np.isfinite(limit)
            start = np.where(free | np.isnan(limit), 0.0, limit)
            theta = self._search(start, free, columns, data, weights)
        value, gradient, hessian = self._evaluate(theta[free], free, theta, data, weights, True)
        inside = np.abs(theta[free]) < THETA_BOUND - ON_BOUND
        worst = np.abs(gradient[inside]).max(initial=0.0)
        if not np.isfinite(value) or not np.isfinite(worst) or worst > GRADIENT_TOLERANCE:
            raise ConvergenceError(
                f"{type(self).__name__} did not converge: the gradient is {worst:.3g} at "
                f"{self._describe(theta)}"
            )
        # the objective is the mean negative log-likelihood plus the penalty: undo both
        log_likelihood = -(value - self.penalizer * (theta[free] ** 2).sum()) * weights.sum()
        self._record(theta, free, hessian, lower, upper, limit, log_likelihood, weights)
        return self

    def _record(self, theta, free, hessian, lower, upper, limit, log_likelihood, weights):
        params = self._params(theta)
        if limit is not None:
            params = np.where(np.isnan(limit), np.nan, params)
        self.params_ = {
            name: None if np.isnan(value) else float(value)
            for name, value in zip(self.param_names, params, strict=True)
        }
        self.log_likelihood_ = float(log_likelihood)
        self.n_customers_ = round(float(weights.sum()))
        self.n_rows_ = len(weights)
        self.boundary_ = [
            f"{name} → {offset:g}" if at_lower else f"{name} → ∞"
            for name, offset, at_lower, at_upper in zip(
                self.param_names, self.param_offsets, lower, upper, strict=True
            )
            if at_lower or at_upper
        ]
        self.note_ = " ".join(
            dict.fromkeys(
                self.boundary_notes.get((name, "lower" if at_lower else "upper"), "")
                for name, at_lower, at_upper in zip(self.param_names, lower, upper, strict=True)
                if at_lower or at_upper
            )
        ).strip()
        # observed information of the total objective, on the theta scale of the free
        # coordinates; standard errors of the parameters by the delta method
        covariance = _inverse(hessian * weights.sum())
        deviations = np.sqrt(np.abs(np.diag(covariance)))
        slopes = (params - np.asarray(self.param_offsets))[free]
        errors = dict.fromkeys(self.param_names)
        for name, slope, deviation in zip(
            np.asarray(self.param_names)[free], slopes, deviations, strict=True
        ):
            errors[str(name)] = _finite_or_none(slope * deviation)
        self.standard_errors_ = errors
        self.covariance_ = {  # None where a direction is flat
            "coordinates": [
                f"log({name}{' - 1' if offset else ''})"
                for name, offset in zip(self.param_names, self.param_offsets, strict=True)
                if free[self.param_names.index(name)]
            ],
            "matrix": [[_finite_or_none(v) for v in row] for row in covariance],
        }

    def _describe(self, theta) -> str:
        return ", ".join(
            f"{name} = {value:.4g}"
            for name, value in zip(self.param_names, self._params(theta), strict=True)
        )

    def summary(self) -> dict[str, Any]:
        """Parameters, standard errors, covariance, log-likelihood, boundaries and sizes, ready
        for JSON (no NaN: an undefined parameter is None) and MLflow."""
        return {
            **self.params_,
            "standard_errors": self.standard_errors_,
            "covariance": self.covariance_,
            "log_likelihood": self.log_likelihood_,
            "n_customers": self.n_customers_,
            "n_distinct_rows": self.n_rows_,
            "penalizer": self.penalizer,
            "boundary": self.boundary_,
            "note": self.note_,
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _inverse(matrix: np.ndarray) -> np.ndarray:
    try:
        inverse = np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        inverse = np.full_like(matrix, np.nan)
    # a flat direction (not identified by the data) has no finite variance
    return np.where(np.isfinite(inverse), inverse, np.nan)
