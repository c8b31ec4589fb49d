"""Probabilistic customer-base models: BG/NBD, MBG/NBD and Pareto/NBD purchases, Gamma-Gamma
spend."""

from cltv.models.bgnbd import BetaGeoModel, ModifiedBetaGeoModel
from cltv.models.fitting import ConvergenceError
from cltv.models.gamma_gamma import GammaGammaModel
from cltv.models.pareto_nbd import ParetoNBDModel

__all__ = [
    "BetaGeoModel",
    "ConvergenceError",
    "GammaGammaModel",
    "ModifiedBetaGeoModel",
    "ParetoNBDModel",
]
