"""Probabilistic customer-base models: BG/NBD purchases and Gamma-Gamma spend."""

from cltv.models.bgnbd import BetaGeoModel
from cltv.models.fitting import ConvergenceError
from cltv.models.gamma_gamma import GammaGammaModel

__all__ = ["BetaGeoModel", "ConvergenceError", "GammaGammaModel"]
