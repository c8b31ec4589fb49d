"""Parameter draws around a fit: the fit's own covariance, inside the parameter space, and
held where the data identify nothing (issue 18's first piece)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lifetimes.datasets import load_cdnow_summary, load_cdnow_summary_data_with_monetary_value

from cltv.models import BetaGeoModel, GammaGammaModel
from cltv.models.uncertainty import parameter_draws

from .test_cltv_models import _nbd_histories

N_DRAWS = 20_000


@pytest.fixture(scope="module")
def cdnow_fit() -> dict:
    cdnow = load_cdnow_summary()
    summary = BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"]).summary()
    return json.loads(json.dumps(summary))  # as read back from cltv_model_fit.json


def _log_draws(draws, names) -> np.ndarray:
    return np.log([[draw[name] for name in names] for draw in draws])


def test_draws_have_the_fits_covariance_on_the_log_scale(cdnow_fit):
    names = ("r", "alpha", "a", "b")
    draws = parameter_draws(BetaGeoModel, cdnow_fit, N_DRAWS, seed=1)
    logs = _log_draws(draws, names)
    recorded = np.array(cdnow_fit["covariance"]["matrix"])
    assert cdnow_fit["covariance"]["coordinates"] == ["log(r)", "log(alpha)", "log(a)", "log(b)"]
    # centred on the estimate: within 4 standard errors of a mean of N_DRAWS
    centre = np.log([cdnow_fit[name] for name in names])
    assert (np.abs(logs.mean(axis=0) - centre) < 4 * np.sqrt(np.diag(recorded) / N_DRAWS)).all()
    # the sample covariance of 20,000 normal draws is within ~3% of the truth (sd ~1.4%/√2)
    sample = np.cov(logs, rowvar=False)
    assert np.diag(sample) == pytest.approx(np.diag(recorded), rel=0.05)
    correlation = sample / np.sqrt(np.outer(np.diag(sample), np.diag(sample)))
    expected = recorded / np.sqrt(np.outer(np.diag(recorded), np.diag(recorded)))
    assert np.abs(correlation - expected).max() < 0.03


def test_draws_spread_like_the_published_standard_errors(cdnow_fit):
    # Fader, Hardie & Lee (2005) via lifetimes' CDNOW example: r 0.243 (0.0125), alpha 4.414
    # (0.3784), a 0.793 (0.1855), b 2.426 (0.7054); the draws' sd on the parameter scale
    # matches to the accuracy of the delta method on a lognormal (a and b are the skewed ones)
    draws = parameter_draws(BetaGeoModel, cdnow_fit, N_DRAWS, seed=2)
    published = {"r": 0.0125, "alpha": 0.3784, "a": 0.1855, "b": 0.7054}
    for name, error in published.items():
        spread = np.std([draw[name] for draw in draws])
        assert spread == pytest.approx(error, rel=0.15 if name in ("a", "b") else 0.05), name


def test_draws_are_seeded_and_ready_to_predict(cdnow_fit):
    first = parameter_draws(BetaGeoModel, cdnow_fit, 5, seed=7)
    assert first == parameter_draws(BetaGeoModel, cdnow_fit, 5, seed=7)
    assert first != parameter_draws(BetaGeoModel, cdnow_fit, 5, seed=8)
    model = BetaGeoModel.from_params(first[0])
    assert model.params_["r"] == first[0]["r"] != cdnow_fit["r"]
    assert 0 < model.predict_probability_alive(np.array([2.0]), np.array([30.0]), 38.0)[0] < 1


def test_gamma_gamma_draws_keep_q_above_one():
    spend = load_cdnow_summary_data_with_monetary_value()
    repeat = spend[spend["frequency"] > 0]
    fit = GammaGammaModel().fit(repeat["frequency"], repeat["monetary_value"]).summary()
    assert fit["covariance"]["coordinates"] == ["log(p)", "log(q - 1)", "log(gamma)"]
    q = np.array([draw["q"] for draw in parameter_draws(GammaGammaModel, fit, N_DRAWS, 3)])
    assert (q > 1).all()
    shifts = np.log(q - 1) - np.log(fit["q"] - 1)
    assert shifts.var() == pytest.approx(fit["covariance"]["matrix"][1][1], rel=0.05)


def test_a_boundary_fit_draws_what_is_identified_and_holds_the_rest():
    x, t_x, big_t = _nbd_histories(20_000, r=0.8, alpha=6.0, seed=0)
    fit = json.loads(json.dumps(BetaGeoModel().fit(x, t_x, big_t).summary()))
    assert fit["boundary"] == ["a → 0"]
    draws = parameter_draws(BetaGeoModel, fit, 2_000, seed=4)
    assert {draw["a"] for draw in draws} == {0.0} and {draw["b"] for draw in draws} == {None}
    r = np.array([draw["r"] for draw in draws])
    assert np.isfinite(r).all() and r.std() > 0
    assert r.std() == pytest.approx(fit["standard_errors"]["r"], rel=0.1)
    # every draw is the NBD and predicts a finite value
    for draw in draws[:20]:
        model = BetaGeoModel.from_params(draw)
        assert np.isfinite(model.predict_purchases(13.0, x[:100], t_x[:100], big_t[:100])).all()


def test_zero_draws_is_an_error(cdnow_fit):
    with pytest.raises(ValueError, match="n_draws must be at least 1"):
        parameter_draws(BetaGeoModel, cdnow_fit, 0, seed=1)
