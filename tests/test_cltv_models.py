"""BG/NBD and Gamma-Gamma: published estimates, the lifetimes oracle, recovery, robustness."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.datasets import load_cdnow_summary, load_cdnow_summary_data_with_monetary_value
from pyspark.sql import functions as F
from scipy.special import gammaln

from cltv.models import BetaGeoModel, GammaGammaModel
from cltv.pipelines.cltv.nodes import (
    fit_cltv_models,
    model_parameters,
    naive_baseline,
    predict_customer_value,
    validate_on_holdout,
)
from cltv.pipelines.data_processing.nodes import build_customer_summary, resolve_analysis_period
from cltv.synthetic import write_csv

from .test_cleaning import clean_csv

RELATIVE = 1e-4


def test_bgnbd_reproduces_the_published_cdnow_estimates():
    # Fader, Hardie & Lee (2005), CDNOW sample, 2,357 customers, 39 weeks of calibration:
    # r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4
    cdnow = load_cdnow_summary()
    model = BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert model.params_[name] == pytest.approx(value, abs=0.0005), name
    assert model.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)
    assert model.n_customers_ == 2357


def test_gamma_gamma_reproduces_the_published_cdnow_estimates():
    # Fader & Hardie, "The Gamma-Gamma Model of Monetary Value": 946 repeat customers,
    # p = 6.25, q = 3.74, gamma = 15.44
    cdnow = load_cdnow_summary_data_with_monetary_value()
    repeat = cdnow[cdnow["frequency"] > 0]
    model = GammaGammaModel().fit(repeat["frequency"], repeat["monetary_value"])
    assert model.params_["p"] == pytest.approx(6.25, abs=0.005)
    assert model.params_["q"] == pytest.approx(3.74, abs=0.005)
    assert model.params_["gamma"] == pytest.approx(15.44, abs=0.01)
    assert model.n_customers_ == 946


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    """A few hundred thousand generated lines through cleaning and the summary (weeks)."""
    csv = tmp_path_factory.mktemp("cltv") / "generated.csv"
    truth = write_csv(300_000, csv, seed=21)
    clean, _, _ = clean_csv(csv)
    clean = clean.cache()
    period = resolve_analysis_period(clean, None, None, 90)
    summary = build_customer_summary(clean, period, "W").cache()
    return {
        "truth": truth,
        "clean": clean,
        "period": period,
        "summary": summary,
        "frame": summary.toPandas(),
        "fit": fit_cltv_models(summary, 0.0, "W"),
    }


def test_parameters_are_recovered_from_generated_data(generated):
    fit, truth = generated["fit"], generated["truth"]
    for model in ("bgnbd", "gamma_gamma"):
        for name, true_value in truth[model].items():
            if name != "n_customers":
                assert fit[model][name] == pytest.approx(true_value, rel=0.10), (model, name)
    assert abs(fit["gamma_gamma"]["frequency_monetary_correlation"]) < 0.1  # independent by design


def test_fit_and_predictions_agree_with_lifetimes(generated):
    frame, fit = generated["frame"], generated["fit"]
    x, t_x, big_t = frame["frequency"], frame["recency"], frame["T"]

    oracle = BetaGeoFitter().fit(x, t_x, big_t)
    for name in ("r", "alpha", "a", "b"):
        assert fit["bgnbd"][name] == pytest.approx(oracle.params_[name], rel=RELATIVE), name
    # lifetimes reports its likelihood in rescaled time; evaluate its formula in ours
    params = [fit["bgnbd"][k] for k in ("r", "alpha", "a", "b")]
    mean_nll = BetaGeoFitter._negative_log_likelihood(
        np.log(params), x.to_numpy(), t_x.to_numpy(), big_t.to_numpy(), np.ones(len(x)), 0.0
    )
    assert fit["bgnbd"]["log_likelihood"] == pytest.approx(-mean_nll * len(x), rel=1e-9)
    # the Spark aggregation gave the same likelihood as one row per customer
    assert fit["bgnbd"]["n_customers"] == len(frame) > fit["bgnbd"]["n_distinct_rows"]

    model = BetaGeoModel.from_params(fit["bgnbd"])
    oracle.params_[:] = params  # compare predictions at identical parameters
    for horizon in (1.0, 13.0, 52.0):
        assert model.predict_purchases(horizon, x, t_x, big_t) == pytest.approx(
            oracle.conditional_expected_number_of_purchases_up_to_time(horizon, x, t_x, big_t),
            rel=RELATIVE,
        )
    assert model.predict_probability_alive(x, t_x, big_t) == pytest.approx(
        oracle.conditional_probability_alive(x, t_x, big_t), rel=RELATIVE
    )

    repeat = frame[(frame["frequency"] > 0) & (frame["monetary_value"] > 0)]
    spend_oracle = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    for ours, theirs in (("p", "p"), ("q", "q"), ("gamma", "v")):
        assert fit["gamma_gamma"][ours] == pytest.approx(spend_oracle.params_[theirs], rel=RELATIVE)
    spend = GammaGammaModel.from_params(fit["gamma_gamma"])
    spend_oracle.params_[:] = [fit["gamma_gamma"][k] for k in ("p", "q", "gamma")]
    assert spend.predict_average_order_value(
        frame["frequency"], frame["monetary_value"]
    ) == pytest.approx(
        spend_oracle.conditional_expected_average_profit(
            frame["frequency"], frame["monetary_value"]
        ),
        rel=RELATIVE,
    )


def test_customer_value_matches_lifetimes_clv(generated, spark):
    summary, fit = generated["summary"], generated["fit"]
    valuation = {"horizon_months": 6, "discount_rate": 0.01, "margin": 1.0, "value_tiers": []}
    naive = naive_baseline(summary, generated["period"])
    values = (
        predict_customer_value(summary, fit, naive, valuation, generated["period"])
        .toPandas()
        .set_index("customer_id")
        .sort_index()
    )
    frame = generated["frame"].set_index("customer_id").sort_index()
    oracle = BetaGeoFitter()
    oracle.params_ = pd.Series({k: fit["bgnbd"][k] for k in ("r", "alpha", "a", "b")})
    oracle.predict = oracle.conditional_expected_number_of_purchases_up_to_time  # set by fit()
    spend = GammaGammaFitter()
    spend.params_ = pd.Series(
        {
            "p": fit["gamma_gamma"]["p"],
            "q": fit["gamma_gamma"]["q"],
            "v": fit["gamma_gamma"]["gamma"],
        }
    )
    expected = spend.customer_lifetime_value(
        oracle,
        frame["frequency"],
        frame["recency"],
        frame["T"],
        frame["monetary_value"],
        time=6,
        discount_rate=0.01,
        freq="W",
    )
    assert values["clv"].to_numpy() == pytest.approx(expected.to_numpy(), rel=RELATIVE)
    assert (values["value_tier"] == "rest").all()


def test_holdout_validation_beats_the_naive_baseline(generated):
    fit, period = generated["fit"], generated["period"]
    validation = validate_on_holdout(generated["summary"], fit, period)
    frame = generated["frame"]
    horizon = period["holdout_days"] / 7
    naive = np.where(frame["T"] > 0, frame["frequency"] / frame["T"].where(frame["T"] > 0, 1), 0)
    expected_mae_naive = np.abs(naive * horizon - frame["frequency_holdout"]).mean()
    assert validation["mae_naive"] == pytest.approx(expected_mae_naive, rel=1e-9)
    assert validation["total_actual"] == frame["frequency_holdout"].sum()
    assert validation["mae_bgnbd"] < validation["mae_naive"]
    assert validation["total_bgnbd"] == pytest.approx(validation["total_actual"], rel=0.1)
    buckets = validation["by_calibration_frequency"]
    assert [b["frequency"] for b in buckets][:2] == ["0", "1"] and buckets[-1]["frequency"] == "7+"
    assert sum(b["n_customers"] for b in buckets) == len(frame)
    spec = model_parameters(fit)
    assert set(spec) == {"time_unit", "bgnbd", "gamma_gamma"}
    assert set(spec["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood", "n_customers"}
    assert set(spec["gamma_gamma"]) == {"p", "q", "gamma", "n_customers"}
    json.dumps(spec, allow_nan=False)


def test_value_tiers_and_naive_clv_by_hand(spark):
    summary = spark.createDataFrame(
        [(f"c{i}", i % 5, float(i % 5), 10.0 + i, 20.0 if i % 5 else 0.0) for i in range(200)],
        "customer_id string, frequency long, recency double, T double, monetary_value double",
    )
    fit = {
        "time_unit": "W",
        "bgnbd": {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5},
        "gamma_gamma": {"p": 6.0, "q": 4.0, "gamma": 100.0},
    }
    naive = {"expected_lifespan_months": 4.0, "mean_repeat_order_value": 30.0}
    valuation = {
        "horizon_months": 12,
        "discount_rate": 0.0,
        "margin": 0.5,
        "value_tiers": [
            {"name": "top_1pct", "share": 0.01},
            {"name": "top_5pct", "share": 0.05},
            {"name": "top_20pct", "share": 0.2},
        ],
    }
    period = {"observation_end": "2011-12-09"}
    values = predict_customer_value(summary, fit, naive, valuation, period).toPandas()
    tiers = values.sort_values("clv_rank")["value_tier"].tolist()
    assert tiers == ["top_1pct"] * 2 + ["top_5pct"] * 8 + ["top_20pct"] * 30 + ["rest"] * 160
    row = values.set_index("customer_id").loc["c3"]  # 3 repeats over T = 13 weeks, spend 20
    assert row["naive_clv"] == pytest.approx(0.5 * 20.0 * (3 / 13) * 4.345 * 4.0)
    row = values.set_index("customer_id").loc["c5"]  # one-time buyer: no rate, no naive value
    assert row["naive_clv"] == 0.0
    assert row["expected_average_order_value"] == pytest.approx(6.0 * 100.0 / 3.0)


# ------------------------------------------------------------------ numerics
def _assert_gradient_matches_finite_differences(model, params, data):
    ll, grad = model.log_likelihood(np.array(params), data)
    frequency = data[0][0]
    for i in range(len(params)):
        step = 1e-6 * params[i]
        up, down = np.array(params), np.array(params)
        up[i] += step
        down[i] -= step
        numeric = (model.log_likelihood(up, data)[0] - model.log_likelihood(down, data)[0]) / (
            2 * step
        )
        # central differences lose about eps * (size of the gammaln terms) / step to rounding
        roundoff = 1e-14 * (abs(ll[0]) + gammaln(sum(params) * (frequency + 1) + 1)) / step
        assert grad[0, i] == pytest.approx(numeric[0], rel=1e-4, abs=1e-6 + roundoff)


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(*[st.floats(0.05, 20.0) for _ in range(4)]),
    st.integers(0, 400),
    st.floats(0.0, 1.0),
    st.floats(0.5, 500.0),
)
def test_bgnbd_gradient_matches_finite_differences(params, frequency, recency_share, big_t):
    recency = recency_share * big_t if frequency else 0.0
    data = (np.array([float(frequency)]), np.array([recency]), np.array([big_t]))
    _assert_gradient_matches_finite_differences(BetaGeoModel, params, data)


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(*[st.floats(0.1, 50.0) for _ in range(3)]),
    st.integers(1, 400),
    st.floats(0.5, 5000.0),
)
def test_gamma_gamma_gradient_matches_finite_differences(params, frequency, spend):
    data = (np.array([float(frequency)]), np.array([spend]))
    _assert_gradient_matches_finite_differences(GammaGammaModel, params, data)


def test_extreme_customers_do_not_overflow():
    model = BetaGeoModel.from_params({"r": 0.75, "alpha": 6.0, "a": 0.8, "b": 2.5})
    x = np.array([0.0, 1.0, 500.0, 5000.0, 5000.0])
    t_x = np.array([0.0, 100.0, 1000.0, 2.0, 9999.0])
    big_t = np.array([10000.0, 10000.0, 1000.0, 10000.0, 10000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        alive = model.predict_probability_alive(x, t_x, big_t)
        expected = model.predict_purchases(52.0, x, t_x, big_t)
    assert np.isfinite(alive).all() and ((alive >= 0) & (alive <= 1)).all()
    assert np.isfinite(expected).all() and (expected >= 0).all()
    assert alive[3] == pytest.approx(0.0, abs=1e-300)  # 5,000 purchases then silence: gone
    # still buying every two units: about 52 x the posterior mean rate (r + x) / (alpha + T)
    assert alive[4] > 0.99
    assert expected[4] == pytest.approx(52 * 5000.75 / 10006.0, rel=0.01)


def test_weighted_fit_equals_one_row_per_customer_and_penalizer_matches_lifetimes():
    cdnow = load_cdnow_summary()
    grouped = cdnow.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
    weighted = BetaGeoModel().fit(
        grouped["frequency"], grouped["recency"], grouped["T"], grouped["n"]
    )
    single = BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    for name in single.params_:
        assert weighted.params_[name] == pytest.approx(single.params_[name], rel=1e-6)
    assert weighted.log_likelihood_ == pytest.approx(single.log_likelihood_, rel=1e-9)

    penalised = BetaGeoModel(penalizer=0.01).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    # the penalty shrinks the parameters, and costs likelihood
    assert sum(v**2 for v in penalised.params_.values()) < sum(
        v**2 for v in single.params_.values()
    )
    assert penalised.log_likelihood_ < single.log_likelihood_
    assert math.isfinite(penalised.standard_errors_["r"])
    # lifetimes rescales time before penalising BG/NBD, but not Gamma-Gamma: compare there
    spend = load_cdnow_summary_data_with_monetary_value()
    repeat = spend[spend["frequency"] > 0]
    ours = GammaGammaModel(penalizer=0.01).fit(repeat["frequency"], repeat["monetary_value"])
    theirs = GammaGammaFitter(penalizer_coef=0.01).fit(
        repeat["frequency"], repeat["monetary_value"]
    )
    for name, their_name in (("p", "p"), ("q", "q"), ("gamma", "v")):
        assert ours.params_[name] == pytest.approx(theirs.params_[their_name], rel=RELATIVE)
    with pytest.raises(ValueError, match="penalizer"):
        BetaGeoModel(penalizer=-1)


def test_empty_input_is_a_clear_error(spark):
    empty = spark.createDataFrame(
        [], "frequency long, recency double, T double, monetary_value double"
    )
    with pytest.raises(ValueError, match="no customers to fit"):
        fit_cltv_models(empty.filter(F.lit(False)), 0.0, "W")
