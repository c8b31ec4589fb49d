"""Weighted maximum likelihood shared by the BG/NBD and Gamma-Gamma models.

A model supplies ``param_names`` and one static ``log_likelihood(params, data)`` returning the
per-row log-likelihood and its analytic gradient; fitting, the penalty and the standard errors
are written here once.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize


class ConvergenceError(RuntimeError):
    """The optimiser stopped without converging; the message says where and suggests a fix."""


class MaximumLikelihoodFitter:
    """Fit by minimising the mean negative log-likelihood + ``penalizer * sum(params**2)``.

    The optimiser (BFGS with the analytic gradient) works on log-parameters, so every
    parameter stays positive. Rows carry weights: the number of customers sharing a summary,
    so the data can be the distinct summaries aggregated in Spark.

    After ``fit``: ``params_``, ``standard_errors_`` (from the inverse of the observed
    information, the Hessian of the total negative log-likelihood, by central differences of
    the analytic gradient), ``log_likelihood_`` (the total, without the penalty),
    ``n_customers_`` (sum of weights) and ``n_rows_``.
    """

    param_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, penalizer: float = 0.0) -> None:
        if penalizer < 0:
            raise ValueError(f"penalizer must be >= 0, got {penalizer}")
        self.penalizer = penalizer
        self.params_: dict[str, float] = {}

    @classmethod
    def from_params(cls, params: dict[str, float]) -> MaximumLikelihoodFitter:
        """A model with known parameters (e.g. read back from ``cltv_model_params.json``),
        ready to predict."""
        model = cls()
        model.params_ = {name: float(params[name]) for name in cls.param_names}
        return model

    @staticmethod
    def log_likelihood(params, data):  # pragma: no cover - every model defines it
        raise NotImplementedError

    def _objective(self, log_params, data, weights):
        params = np.exp(log_params)
        ll, grad = self.log_likelihood(params, data)
        total_weight = weights.sum()
        value = -(weights @ ll) / total_weight + self.penalizer * (params**2).sum()
        gradient = -(weights @ grad) / total_weight + 2.0 * self.penalizer * params
        return value, gradient * params  # chain rule into log-parameters

    def _fit_data(self, data: tuple[np.ndarray, ...], weights) -> MaximumLikelihoodFitter:
        weights = np.ones_like(data[0]) if weights is None else np.asarray(weights, dtype=float)
        if len(weights) == 0 or weights.sum() <= 0:
            raise ValueError(f"{type(self).__name__}: no customers to fit")
        result = minimize(
            self._objective,
            x0=np.zeros(len(self.param_names)),
            args=(data, weights),
            jac=True,
            method="BFGS",
            options={"gtol": 1e-10, "maxiter": 2000},
        )
        if not result.success and np.abs(result.jac).max() > 1e-6:
            raise ConvergenceError(
                f"{type(self).__name__} did not converge ({result.message}); "
                "try a small penalizer, e.g. 0.001"
            )
        params = np.exp(result.x)
        self.params_ = dict(zip(self.param_names, params.tolist(), strict=True))
        ll, _ = self.log_likelihood(params, data)
        self.log_likelihood_ = float(weights @ ll)
        self.n_customers_ = round(float(weights.sum()))
        self.n_rows_ = len(weights)
        self.standard_errors_ = self._standard_errors(params, data, weights)
        return self

    def _standard_errors(self, params, data, weights) -> dict[str, float]:
        def total_gradient(values):
            _, grad = self.log_likelihood(values, data)
            return -(weights @ grad)

        hessian = np.empty((len(params), len(params)))
        for i, value in enumerate(params):
            step = 1e-5 * value
            up, down = params.copy(), params.copy()
            up[i] += step
            down[i] -= step
            hessian[:, i] = (total_gradient(up) - total_gradient(down)) / (2 * step)
        hessian = (hessian + hessian.T) / 2
        try:
            variances = np.diag(np.linalg.inv(hessian))
        except np.linalg.LinAlgError:
            variances = np.full(len(params), np.nan)
        return dict(zip(self.param_names, np.sqrt(np.abs(variances)).tolist(), strict=True))

    def summary(self) -> dict[str, Any]:
        """Parameters, standard errors, log-likelihood and sizes, ready for JSON and MLflow."""
        return {
            **self.params_,
            "standard_errors": self.standard_errors_,
            "log_likelihood": self.log_likelihood_,
            "n_customers": self.n_customers_,
            "n_distinct_rows": self.n_rows_,
            "penalizer": self.penalizer,
        }
