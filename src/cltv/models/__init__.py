"""Probabilistic customer-base models: BG/NBD and MBG/NBD purchases, Gamma-Gamma spend."""

from cltv.models.bgnbd import BetaGeoModel, ModifiedBetaGeoModel
from cltv.models.fitting import ConvergenceError
from cltv.models.gamma_gamma import GammaGammaModel

__all__ = [
    "BetaGeoModel",
    "ConvergenceError",
    "GammaGammaModel",
    "ModifiedBetaGeoModel",
]
