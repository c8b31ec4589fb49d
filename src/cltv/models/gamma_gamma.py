"""The Gamma-Gamma model of spend per transaction.

Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "RFM and CLV: Using Iso-Value Curves for
Customer Base Analysis", Journal of Marketing Research 42(4), 415-430; and Fader, P. S. and
Hardie, B. G. S. (2013), "The Gamma-Gamma Model of Monetary Value" (note).

A customer's transaction values are Gamma(p, nu) with ``nu ~ Gamma(q, gamma)`` across
customers. Fitted on repeat customers only (frequency x > 0) with their mean repeat spend m_x;
the model assumes spend is independent of purchase frequency, which the pipeline checks.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln

from cltv.models.fitting import MaximumLikelihoodFitter


class GammaGammaModel(MaximumLikelihoodFitter):
    """Gamma-Gamma fitted by weighted maximum likelihood, ``predict_average_order_value``.

    Example:

    .. code-block:: python

        repeat = summary[summary.frequency > 0]
        model = GammaGammaModel().fit(repeat.frequency, repeat.monetary_value)
        model.predict_average_order_value(repeat.frequency, repeat.monetary_value)
    """

    param_names = ("p", "q", "gamma")

    @staticmethod
    def log_likelihood(params, data):
        """Per-row log-likelihood of the mean spend m_x over x transactions, and its gradient
        in (p, q, gamma)."""
        p, q, gamma = params
        x, m = data
        px = p * x
        total = x * m + gamma
        ll = (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(total)
        )
        grad = np.column_stack(
            [
                x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - np.log(total)),
                digamma(px + q) - digamma(q) + np.log(gamma) - np.log(total),
                q / gamma - (px + q) / total,
            ]
        )
        return ll, grad

    def fit(self, frequency, monetary_value, weights=None) -> GammaGammaModel:
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        if ((x <= 0) | (m <= 0)).any():
            raise ValueError("Gamma-Gamma is fitted on repeat customers: frequency and spend > 0")
        return self._fit_data((x, m), weights)

    def predict_average_order_value(self, frequency, monetary_value) -> np.ndarray:
        """E[spend per transaction | x, m_x]: a weighted mean of the population mean
        p gamma / (q - 1) and the customer's own m_x; the population mean when x = 0."""
        p, q, gamma = (self.params_[k] for k in self.param_names)
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        return p * (gamma + x * m) / (p * x + q - 1.0)
