"""Uncertainty (issue 18): parameter draws around a fit (its own covariance, inside the
parameter space, held where the data identify nothing) and predictive intervals of holdout
purchase counts, calibrated against data drawn from the models themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lifetimes import ParetoNBDFitter
from lifetimes.datasets import load_cdnow_summary, load_cdnow_summary_data_with_monetary_value

from cltv.models import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from cltv.models.uncertainty import parameter_draws, randomised_coverage

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


# ------------------------------------------------------------------ predictive count intervals
HORIZON = 39.0
COUNT_MODELS = (BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel)


@pytest.mark.parametrize("model", COUNT_MODELS, ids=lambda m: m.__name__)
def test_count_distribution_sums_to_the_expected_purchases(model):
    cdnow = load_cdnow_summary()
    x, t_x, big_t = (cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    fitted = model().fit(x, t_x, big_t)
    # E[X] = sum over n >= 0 of P(X > n); the expectation is checked against lifetimes
    tail = sum(1 - fitted.predict_purchase_count_cdf(n, HORIZON, x, t_x, big_t) for n in range(400))
    expected = fitted.predict_purchases(HORIZON, x, t_x, big_t)
    assert tail == pytest.approx(expected, rel=1e-5)
    # a CDF: 0 below zero purchases, non-decreasing, below 1
    below = fitted.predict_purchase_count_cdf(-1, HORIZON, x, t_x, big_t)
    zero = fitted.predict_purchase_count_cdf(0, HORIZON, x, t_x, big_t)
    assert (below == 0).all() and (zero > 0).all() and (zero <= 1).all()
    # no purchase at all is the model's own P(no purchase)
    assert zero == pytest.approx(fitted.predict_no_purchase(HORIZON, x, t_x, big_t), rel=1e-9)


def test_pareto_nbd_count_probabilities_match_lifetimes_conditional_pmf():
    # Fader & Hardie's note 028, eq. 16, as lifetimes implements it
    cdnow = load_cdnow_summary()
    x, t_x, big_t = (cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    ours = ParetoNBDModel().fit(x, t_x, big_t)
    oracle = ParetoNBDFitter()
    oracle.fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    oracle.params_[:] = [ours.params_[k] for k in ("r", "alpha", "s", "beta")]
    for i in (0, 5, 20, 100, 1000):
        for n in (0, 1, 2, 5, 9):
            probability = ours.predict_purchase_count_cdf(
                n, HORIZON, x[i], t_x[i], big_t[i]
            ) - ours.predict_purchase_count_cdf(n - 1, HORIZON, x[i], t_x[i], big_t[i])
            expected = oracle.conditional_probability_of_n_purchases_up_to_time(
                n, HORIZON, x[i], t_x[i], big_t[i]
            )
            assert probability == pytest.approx(expected, rel=1e-9, abs=1e-15), (i, n)


def test_randomised_coverage_is_the_share_of_the_jump_inside_the_interval():
    # F(y-1) = 0.05, F(y) = 0.5: u is uniform on [0.05, 0.5], inside [0.1, 0.9] for 0.4 / 0.45
    below = np.array([0.05, 0.0, 0.95, 0.3, 0.2])
    at = np.array([0.5, 0.05, 1.0, 0.3, 0.95])
    assert randomised_coverage(below, at, 0.8) == pytest.approx(
        [0.4 / 0.45, 0.0, 0.0, 0.0, 0.7 / 0.75]
    )


def _simulated_customers(model: str, n: int, seed: int):
    """Histories and holdout counts drawn from the model itself (true parameters), each
    customer observed for T ~ U(20, 60) weeks after the first purchase."""
    rng = np.random.default_rng(seed)
    big_t = rng.uniform(20, 60, n)
    x, t_x, holdout = np.zeros(n), np.zeros(n), np.zeros(n)
    rate = rng.gamma(0.5, 1 / 8.0, n)
    if model == "pnbd":
        lifetime = rng.exponential(1 / rng.gamma(0.6, 1 / 12.0, n))
    else:
        dropout = rng.beta(0.8, 2.5, n)
    for i in range(n):
        time, end = 0.0, big_t[i] + HORIZON
        alive = not (model == "mbgnbd" and rng.random() < dropout[i])
        while alive:
            time += rng.exponential(1 / rate[i])
            if time > end or (model == "pnbd" and time > lifetime[i]):
                break
            if time <= big_t[i]:
                x[i], t_x[i] = x[i] + 1, time
            else:
                holdout[i] += 1
            alive = model == "pnbd" or rng.random() >= dropout[i]
    truth = {"r": 0.5, "alpha": 8.0, "a": 0.8, "b": 2.5, "s": 0.6, "beta": 12.0}
    return x, t_x, big_t, holdout, truth


@pytest.mark.parametrize(
    ("name", "model"),
    [("bgnbd", BetaGeoModel), ("mbgnbd", ModifiedBetaGeoModel), ("pnbd", ParetoNBDModel)],
)
def test_a_correct_model_covers_the_nominal_share(name, model):
    x, t_x, big_t, holdout, truth = _simulated_customers(name, 20_000, seed=11)
    true_model = model.from_params({k: truth[k] for k in model.param_names})
    below = true_model.predict_purchase_count_cdf(holdout - 1, HORIZON, x, t_x, big_t)
    at = true_model.predict_purchase_count_cdf(holdout, HORIZON, x, t_x, big_t)
    for level in (0.5, 0.8, 0.9):
        # the sd of a mean of 20,000 coverages is at most 0.0035
        assert randomised_coverage(below, at, level).mean() == pytest.approx(level, abs=0.012)
    # a plain interval of whole counts over-covers: most customers buy nothing, and the jump
    # at 0 straddles the interval's lower end
    plain = (at >= 0.1) & (below <= 0.9)
    assert plain.mean() > 0.85
