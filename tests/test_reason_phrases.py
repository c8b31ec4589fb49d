"""The churn reason in words says what the number is, as a risk: P(alive) is a probability of
still being an active customer (and nothing for a one-time buyer), percentages read 0% or 100%
only when exact, the horizon is in days, a lapsed customer's trend reads as no spend, and a
segment named for praise is never the reason in words (the text takes the next reason)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cltv.pipelines.churn_modeling import reasons
from cltv.pipelines.churn_modeling.nodes import score_customers

ALIVE = "the purchase model's probability of still being an active customer is"


def words(feature: str, value, **customer) -> str | None:
    return reasons.phrase_for(feature)(value, {feature: value, **customer})


@pytest.mark.parametrize(
    ("value", "customer", "expected"),
    [
        # BG/NBD gives every customer without a repeat purchase P(alive) = 1
        (1.0, {"n_purchase_days": 1}, "one purchase only: the purchase model cannot tell yet"),
        (0.14, {"n_purchase_days": 3}, f"{ALIVE} 14%"),
    ],
)
def test_p_alive_is_the_probability_of_still_being_active(value, customer, expected):
    assert words("btyd_p_alive", value, **customer) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.996, "99.6%"),
        (0.002, "0.2%"),
        (0.99996, "over 99.9%"),
        (0.00004, "under 0.1%"),
        (1.0, "100%"),
        (0.0, "0%"),
    ],
)
def test_a_percentage_reads_0_or_100_only_when_exact(value, expected):
    assert words("btyd_p_alive", value, n_purchase_days=4) == f"{ALIVE} {expected}"


@pytest.mark.parametrize(
    ("trend", "expected"),
    [
        # change = 2 v / (1 - v): 0.002 / 1.002 is +0.2%, -0.995 is -99.7%
        (0.002 / 2.002, "spend rose 0.2% against the previous 180 days"),
        (-0.995, "spend fell 99.7% against the previous 180 days"),
    ],
)
def test_a_spend_change_reads_0_or_100_only_when_exact(trend, expected):
    assert words("revenue_trend_180d", trend, revenue_last_180d=10.0) == expected


def test_no_share_strictly_between_0_and_1_reads_0_or_100_percent():
    shares = [*np.linspace(0.0001, 0.9999, 9999), 1e-9, 1 - 1e-9]
    texts = [words("btyd_p_alive", share, n_purchase_days=2) for share in shares]
    assert not [t for t in texts if re.search(r"(?<![\d.])(0|100)(\.0)?%", t)]


def test_expected_purchases_are_over_the_horizon_in_days():
    assert (
        words("btyd_expected_purchases", 0.42, horizon_days=90)
        == "the purchase model expects only 0.4 purchases over the next 90 days"
    )


@pytest.mark.parametrize(
    ("revenue_last", "expected"),
    [
        # revenue_trend is 0 when neither window has spend: a lapsed customer
        (0.0, "no spend in the last 360 days"),
        (120.0, "spend no higher than in the previous 180 days"),
    ],
)
def test_a_trend_of_0_reads_as_no_spend_when_there_was_none(revenue_last, expected):
    assert words("revenue_trend_180d", 0.0, revenue_last_180d=revenue_last) == expected


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (17.0, "no purchase for 120 days; this customer usually buys every 17 days"),
        (1.0, "no purchase for 120 days; this customer usually buys every 1 day"),
    ],
)
def test_the_usual_gap_between_purchases_is_in_days(gap, expected):
    customer = {"n_purchase_days": 4, "mean_days_between_purchases": gap}
    assert words("recency_days", 120, **customer) == expected


@pytest.mark.parametrize(
    ("feature", "value", "customer", "expected"),
    [
        ("n_purchase_days", 2, {}, "only 2 purchase days so far"),
        ("is_repeat_customer", 1, {"n_purchase_days": 3}, "only 3 purchase days so far"),
        ("n_invoices", 3, {}, "only 3 orders"),
        ("purchases_last_90d", 2, {}, "only 2 purchase days in the last 90 days"),
        ("purchases_last_30d", 1, {}, "only 1 purchase day in the last 30 days"),
        ("revenue_last_90d", 80.4, {}, "only 80 spent in the last 90 days"),
        ("monetary_total", 250.0, {}, "only 250 spent in all"),
        ("monetary_mean", 25.0, {}, "only 25 spent per purchase day"),
        ("distinct_products", 40, {}, "only 40 different products bought"),
        (
            "mean_days_between_purchases",
            45.0,
            {"n_purchase_days": 3},
            "buys only every 45 days on average",
        ),
    ],
)
def test_a_reason_reads_as_a_risk_not_a_fact(feature, value, customer, expected):
    assert words(feature, value, **customer) == expected


@pytest.mark.parametrize(
    "segment",
    ["Champions", "Loyal Customers", "Potential Loyalists", "Promising", "New Customers"],
)
def test_a_segment_named_for_praise_has_no_words_as_a_churn_reason(segment):
    assert words("rfm_segment", segment) is None


@pytest.mark.parametrize(
    "segment", ["At Risk", "Cannot Lose Them", "Hibernating", "About To Sleep", "Need Attention"]
)
def test_a_segment_named_for_a_risk_reads_as_it_is(segment):
    assert words("rfm_segment", segment) == f"in the RFM segment '{segment}'"


def _praising_model() -> Pipeline:
    """A logistic regression that holds 'Champions' against a customer, as one fitted on
    inputs derived from each other can. Training: trend 0.5 and 1.0 (mean 0.75, sd 0.25),
    expected purchases 1 and 3 (mean 2, sd 1), one At Risk and one Champions; log-odds =
    -z(trend) - z(expected) + 1 [At Risk] + 10 [Champions], with the training mean (0, 0, 0.5,
    0.5). So the trend pushes 3 - 4 t, the expected purchases 2 - e, Champions 4.5, and the
    bias is 0.5 + 5 = 5.5."""
    numeric = ["revenue_trend_180d", "btyd_expected_purchases"]
    training = pd.DataFrame(
        {numeric[0]: [0.5, 1.0], numeric[1]: [1.0, 3.0], "rfm_segment": ["At Risk", "Champions"]}
    )
    preparation = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ["rfm_segment"],
            ),
        ],
        verbose_feature_names_out=False,
    )
    classifier = LogisticRegression()
    classifier.classes_ = np.array([0, 1])
    classifier.coef_ = np.array([[-1.0, -1.0, 1.0, 10.0]])
    classifier.intercept_ = np.array([0.0])
    classifier.training_mean_ = np.array([0.0, 0.0, 0.5, 0.5])
    model = Pipeline([("prepare", preparation), ("classifier", classifier)])
    model.named_steps["prepare"].fit(training)
    return model


def _scored_by(model: Pipeline, customers: pd.DataFrame, spark, **reason_settings) -> dict:
    selection = {
        "selected": "logistic_regression",
        "threshold": {"value": 0.5},
        "btyd_features": {"used": False},
        "features": {
            "numeric": [f for f in model.feature_names_in_ if f != "rfm_segment"],
            "categorical": [f for f in model.feature_names_in_ if f == "rfm_segment"],
        },
    }
    predictions, _ = score_customers(
        model,
        spark.createDataFrame(customers),
        None,
        selection,
        {"churn_modeling.risk_bands": [{"name": "all", "min_probability": 0.0}]},
        {"observation_end": "2011-12-09", "holdout_days": 90},
        {"churn_reasons": 3, "retention_levers": 1, **reason_settings},
    )
    return {r["customer_id"]: r.asDict(recursive=True) for r in predictions.collect()}


def test_scoring_shows_only_reasons_that_say_something_of_the_customer(spark):
    """Four Champions whose segment pushes churn up the most: a segment named for praise is
    no reason to churn, and a trend of 0 with no spend in either window says nothing, so
    neither is shown and ``reasons_skipped`` counts them; the contributions stay exact."""
    model = _praising_model()
    customers = pd.DataFrame(
        {
            "customer_id": ["lapsed", "steady", "few", "none"],
            "revenue_trend_180d": [0.0, 0.0, 0.75, 1.0],  # pushes 3, 3, 0, -1
            "btyd_expected_purchases": [2.0, 2.0, 0.5, 3.0],  # pushes 0, 0, 1.5, -1
            "rfm_segment": ["Champions"] * 4,  # pushes 4.5
            # not an input: the trend's phrase reads it (none, or the same in both windows)
            "revenue_last_180d": [0.0, 60.0, 40.0, 90.0],
            "country": ["UK"] * 4,
        }
    )
    pushes, bias = reasons.contributions(model, customers)
    np.testing.assert_allclose(
        pushes, [[3.0, 0.0, 4.5], [3.0, 0.0, 4.5], [0.0, 1.5, 4.5], [-1.0, -1.0, 4.5]]
    )
    np.testing.assert_allclose(bias, 5.5)
    rows = _scored_by(model, customers, spark)
    # lapsed: the segment (praise) and the trend (no spend) are passed over; nothing else
    # pushes up, so no reason and no words
    assert rows["lapsed"]["churn_reasons"] == []
    assert rows["lapsed"]["churn_reason_text"] is None
    assert rows["lapsed"]["reasons_skipped"] == 2
    # steady spend is a trend of 0 that says something: spend did not grow
    assert rows["steady"]["churn_reasons"] == [
        {"feature": "revenue_trend_180d", "value": "0.0", "contribution": 3.0}
    ]
    assert rows["steady"]["churn_reason_text"] == "spend no higher than in the previous 180 days"
    assert rows["steady"]["reasons_skipped"] == 1
    assert rows["few"]["churn_reasons"] == [
        {"feature": "btyd_expected_purchases", "value": "0.5", "contribution": 1.5}
    ]
    assert rows["few"]["churn_reason_text"] == (
        "the purchase model expects only 0.5 purchases over the next 90 days"
    )
    # nothing but the segment pushes up; of the two levers (-1 each, the trend listed first)
    # only the trend is actionable by default
    assert rows["none"]["churn_reasons"] == []
    assert rows["none"]["churn_reason_text"] is None
    assert rows["none"]["retention_levers"] == [
        {"feature": "revenue_trend_180d", "value": "1.0", "contribution": -1.0}
    ]
    assert rows["none"]["retention_lever_text"] == (
        "all spend in the last 180 days, none in the 180 before"
    )
    assert rows["none"]["reasons_skipped"] == 1
    assert {r["horizon_days"] for r in rows.values()} == {90}


def _p_alive_model() -> Pipeline:
    """log-odds = -z(btyd_p_alive) + z(recency_days); training P(alive) 0.2 and 0.6 (mean 0.4,
    sd 0.2), recency 10 and 50 (mean 30, sd 20)."""
    numeric = ["btyd_p_alive", "recency_days"]
    preparation = ColumnTransformer(
        [("numeric", StandardScaler(), numeric)], verbose_feature_names_out=False
    )
    classifier = LogisticRegression()
    classifier.classes_ = np.array([0, 1])
    classifier.coef_ = np.array([[-1.0, 1.0]])
    classifier.intercept_ = np.array([0.0])
    classifier.training_mean_ = np.array([0.0, 0.0])
    model = Pipeline([("prepare", preparation), ("classifier", classifier)])
    model.named_steps["prepare"].fit(pd.DataFrame({numeric[0]: [0.2, 0.6], numeric[1]: [10, 50]}))
    return model


def test_p_alive_of_a_one_purchase_customer_is_neither_reason_nor_lever(spark):
    """P(alive) = 1, by construction for one purchase, pushes churn down by 3: the strongest
    lever, were it informative; with it offered as actionable, the lever is the next one."""
    customers = pd.DataFrame(
        {
            "customer_id": ["once", "twice"],
            "btyd_p_alive": [1.0, 1.0],  # pushes -3, -3
            "recency_days": [20.0, 20.0],  # pushes -0.5, -0.5
            "n_purchase_days": [1, 2],
            "mean_days_between_purchases": [0.0, 30.0],
            "rfm_segment": ["New Customers", "Promising"],
            "country": ["UK", "UK"],
        }
    )
    pushes, _ = reasons.contributions(_p_alive_model(), customers)
    np.testing.assert_allclose(pushes, [[-3.0, -0.5], [-3.0, -0.5]])
    rows = _scored_by(
        _p_alive_model(), customers, spark, actionable_levers=["btyd_p_alive", "recency_days"]
    )
    assert rows["once"]["retention_levers"] == [
        {"feature": "recency_days", "value": "20.0", "contribution": -0.5}
    ]
    assert rows["once"]["retention_lever_text"] == "last purchase 20 days ago"
    assert rows["once"]["reasons_skipped"] == 1
    assert rows["twice"]["retention_levers"][0]["feature"] == "btyd_p_alive"
    assert rows["twice"]["retention_lever_text"] == f"{ALIVE} 100%"
    assert rows["twice"]["reasons_skipped"] == 0
    # the default actionable inputs leave P(alive) out: recency is the lever of both
    default = _scored_by(_p_alive_model(), customers, spark)
    assert [r["retention_levers"][0]["feature"] for r in default.values()] == ["recency_days"] * 2
    assert default["twice"]["retention_lever_text"] == (
        "last purchase 20 days ago; usually buys every 30 days"
    )


def test_which_inputs_are_shown_for_each_customer():
    features = [
        "btyd_p_alive",
        "mean_days_between_purchases",
        "revenue_trend_90d",
        "rfm_segment",
        "recency_days",
    ]
    frame = pd.DataFrame(
        {
            "btyd_p_alive": [1.0, 0.4, 0.9],
            "mean_days_between_purchases": [0.0, 12.0, 30.0],
            "revenue_trend_90d": [0.0, 0.0, -1.0],
            "revenue_last_90d": [0.0, 50.0, 0.0],
            "rfm_segment": ["Champions", "At Risk", "loyal customers"],
            "recency_days": [300, 5, 100],
            "n_purchase_days": [1, 4, 3],
        }
    )
    as_reason, as_lever = reasons.shown_where(features, frame)
    assert as_reason.tolist() == [
        [False, False, False, False, True],  # one purchase; no spend either window; praise
        [True, True, True, True, True],  # a trend of 0 with spend; a segment named for risk
        [True, True, True, False, True],  # a trend of -1 says something; praise, any case
    ]
    # a segment is a lever only where named for praise; the rest as for reasons
    assert as_lever.tolist() == [
        [False, False, False, True, True],
        [True, True, True, False, True],
        [True, True, True, True, True],
    ]
    # with the training means: a reason only on the worse side of it, a lever on the better
    # (P(alive) and the trend better higher, the gap and recency better lower; a segment has
    # no mean)
    typical = {
        "btyd_p_alive": 0.5,
        "mean_days_between_purchases": 20.0,
        "revenue_trend_90d": -0.5,
        "recency_days": 100.0,
    }
    as_reason, as_lever = reasons.shown_where(features, frame, typical)
    assert as_reason.tolist() == [
        [False, False, False, False, True],  # recency 300 > 100: worse
        [True, False, False, True, False],  # P(alive) 0.4 is worse; gap 12, trend 0, recency 5
        [False, True, True, False, True],  # P(alive) 0.9 is better; gap 30; recency 100
    ]
    assert as_lever.tolist() == [
        [False, False, False, True, False],
        [False, True, True, False, True],
        [True, False, False, True, True],  # recency at the mean shows either way
    ]


def test_levers_are_the_inputs_a_team_can_act_on():
    from cltv.parameters import ACTIONABLE_LEVERS

    features = [
        "recency_days",
        "country",
        "tenure_days",
        "rfm_segment",
        "revenue_last_30d",
        "revenue_trend_180d",
        "purchases_last_90d",
        "btyd_p_alive",
        "n_purchase_days",
    ]
    assert reasons.actionable(features, ACTIONABLE_LEVERS).tolist() == [
        True, False, False, False, True, True, True, False, True,
    ]  # fmt: skip
    assert reasons.actionable(features, ["revenue_*"]).tolist() == [
        False, False, False, False, True, True, False, False, False,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("feature", "value", "customer", "expected"),
    [
        ("recency_days", 0, {}, "last purchase today"),
        ("recency_days", 12, {"n_purchase_days": 5, "mean_days_between_purchases": 30.0},
         "last purchase 12 days ago; usually buys every 30 days"),
        ("recency_days", 12, {"n_purchase_days": 1, "mean_days_between_purchases": 0.0},
         "last purchase 12 days ago"),
        ("n_purchase_days", 14, {}, "14 purchase days so far"),
        ("n_purchase_days", 1, {}, "one purchase day so far"),
        ("n_invoices", 20, {}, "20 orders so far"),
        ("monetary_total", 4200.4, {}, "4,200 spent in all"),
        ("monetary_mean", 310.0, {}, "310 spent per purchase day"),
        ("mean_days_between_purchases", 21.0, {"n_purchase_days": 4},
         "buys every 21 days on average"),
        ("purchases_last_90d", 3, {}, "3 purchase days in the last 90 days"),
        ("purchases_last_30d", 1, {}, "one purchase day in the last 30 days"),
        ("revenue_last_180d", 950.0, {}, "950 spent in the last 180 days"),
        ("revenue_trend_180d", 0.2, {}, "spend rose 50% against the previous 180 days"),
        ("revenue_trend_180d", 0.0, {"revenue_last_180d": 10.0},
         "spend as in the previous 180 days"),
        ("btyd_expected_purchases", 2.04, {"horizon_days": 90},
         "the purchase model expects 2.0 purchases over the next 90 days"),
    ],
)  # fmt: skip
def test_a_lever_reads_as_what_holds_the_customer(feature, value, customer, expected):
    assert reasons.phrase_for(feature, lever=True)(value, {feature: value, **customer}) == expected
