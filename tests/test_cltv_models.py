"""BG/NBD and Gamma-Gamma: published estimates, the lifetimes oracle, recovery, robustness."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.datasets import load_cdnow_summary, load_cdnow_summary_data_with_monetary_value
from pyspark.sql import functions as F
from scipy.integrate import quad
from scipy.optimize import minimize
from scipy.special import gammaln

from cltv.metrics import value_rankings
from cltv.models import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from cltv.models.pareto_nbd import power_integral
from cltv.models.value_model import CustomerValueModel, naive_rate, purchase_model
from cltv.pipelines.cltv.nodes import (
    _choose,
    customer_values,
    fit_chosen_model,
    fit_cltv_models,
    model_parameters,
    naive_baseline,
    predict_customer_value,
    validate_on_holdout,
    weighted_correlation,
)
from cltv.pipelines.data_processing.nodes import (
    build_customer_summary,
    resolve_analysis_period,
    summarise_purchase_days,
)
from cltv.synthetic import write_csv

from .cltv_coverage import UNCERTAINTY, value_every_draw
from .test_cleaning import clean_csv

RELATIVE = 1e-4


def cltv_params(penalizer: float = 0.0, selection: str = "lowest_mae") -> dict:
    """The ``cltv`` parameters the fitting nodes take: both candidates, one penalty."""
    return {
        "candidates": ["bgnbd", "mbgnbd", "pnbd"],
        "model_selection": selection,
        **{m: {"penalizer": penalizer} for m in ("bgnbd", "mbgnbd", "pnbd", "gamma_gamma")},
    }


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


def test_mbgnbd_agrees_with_lifetimes_on_cdnow():
    # Batislam et al.'s MBG/NBD: a customer may also leave right after the first purchase
    cdnow = load_cdnow_summary()
    x, t_x, big_t = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    model = ModifiedBetaGeoModel().fit(x, t_x, big_t)
    oracle = ModifiedBetaGeoFitter().fit(x, t_x, big_t)
    for name in ("r", "alpha", "a", "b"):
        assert model.params_[name] == pytest.approx(oracle.params_[name], rel=RELATIVE), name
    params = [model.params_[k] for k in ("r", "alpha", "a", "b")]
    mean_nll = ModifiedBetaGeoFitter._negative_log_likelihood(
        np.log(params), x.to_numpy(), t_x.to_numpy(), big_t.to_numpy(), np.ones(len(x)), 0.0
    )
    assert model.log_likelihood_ == pytest.approx(-mean_nll * len(x), rel=1e-12)
    # BG/NBD's likelihood is not the same: the dropout branch is open to one-time buyers
    assert model.log_likelihood_ != pytest.approx(
        BetaGeoModel().fit(x, t_x, big_t).log_likelihood_, rel=1e-6
    )
    oracle.params_[:] = params
    for horizon in (1.0, 13.0, 52.0):
        assert model.predict_purchases(horizon, x, t_x, big_t) == pytest.approx(
            oracle.conditional_expected_number_of_purchases_up_to_time(horizon, x, t_x, big_t),
            rel=RELATIVE,
        )
    alive = model.predict_probability_alive(x, t_x, big_t)
    assert alive == pytest.approx(oracle.conditional_probability_alive(x, t_x, big_t), rel=1e-9)
    assert (alive[cdnow["frequency"] == 0] < 1).all()  # unlike BG/NBD's one-time buyers


def test_pareto_nbd_reproduces_the_published_cdnow_estimates_and_agrees_with_lifetimes():
    # Fader & Hardie, "A Note on Deriving the Pareto/NBD Model" (2005), CDNOW sample:
    # r = 0.5533, alpha = 10.5776, s = 0.6061, beta = 11.6650, LL = -9594.98
    cdnow = load_cdnow_summary()
    x, t_x, big_t = (cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    model = ParetoNBDModel().fit(x, t_x, big_t)
    published = {"r": 0.5533, "alpha": 10.5776, "s": 0.6061, "beta": 11.6650}
    # beta is the least determined (standard error 6.2): the likelihood is flat along it to
    # the published digits, and lifetimes' Nelder-Mead stops anywhere in 11.667-11.670
    for name, value in published.items():
        assert model.params_[name] == pytest.approx(value, abs=0.001 * model.standard_errors_[name])
    assert model.log_likelihood_ == pytest.approx(-9594.98, abs=0.01)
    # lifetimes' Nelder-Mead on its hypergeometric form sometimes stops early (r = 0.516 in
    # one fresh-clone run): its best of three fits, by its own likelihood, is the oracle
    oracle = max(
        (ParetoNBDFitter().fit(x, t_x, big_t) for _ in range(3)),
        key=lambda fitted: ParetoNBDFitter._conditional_log_likelihood(
            fitted.params_, x, t_x, big_t
        ).sum(),
    )
    for name in published:
        assert model.params_[name] == pytest.approx(oracle.params_[name], rel=1e-3), name
    # at our estimate, the log-likelihood of every customer (lifetimes' hypergeometric form)
    params = [model.params_[k] for k in ("r", "alpha", "s", "beta")]
    per_customer = ParetoNBDFitter._conditional_log_likelihood(params, x, t_x, big_t)
    at_oracle = ParetoNBDFitter._conditional_log_likelihood(oracle.params_, x, t_x, big_t)
    assert model.log_likelihood_ >= at_oracle.sum() - 1e-9  # ours is the higher optimum
    ll, _ = ParetoNBDModel.log_likelihood(params, ParetoNBDModel.prepare(x, t_x, big_t))
    assert ll == pytest.approx(per_customer, rel=1e-10)
    assert model.log_likelihood_ == pytest.approx(per_customer.sum(), rel=1e-12)
    oracle.params_[:] = params
    for horizon in (1.0, 13.0, 52.0):
        assert model.predict_purchases(horizon, x, t_x, big_t) == pytest.approx(
            oracle.conditional_expected_number_of_purchases_up_to_time(horizon, x, t_x, big_t),
            rel=1e-9,
        )
    alive = model.predict_probability_alive(x, t_x, big_t)
    assert alive == pytest.approx(oracle.conditional_probability_alive(x, t_x, big_t), rel=1e-9)
    assert (alive[x == 0] < 1).all()  # one-time buyers may have left too
    quiet = model.predict_no_purchase(13.0, x[:200], t_x[:200], big_t[:200])
    assert quiet == pytest.approx(
        oracle.conditional_probability_of_n_purchases_up_to_time(
            0, 13.0, x[:200], t_x[:200], big_t[:200]
        ),
        abs=1e-12,
    )


@settings(max_examples=60, deadline=None)
@given(
    log_alpha=st.floats(-9.0, 9.0),
    log_beta=st.floats(-9.0, 9.0),
    p=st.floats(0.01, 500.0),
    q=st.floats(0.05, 30.0),
    low_share=st.sampled_from([0.0, 1e-6, 0.3, 0.999999]),
    high=st.floats(0.5, 200.0),
)
# found by hypothesis: a rate 8,000 times smaller than the other, a heavy buyer (p 10)
@example(log_alpha=0.0, log_beta=-9.0, p=10.0, q=0.25, low_share=0.0, high=127.0)
def test_the_pareto_nbd_quadrature_matches_adaptive_integration(
    log_alpha, log_beta, p, q, low_share, high
):
    """int_low^high (alpha+tau)^-p (beta+tau)^-q dtau over twelve orders of magnitude of
    alpha / beta: heavy buyers (p large), long and short ranges; the reference is scipy's
    adaptive quadrature, relative to the value at the start so nothing underflows."""
    alpha, beta, low = 30.0 * np.exp(log_alpha), 30.0 * np.exp(log_beta), low_share * high
    if p + q <= 1.0:
        q = 1.0 - p + 0.05
    log_at_low = -p * np.log(alpha + low) - q * np.log(beta + low)

    def relative(tau):
        return np.exp(-p * np.log(alpha + tau) - q * np.log(beta + tau) - log_at_low)

    # break points where the integrand's scale changes: geometric from the start
    points = [low + (high - low) * 10.0**-k for k in range(1, 14)]
    reference, _ = quad(relative, low, high, points=points, limit=500, epsabs=0, epsrel=1e-13)
    *_, log_weight = power_integral(alpha, np.array([p]), beta, np.array([q]), [low], [high])
    approximation = np.exp(log_weight - log_at_low).sum()
    assert approximation == pytest.approx(reference, rel=1e-7)


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    """A few hundred thousand generated lines through cleaning and the summary (weeks)."""
    csv = tmp_path_factory.mktemp("cltv") / "generated.csv"
    truth = write_csv(300_000, csv, seed=21)
    clean, _, _ = clean_csv(csv)
    # checkpointed, as the pipeline's Delta tables are: the plans stay small
    clean = clean.localCheckpoint()
    days = summarise_purchase_days(clean).localCheckpoint()
    period = resolve_analysis_period(days, None, None, 90)
    summary = build_customer_summary(days, period, "W").cache()
    return {
        "truth": truth,
        "clean": clean,
        "period": period,
        "summary": summary,
        "frame": summary.toPandas(),
        "fit": fit_cltv_models(summary, cltv_params(), "W"),
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
        predict_customer_value(
            summary,
            CustomerValueModel(fit, naive, valuation, UNCERTAINTY),
            valuation["value_tiers"],
            generated["period"],
        )[0]
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
    # the MLflow pyfunc's predict, on a pandas frame, agrees with the oracle too
    model = CustomerValueModel(fit, naive, valuation, UNCERTAINTY)
    predicted = model.predict(None, frame[["frequency", "recency", "T", "monetary_value"]])
    assert predicted["clv"].to_numpy() == pytest.approx(expected.to_numpy(), rel=RELATIVE)
    assert list(predicted.index) == list(frame.index)


def test_the_customer_table_carries_intervals_and_the_total_its_own(generated):
    # one customer in eight: the brute force below values each of them 200 times
    summary = generated["summary"].filter(F.abs(F.hash("customer_id")) % 8 == 0)
    fit = {**generated["fit"], "purchase_model": "bgnbd"}
    valuation = {"horizon_months": 12, "discount_rate": 0.01, "margin": 0.3, "value_tiers": []}
    naive = naive_baseline(generated["summary"], generated["period"])
    table, total = predict_customer_value(
        summary,
        CustomerValueModel(fit, naive, valuation, UNCERTAINTY),
        valuation["value_tiers"],
        generated["period"],
    )
    values = table.toPandas().set_index("customer_id").sort_index()
    frame = summary.toPandas().set_index("customer_id").sort_index().reset_index()
    # Spark's batches and one pandas frame give the same numbers
    expected = customer_values(frame, fit, naive, valuation, UNCERTAINTY).set_index("customer_id")
    columns = [c for c in expected.columns if c.startswith(("p_alive", "expected", "clv"))]
    assert len(columns) == 12
    np.testing.assert_allclose(values[columns], expected[columns], rtol=1e-12)
    # the total's interval is the one of the sum over customers, draw by draw, valued exactly
    every_draw = value_every_draw(frame, fit, valuation)["clv"].sum(axis=0)
    assert total["clv"] == pytest.approx(values["clv"].sum(), rel=1e-12)
    assert total["clv_lower"] == pytest.approx(np.quantile(every_draw, 0.1), rel=0.005)
    assert total["clv_upper"] == pytest.approx(np.quantile(every_draw, 0.9), rel=0.005)
    assert total["clv_lower"] < total["clv"] < total["clv_upper"]
    assert (total["interval"], total["draws"], total["purchase_model"]) == (0.8, 200, "bgnbd")


@pytest.mark.parametrize("penalizer", [0.0, 0.001])
def test_prices_in_pence_multiply_money_by_100_and_change_nothing_else(generated, penalizer):
    summary, period = generated["summary"], generated["period"]
    in_pence = summary.withColumn("monetary_value", F.col("monetary_value") * 100)
    valuation = {"horizon_months": 12, "discount_rate": 0.01, "margin": 1.0, "value_tiers": []}
    results = []
    for table in (summary, in_pence):
        fit = fit_cltv_models(table, cltv_params(penalizer), "W")
        naive = naive_baseline(table, period)
        values = predict_customer_value(
            table,
            CustomerValueModel(fit, naive, valuation, UNCERTAINTY),
            valuation["value_tiers"],
            period,
        )[0].toPandas()
        results.append((fit, values.set_index("customer_id").sort_index()))
    (pounds_fit, pounds), (pence_fit, pence) = results
    for name in ("r", "alpha", "a", "b"):
        for model in ("bgnbd", "mbgnbd"):
            assert pence_fit[model][name] == pounds_fit[model][name]  # spend plays no part
    assert pence_fit["gamma_gamma"]["p"] == pytest.approx(pounds_fit["gamma_gamma"]["p"], rel=1e-9)
    assert pence_fit["gamma_gamma"]["q"] == pytest.approx(pounds_fit["gamma_gamma"]["q"], rel=1e-9)
    assert pence_fit["gamma_gamma"]["gamma"] == pytest.approx(
        100 * pounds_fit["gamma_gamma"]["gamma"], rel=1e-9
    )
    for column in ("expected_average_order_value", "clv", "naive_clv"):
        assert pence[column].to_numpy() == pytest.approx(100 * pounds[column].to_numpy(), rel=1e-9)
    for column in ("p_alive", "expected_purchases"):
        assert (pence[column] == pounds[column]).all()


def test_holdout_validation_beats_the_naive_baseline_and_picks_the_true_model(generated):
    fit, period = generated["fit"], generated["period"]
    validation, _ = validate_on_holdout(
        generated["summary"], fit, period, "lowest_mae", UNCERTAINTY
    )
    frame = generated["frame"]
    horizon = period["holdout_days"] / 7
    naive = np.where(frame["T"] > 0, frame["frequency"] / frame["T"].where(frame["T"] > 0, 1), 0)
    expected_mae_naive = np.abs(naive * horizon - frame["frequency_holdout"]).mean()
    assert validation["mae_naive"] == pytest.approx(expected_mae_naive, rel=1e-9)
    assert validation["total_actual"] == frame["frequency_holdout"].sum()
    for model in ("bgnbd", "mbgnbd", "pnbd"):
        assert validation[f"mae_{model}"] < validation["mae_naive"]
        assert validation[f"total_{model}"] == pytest.approx(validation["total_actual"], rel=0.1)
    # predictive coverage of the central 80% holdout-count intervals, per model: the data are
    # drawn from BG/NBD, so each fitted model covers its nominal share (±3 points)
    assert validation["predictive_interval"]["level"] == 0.8
    for model in ("bgnbd", "mbgnbd", "pnbd"):
        assert validation[f"coverage_{model}"] == pytest.approx(0.8, abs=0.03), model
    # the data are drawn from BG/NBD: it is chosen, or ties the chosen model within the noise
    # (the mean per-customer difference of absolute errors within two standard errors of 0)
    selection = validation["selection"]
    assert selection["chosen"] == "bgnbd" or "bgnbd" in selection["within_noise_of_chosen"]
    assert not selection["naive_beats_every_model"]
    assert "predicts holdout purchases best" in validation["verdict"]
    buckets = validation["by_calibration_frequency"]
    assert [b["frequency"] for b in buckets][:2] == ["0", "1"] and buckets[-1]["frequency"] == "7+"
    assert sum(b["n_customers"] for b in buckets) == len(frame)
    assert {"actual", "bgnbd", "mbgnbd", "pnbd", "naive"} <= set(buckets[0])
    spec = model_parameters(fit)
    assert set(spec) == {"time_unit", "purchase_model", "bgnbd", "gamma_gamma"}
    assert set(spec["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood", "n_customers"}
    assert set(spec["gamma_gamma"]) == {"p", "q", "gamma", "n_customers"}
    json.dumps(validation, allow_nan=False)


def value_ranking(spark, score: list[float], value: list[float]) -> dict:
    """:func:`value_rankings` of one score over rows of (score, value)."""
    frame = spark.createDataFrame(
        list(zip(score, value, strict=True)), "score double, value double"
    )
    rankings, n_rows = value_rankings(frame, {"score": "score"}, "value")
    assert n_rows == len(score)
    return rankings["score"]


def test_value_ranking_by_hand(spark):
    # scores 5..1 hold 10, 0, 30, 0, 10 of 50: the curve 0.2, 0.2, 0.8, 0.8, 1.0 over fifths
    score, value = [5.0, 4.0, 3.0, 2.0, 1.0], [10.0, 0.0, 30.0, 0.0, 10.0]
    ranking = value_ranking(spark, score, value)
    # trapezoids: (0.1 + 0.2 + 0.5 + 0.8 + 0.9) / 5 = 0.5, so no better than chance
    assert ranking["gini"] == pytest.approx(0.0, abs=1e-12)
    assert ranking["top_20pct"] == pytest.approx(10 / 50)  # the first customer
    assert ranking["top_10pct"] == pytest.approx(5 / 50)  # half of them
    # a tie at the top (10 and 0 at score 5): in random order, 0.6 of a customer takes 0.6 x 5
    ranking = value_ranking(spark, [*score, 5.0], [*value, 0.0])
    assert ranking["top_10pct"] == pytest.approx(0.6 * 5 / 50)
    # the tie group's trapezoid: 2/6 x (0 + 0.2) / 2, then as before over sixths
    area = (2 / 6 * 0.1) + (0.2 + 0.2) / 2 / 6 + (0.2 + 0.8) / 2 / 6 + 0.8 / 6 + 0.9 / 6
    assert ranking["gini"] == pytest.approx(2 * area - 1)
    assert value_ranking(spark, [2.0, 1.0], [1.0, 0.0])["gini"] == pytest.approx(0.5)
    nobody = value_ranking(spark, [1.0], [0.0])
    assert nobody == {"gini": None, "top_10pct": None, "top_20pct": None}
    # no rows at all: nothing to rank, for every score
    empty = spark.createDataFrame([], "a double, b double, value double")
    rankings, n_rows = value_rankings(empty, {"a": "a", "b": "b"}, "value")
    assert n_rows == 0 and rankings == {"a": nobody, "b": nobody}


def test_the_frequency_spend_correlation_counts_each_distinct_row_as_often_as_it_occurs():
    # distinct (frequency, spend) rows with their counts: 1/10 twice, 2/20 and 3/10 once
    x, y, counts = pd.Series([1, 2, 3]), pd.Series([10.0, 20.0, 10.0]), pd.Series([2, 1, 1])
    expected = np.corrcoef([1, 1, 2, 3], [10.0, 10.0, 20.0, 10.0])[0, 1]
    assert weighted_correlation(x, y, counts) == pytest.approx(expected, rel=1e-12)
    # as Spark's corr: none for one customer, NaN when the spend does not vary
    assert weighted_correlation(x[:1], y[:1], pd.Series([1])) is None
    assert math.isnan(weighted_correlation(x, pd.Series([5.0, 5.0, 5.0]), counts))


def test_spend_and_ranking_validation_match_pandas(generated):
    fit, period = generated["fit"], generated["period"]
    validation, _ = validate_on_holdout(
        generated["summary"], fit, period, "lowest_mae", UNCERTAINTY
    )
    frame = generated["frame"]
    spend = GammaGammaModel.from_params(fit["gamma_gamma"])
    both = frame[(frame["frequency"] > 0) & (frame["frequency_holdout"] > 0)]
    predicted = spend.predict_average_order_value(both["frequency"], both["monetary_value"])
    assert validation["spend_n_customers"] == len(both)
    assert validation["spend_mae_gamma_gamma"] == pytest.approx(
        np.abs(predicted - both["monetary_value_holdout"]).mean(), rel=1e-9
    )
    assert validation["spend_mae_naive"] == pytest.approx(
        np.abs(both["monetary_value"] - both["monetary_value_holdout"]).mean(), rel=1e-9
    )
    # the standard errors of the MAE gaps to the chosen model: paired per customer
    x, t_x, big_t = frame["frequency"], frame["recency"], frame["T"]
    horizon = period["holdout_days"] / 7
    predicted = {
        name: purchase_model(fit, name).predict_purchases(horizon, x, t_x, big_t)
        for name in validation["candidates"]
    }
    predicted["naive"] = naive_rate(x.to_numpy(float), big_t.to_numpy(float)) * horizon
    error = {m: np.abs(p - frame["frequency_holdout"]) for m, p in predicted.items()}
    selection = validation["selection"]
    chosen, standard_errors = selection["chosen"], selection["mae_difference_standard_errors"]
    assert set(standard_errors) == set(predicted) - {chosen}
    for m, standard_error in standard_errors.items():
        paired = (error[m] - error[chosen]).std(ddof=1) / math.sqrt(len(frame))
        assert standard_error == pytest.approx(paired, rel=1e-6), m
    # totals, RMSE and the calibration table (mean holdout purchases by calibration
    # frequency 0 … 6, 7+), from the same per-customer predictions
    actual = frame["frequency_holdout"].astype(float)
    for m, p in predicted.items():
        assert validation[f"total_{m}"] == pytest.approx(np.sum(p), rel=1e-9), m
        rmse = math.sqrt(np.mean((p - actual) ** 2))
        assert validation[f"rmse_{m}"] == pytest.approx(rmse, rel=1e-9), m
    bucket = np.minimum(frame["frequency"], 7)
    by_bucket = pd.DataFrame({"bucket": bucket, "actual": actual, **predicted}).groupby("bucket")
    expected_table = by_bucket.mean().join(by_bucket.size().rename("n_customers"))
    table = validation["by_calibration_frequency"]
    assert [row["frequency"] for row in table] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    for row, (_, expected) in zip(table, expected_table.iterrows(), strict=True):
        assert row["n_customers"] == expected["n_customers"]
        for column in ("actual", *predicted):
            assert row[column] == pytest.approx(expected[column], rel=1e-9), column
    # BG/NBD's predicted holdout value, and the curve over its tie groups (one-time buyers
    # with the same T tie), in pandas
    purchases = BetaGeoModel.from_params(fit["bgnbd"])
    value = purchases.predict_purchases(period["holdout_days"] / 7, x, t_x, big_t) * (
        spend.predict_average_order_value(x, frame["monetary_value"])
    )
    revenue = frame["frequency_holdout"] * frame["monetary_value_holdout"]
    groups = (
        pd.DataFrame({"value": value, "revenue": revenue})
        .groupby("value")
        .agg(n=("revenue", "size"), revenue=("revenue", "sum"))
        .sort_index(ascending=False)
    )
    n, total = len(frame), revenue.sum()
    n_through, through = groups["n"].cumsum(), groups["revenue"].cumsum() / total
    cut = np.searchsorted(n_through.to_numpy(), 0.1 * n)  # the group holding the cut
    before_n = n_through.iloc[cut] - groups["n"].iloc[cut]
    before = through.iloc[cut] - groups["revenue"].iloc[cut] / total
    top = (
        before + (0.1 * n - before_n) / groups["n"].iloc[cut] * groups["revenue"].iloc[cut] / total
    )
    assert validation["top_10pct_bgnbd"] == pytest.approx(top, rel=1e-9)
    area = (groups["n"] / n * (2 * through - groups["revenue"] / total) / 2).sum()
    assert validation["gini_bgnbd"] == pytest.approx(2 * area - 1, rel=1e-9)
    # the models rank customers far better than chance, and better than the naive value
    assert validation["gini_bgnbd"] > 0.3
    assert validation["top_20pct_bgnbd"] > 0.2


def test_a_forced_model_values_the_customers(generated):
    summary, period = generated["summary"], generated["period"]
    validation, naive = validate_on_holdout(
        summary, generated["fit"], period, "mbgnbd", UNCERTAINTY
    )
    assert validation["selection"]["chosen"] == "mbgnbd"
    fit = fit_chosen_model(summary, cltv_params(), "W", validation)
    assert fit["purchase_model"] == "mbgnbd" and fit["candidates"] == ["bgnbd", "mbgnbd"]
    spec = model_parameters(fit)
    assert spec["purchase_model"] == "mbgnbd"
    assert set(spec["mbgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood", "n_customers"}
    valuation = {
        "horizon_months": 12,
        "discount_rate": 0.01,
        "margin": 1.0,
        "value_tiers": [{"name": "top_10pct", "share": 0.1}],
    }
    # validation's naive baseline is the summary's: the holdout's churn share, the repeat mean
    frame = generated["frame"]
    assert naive["holdout_churned_share"] == (frame["frequency_holdout"] == 0).mean()
    assert naive["mean_repeat_order_value"] == pytest.approx(
        frame.loc[frame["frequency"] > 0, "monetary_value"].mean(), rel=1e-12
    )
    assert naive == pytest.approx(naive_baseline(summary, period), rel=1e-12)
    values = predict_customer_value(
        summary,
        CustomerValueModel(fit, naive, valuation, UNCERTAINTY),
        valuation["value_tiers"],
        period,
    )[0].toPandas()
    one_time = values[values["frequency"] == 0]
    # MBG/NBD, unlike BG/NBD, lets one-time buyers have left: some are not surely alive
    assert (one_time["p_alive"] < 1).all()
    # every customer's P(alive) and purchases over the 12 months (52.14 weeks), by the oracle
    oracle = ModifiedBetaGeoFitter()
    oracle.params_ = pd.Series({k: fit["mbgnbd"][k] for k in ("r", "alpha", "a", "b")})
    x, t_x, big_t = values["frequency"], values["recency"], values["T"]
    assert values["p_alive"].to_numpy() == pytest.approx(
        oracle.conditional_probability_alive(x, t_x, big_t), rel=1e-9
    )
    assert values["expected_purchases"].to_numpy() == pytest.approx(
        oracle.conditional_expected_number_of_purchases_up_to_time(12 * 4.345, x, t_x, big_t),
        rel=1e-9,
    )
    # the top 10% by CLV (rounded up) are the tier, the rest are not
    ranked = values.sort_values("clv_rank")
    top = math.ceil(0.1 * len(values))
    assert ranked["clv_rank"].tolist() == list(range(1, len(values) + 1))
    assert ranked["clv"].is_monotonic_decreasing
    assert ranked["value_tier"].tolist() == ["top_10pct"] * top + ["rest"] * (len(values) - top)


def test_the_selection_rule_takes_the_lowest_error_and_breaks_ties_by_order():
    scores = {"mae_bgnbd": 0.5, "mae_mbgnbd": 0.4, "rmse_bgnbd": 1.0, "rmse_mbgnbd": 1.0}
    assert _choose("lowest_mae", ["bgnbd", "mbgnbd"], scores) == "mbgnbd"
    assert _choose("lowest_rmse", ["bgnbd", "mbgnbd"], scores) == "bgnbd"  # a tie: listed first
    assert _choose("lowest_rmse", ["mbgnbd", "bgnbd"], scores) == "mbgnbd"
    assert _choose("bgnbd", ["bgnbd", "mbgnbd"], scores) == "bgnbd"


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
    values = predict_customer_value(
        summary,
        CustomerValueModel(fit, naive, valuation, UNCERTAINTY),
        valuation["value_tiers"],
        period,
    )[0].toPandas()
    tiers = values.sort_values("clv_rank")["value_tier"].tolist()
    assert tiers == ["top_1pct"] * 2 + ["top_5pct"] * 8 + ["top_20pct"] * 30 + ["rest"] * 160
    row = values.set_index("customer_id").loc["c3"]  # 3 repeats over T = 13 weeks, spend 20
    assert row["naive_clv"] == pytest.approx(0.5 * 20.0 * (3 / 13) * 4.345 * 4.0)
    row = values.set_index("customer_id").loc["c5"]  # one-time buyer: no rate, no naive value
    assert row["naive_clv"] == 0.0
    assert row["expected_average_order_value"] == pytest.approx(6.0 * 100.0 / 3.0)


# ------------------------------------------------------------------ numerics
def _assert_derivatives_match_finite_differences(model, params, columns):
    data = model.prepare(*columns)
    weights = np.array([1.0])
    ll, grad, hessian = model.log_likelihood(np.array(params), data, weights)
    frequency = columns[0][0]
    # central differences lose about eps * (size of the gammaln terms) / step to rounding
    scale = abs(ll[0]) + gammaln(sum(params) * (frequency + 1) + 1)
    for i in range(len(params)):
        step = 1e-6 * params[i]
        up, down = np.array(params), np.array(params)
        up[i] += step
        down[i] -= step
        ll_up, grad_up = model.log_likelihood(up, data)
        ll_down, grad_down = model.log_likelihood(down, data)
        roundoff = 1e-14 * scale / step
        assert grad[0, i] == pytest.approx(
            (ll_up[0] - ll_down[0]) / (2 * step), rel=1e-4, abs=1e-6 + roundoff
        )
        numeric = (grad_up[0] - grad_down[0]) / (2 * step)
        curvature_roundoff = 1e-13 * (np.abs(grad[0]).max() + scale) / step
        assert hessian[:, i] == pytest.approx(
            numeric, rel=1e-4, abs=1e-6 + curvature_roundoff + _quadrature_error(model, params)
        )


def _quadrature_error(model, params) -> float:
    """What Pareto/NBD's quadrature over the dropout moment (1e-7 relative, see
    test_the_pareto_nbd_quadrature_matches_adaptive_integration) leaves in a Hessian entry:
    the entry is a small difference of terms as large as r/alpha^2 and s/beta^2, so it keeps
    only 1e-7 of their size (at r, alpha, s, beta = 1, 1, 8, 0.055 and x = 0, T = 4, the
    beta-beta entry is 0.0681 out of terms of 2,675; the closed forms have no such error)."""
    if model is not ParetoNBDModel:
        return 0.0
    r, alpha, s, beta = params
    return 1e-7 * max(r / alpha**2, s / beta**2)


def test_the_pareto_nbd_hessian_where_beta_is_small():
    """The example hypothesis found: numeric curvature 0.068111 at every step from 1e-3 to
    1e-6 (relative), the quadrature-based entry 0.068079, 3e-5 apart."""
    columns = (np.array([0.0]), np.array([0.0]), np.array([4.0]))
    _assert_derivatives_match_finite_differences(
        ParetoNBDModel, (1.0, 1.0, 8.0, 0.0546875), columns
    )


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(*[st.floats(0.05, 20.0) for _ in range(4)]),
    st.integers(0, 400),
    st.floats(0.0, 1.0),
    st.floats(0.5, 500.0),
)
def test_purchase_model_derivatives_match_finite_differences(
    params, frequency, recency_share, big_t
):
    recency = recency_share * big_t if frequency else 0.0
    columns = (np.array([float(frequency)]), np.array([recency]), np.array([big_t]))
    for model in (BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel):
        _assert_derivatives_match_finite_differences(model, params, columns)


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(*[st.floats(0.1, 50.0) for _ in range(3)]),
    st.integers(1, 400),
    st.floats(0.5, 5000.0),
)
def test_gamma_gamma_derivatives_match_finite_differences(params, frequency, spend):
    columns = (np.array([float(frequency)]), np.array([spend]))
    _assert_derivatives_match_finite_differences(GammaGammaModel, params, columns)


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


@pytest.mark.parametrize("model", [BetaGeoModel, ModifiedBetaGeoModel])
def test_everyone_with_the_same_dropout_chance_is_valued_not_nan(model):
    # a and b run off together (a / (a + b) = 0.124 fixed, a + b in the 1e5s; seen fitting
    # MBG/NBD to 1,000 customers), where the hypergeometric series fails: the expectation is
    # the limit of a point-mass dropout chance, continuous with the series where it works
    x, big_t = np.array([0.0, 1.0, 3.0, 10.0, 40.0]), np.array([30.0, 30.0, 40.0, 50.0, 52.0])
    p = 0.124

    def expected(total):
        params = {"r": 0.42, "alpha": 8.3, "a": p * total, "b": (1 - p) * total}
        return model.from_params(params).predict_purchases_if_alive(52.0, x, big_t)

    limit = expected(1e7)
    for total in (1e4, 1e5):
        assert np.isfinite(expected(total)).all()
        assert expected(total) == pytest.approx(limit, rel=0.006)
    # the series converges to the limit as 1 / (a + b): ten times closer at 1e3 than at 1e2
    ratio = np.abs(expected(1e3) - limit) / np.abs(expected(1e2) - limit)
    assert ((ratio > 0.05) & (ratio < 0.2)).all()
    # by hand, the point mass: (1 - ((alpha + T) / (alpha + T + 52 p))^(r + x)) / p, at x = 0
    assert expected(1e7)[0] == pytest.approx((1 - (38.3 / (38.3 + 52 * p)) ** 0.42) / p, rel=1e-5)


def test_weighted_fit_equals_one_row_per_customer():
    cdnow = load_cdnow_summary()
    grouped = cdnow.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
    weighted = BetaGeoModel().fit(
        grouped["frequency"], grouped["recency"], grouped["T"], grouped["n"]
    )
    single = BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    for name in single.params_:
        assert weighted.params_[name] == pytest.approx(single.params_[name], rel=1e-6)
    assert weighted.log_likelihood_ == pytest.approx(single.log_likelihood_, rel=1e-9)
    assert weighted.n_rows_ == len(grouped) < single.n_rows_ == len(cdnow)
    with pytest.raises(ValueError, match="penalizer"):
        BetaGeoModel(penalizer=-1)


def _unit_free(model) -> np.ndarray:
    """The penalised coordinates of a fitted model: log(parameter - offset) - log(scale)."""
    params = np.array([model.params_[k] for k in model.param_names])
    return np.log(params - np.array(model.param_offsets)) - np.log(model.scales_)


def test_the_penalty_pulls_the_unit_free_coordinates_in_and_costs_likelihood():
    cdnow = load_cdnow_summary()
    free = BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    penalised = BetaGeoModel(penalizer=0.01).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert (_unit_free(penalised) ** 2).sum() < (_unit_free(free) ** 2).sum()
    assert penalised.log_likelihood_ < free.log_likelihood_
    assert all(math.isfinite(v) for v in penalised.standard_errors_.values())
    # the optimum of the penalised objective: its gradient in those coordinates is zero
    columns = tuple(cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    data, weights = BetaGeoModel.prepare(*columns), np.ones(len(cdnow))
    free_coordinates = np.ones(4, dtype=bool)
    theta = _unit_free(penalised)
    _, gradient = penalised._evaluate(theta, free_coordinates, theta, data, weights)
    assert np.abs(gradient).max() < 1e-8


@pytest.mark.parametrize("penalizer", [0.0, 0.01])
def test_fits_do_not_depend_on_the_currency_or_the_time_unit(penalizer):
    spend = load_cdnow_summary_data_with_monetary_value()
    repeat = spend[spend["frequency"] > 0]
    pounds = GammaGammaModel(penalizer).fit(repeat["frequency"], repeat["monetary_value"])
    pence = GammaGammaModel(penalizer).fit(repeat["frequency"], 100 * repeat["monetary_value"])
    assert pence.params_["p"] == pytest.approx(pounds.params_["p"], rel=1e-9)
    assert pence.params_["q"] == pytest.approx(pounds.params_["q"], rel=1e-9)
    assert pence.params_["gamma"] == pytest.approx(100 * pounds.params_["gamma"], rel=1e-9)
    x, m = spend["frequency"], spend["monetary_value"]
    assert pence.predict_average_order_value(x, 100 * m) == pytest.approx(
        100 * pounds.predict_average_order_value(x, m), rel=1e-9
    )

    cdnow = load_cdnow_summary()
    weeks = BetaGeoModel(penalizer).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    days = BetaGeoModel(penalizer).fit(cdnow["frequency"], 7 * cdnow["recency"], 7 * cdnow["T"])
    for name in ("r", "a", "b"):
        assert days.params_[name] == pytest.approx(weeks.params_[name], rel=1e-9), name
    assert days.params_["alpha"] == pytest.approx(7 * weeks.params_["alpha"], rel=1e-9)
    x, t_x, big_t = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    assert days.predict_purchases(7 * 52, x, 7 * t_x, 7 * big_t) == pytest.approx(
        weeks.predict_purchases(52, x, t_x, big_t), rel=1e-9
    )


def _nbd_histories(n: int, r: float, alpha: float, seed: int):
    """Customers who never drop out: Poisson purchases at a Gamma(r, alpha) rate (weeks)."""
    rng = np.random.default_rng(seed)
    big_t = rng.uniform(1.0, 100.0, n).round(1)
    rate = rng.gamma(r, 1.0 / alpha, n)
    x = rng.poisson(rate * big_t).astype(float)
    # the last of x uniform purchase times
    recency = np.where(x > 0, big_t * rng.beta(np.maximum(x, 1), 1.0), 0.0).round(1)
    return x, recency, big_t


def _nbd_fit(x, t_x, big_t) -> tuple[np.ndarray, float]:
    """The NBD's own maximum likelihood (r, alpha) and log-likelihood, written out
    independently of the models."""

    def negative_log_likelihood(log_params):
        r, alpha = np.exp(log_params)
        return -(
            gammaln(r + x) - gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + big_t)
        ).sum()

    result = minimize(
        negative_log_likelihood,
        [0.0, 1.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 5000},
    )
    return np.exp(result.x), -result.fun


def test_no_detectable_dropout_is_a_boundary_fit_valued_with_the_nbd():
    # nobody drops out; in about half of such samples (this seed's among them) the likelihood
    # is highest as a -> 0, the NBD
    x, t_x, big_t = _nbd_histories(20_000, r=0.8, alpha=6.0, seed=0)
    model = BetaGeoModel().fit(x, t_x, big_t)
    assert model.boundary_ == ["a → 0"]
    assert "No dropout is detectable" in model.note_
    assert model.params_["a"] == 0.0 and model.params_["b"] is None
    nbd, nbd_log_likelihood = _nbd_fit(x, t_x, big_t)
    assert model.params_["r"] == pytest.approx(nbd[0], rel=1e-5)
    assert model.params_["alpha"] == pytest.approx(nbd[1], rel=1e-5)
    assert model.log_likelihood_ == pytest.approx(nbd_log_likelihood, rel=1e-10)
    assert model.standard_errors_["a"] is None and model.standard_errors_["b"] is None
    assert model.standard_errors_["r"] > 0 and model.standard_errors_["alpha"] > 0
    json.dumps(model.summary(), allow_nan=False)

    assert (model.predict_probability_alive(x, t_x, big_t) == 1.0).all()
    r, alpha = model.params_["r"], model.params_["alpha"]
    assert model.predict_purchases(13.0, x, t_x, big_t) == pytest.approx(
        (r + x) * 13.0 / (alpha + big_t), rel=1e-12
    )
    # read back from its JSON, the model predicts the same
    again = BetaGeoModel.from_params(json.loads(json.dumps(model.summary())))
    assert again.predict_purchases(13.0, x, t_x, big_t) == pytest.approx(
        model.predict_purchases(13.0, x, t_x, big_t), rel=1e-15
    )
    # a small penalty keeps a off the boundary, with nearly the same likelihood
    penalised = BetaGeoModel(penalizer=1e-4).fit(x, t_x, big_t)
    assert penalised.boundary_ == [] and 0 < penalised.params_["a"] < 0.1
    assert penalised.log_likelihood_ == pytest.approx(model.log_likelihood_, rel=1e-4)


def test_pareto_nbd_without_detectable_dropout_is_the_nbd_too():
    x, t_x, big_t = _nbd_histories(20_000, r=0.8, alpha=6.0, seed=0)
    model = ParetoNBDModel().fit(x, t_x, big_t)
    assert model.boundary_ == ["s → 0"]
    assert "No dropout is detectable" in model.note_
    assert model.params_["s"] == 0.0 and model.params_["beta"] is None
    nbd, nbd_log_likelihood = _nbd_fit(x, t_x, big_t)
    assert [model.params_["r"], model.params_["alpha"]] == pytest.approx(nbd, rel=1e-5)
    assert model.log_likelihood_ == pytest.approx(nbd_log_likelihood, rel=1e-10)
    again = ParetoNBDModel.from_params(json.loads(json.dumps(model.summary())))
    assert (again.predict_probability_alive(x, t_x, big_t) == 1.0).all()
    r, alpha = nbd
    assert again.predict_purchases(13.0, x, t_x, big_t) == pytest.approx(
        (r + x) * 13.0 / (alpha + big_t), rel=1e-5
    )
    assert again.predict_no_purchase(13.0, x, t_x, big_t) == pytest.approx(
        ((alpha + big_t) / (alpha + big_t + 13.0)) ** (r + x), rel=1e-5
    )


def test_a_tiny_interior_dropout_is_kept_when_the_data_prefer_it_to_the_nbd():
    # the same process, another seed: the optimum is inside, a little better than the NBD
    x, t_x, big_t = _nbd_histories(20_000, r=0.8, alpha=6.0, seed=3)
    model = BetaGeoModel().fit(x, t_x, big_t)
    assert model.boundary_ == [] and model.note_ == ""
    _, nbd_log_likelihood = _nbd_fit(x, t_x, big_t)
    assert model.log_likelihood_ > nbd_log_likelihood
    a, b = model.params_["a"], model.params_["b"]
    assert a / (a + b) < 0.01  # a mean dropout probability near 0


def test_spend_too_heavy_tailed_for_a_mean_is_a_boundary_at_q_1_with_positive_values():
    rng = np.random.default_rng(4)
    n = 20_000
    x = rng.integers(1, 12, n).astype(float)
    scale = 1.0 / rng.gamma(0.7, 1.0 / 20.0, n)  # q = 0.7 < 1: the mean spend is infinite
    m = rng.gamma(4.0 * x, scale) / x
    model = GammaGammaModel().fit(x, m)
    assert model.boundary_ == ["q → 1"]
    assert "heavy-tailed" in model.note_
    assert model.population_mean_ == pytest.approx(m.mean(), rel=1e-12)
    values = model.predict_average_order_value(np.append(x, 0.0), np.append(m, 0.0))
    assert np.isfinite(values).all() and (values > 0).all()
    assert values[-1] == pytest.approx(m.mean())  # a one-time buyer: the observed mean
    json.dumps(model.summary(), allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    r=st.floats(0.01, 50.0),
    alpha=st.floats(0.01, 500.0),
    a=st.one_of(st.just(0.0), st.just(1.0), st.floats(1e-4, 20.0)),
    b=st.floats(1e-3, 50.0),
    q=st.floats(1.0 + 1e-9, 30.0),
    days=st.integers(0, 3000),
    purchase_share=st.floats(0.0, 1.0),
    recency_share=st.floats(0.0, 1.0),
    spend=st.floats(0.01, 1e7),
)
def test_predictions_are_finite_and_non_negative_everywhere(
    r, alpha, a, b, q, days, purchase_share, recency_share, spend
):
    """Any history a daily summary can hold (at most one purchase a day; heavy buyers with
    short histories included), in weeks, and any parameters, boundary limits included."""
    frequency = round(purchase_share * days)
    last_day = max(frequency, round(recency_share * days))
    x, t_x, big_t = float(frequency), last_day / 7 if frequency else 0.0, days / 7
    pareto = {"r": r, "alpha": alpha, "s": a, "beta": b}  # s = 0: no dropout
    for model, params in (
        (BetaGeoModel, {"r": r, "alpha": alpha, "a": a, "b": b}),
        (ModifiedBetaGeoModel, {"r": r, "alpha": alpha, "a": a, "b": b}),
        (ParetoNBDModel, pareto),
    ):
        purchases = model.from_params(params)
        alive = purchases.predict_probability_alive(x, t_x, big_t)
        near, far = (purchases.predict_purchases(t, x, t_x, big_t) for t in (4.0, 52.0))
        quiet = purchases.predict_no_purchase(13.0, x, t_x, big_t)
        assert np.isfinite([alive, near, far, quiet]).all()
        assert 0.0 <= alive <= 1.0 and 0.0 <= near <= far and 0.0 <= quiet <= 1.0
    spend_model = GammaGammaModel.from_params({"p": 3.0, "q": q, "gamma": 40.0})
    value = spend_model.predict_average_order_value(x, spend if frequency else 0.0)
    assert np.isfinite(value) and value > 0


def test_empty_input_is_a_clear_error(spark):
    empty = spark.createDataFrame(
        [], "frequency long, recency double, T double, monetary_value double"
    )
    with pytest.raises(ValueError, match="no customers to fit"):
        fit_cltv_models(empty.filter(F.lit(False)), cltv_params(), "W")
