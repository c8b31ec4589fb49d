"""Each customer's CLV computed by hand: margin x expected order value x P(alive) x the
purchases expected over the horizon, each month discounted. A fit whose every factor has a
closed form: BG/NBD in its no-dropout limit (the NBD: everyone alive, (r + x) t / (alpha + T)
purchases in t days), Gamma-Gamma's order value a weighted mean of the population's and the
customer's own, and no covariance (every parameter draw is the estimate, so the interval is
the value itself). Quick (no Spark), so that a value model that drops a factor, the margin
say, goes red before a whole run does."""

from __future__ import annotations

import pandas as pd
import pytest

from cltv.models.value_model import CustomerValueModel

FIT = {
    "time_unit": "D",  # a month is 30 days
    "purchase_model": "bgnbd",
    "bgnbd": {"r": 1.0, "alpha": 9.0, "a": 0.0, "b": None, "boundary": ["a"]},
    # population mean order value p gamma / (q - 1) = 10
    "gamma_gamma": {"p": 1.0, "q": 3.0, "gamma": 20.0, "population_mean": 10.0, "boundary": []},
}
NAIVE = {"expected_lifespan_months": 20.0, "mean_repeat_order_value": 30.0}
UNCERTAINTY = {"interval": 0.8, "draws": 5, "seed": 1}
# a repeat buyer (2 repeat purchases, 40 a time, 21 days since the first) and a one-time buyer
CUSTOMERS = pd.DataFrame(
    {
        "customer_id": ["repeat", "once"],
        "frequency": [2, 0],
        "recency": [15.0, 0.0],
        "T": [21.0, 21.0],
        "monetary_value": [40.0, 0.0],
    }
)
# purchases a month: (r + x) x 30 / (alpha + T) = 3 x 30 / 30 and 1 x 30 / 30
MONTHLY = [3.0, 1.0]
# order value: weight p x / (p x + q - 1) on the own mean: 0.5 x 10 + 0.5 x 40, and 10
ORDER_VALUE = [25.0, 10.0]


def _model(horizon_months: int, discount_rate: float, margin: float) -> CustomerValueModel:
    valuation = {
        "horizon_months": horizon_months,
        "discount_rate": discount_rate,
        "margin": margin,
    }
    return CustomerValueModel(FIT, NAIVE, valuation, UNCERTAINTY)


@pytest.mark.parametrize(
    ("horizon_months", "discount_rate", "margin", "expected_clv"),
    [
        # 0.5 x 25 x 1 x 3 and 0.5 x 10 x 1 x 1
        (1, 0.0, 0.5, [37.5, 5.0]),
        (1, 0.0, 1.0, [75.0, 10.0]),
        # two months, the second discounted once more: 0.3 x 25 x (3 / 1.01 + 3 / 1.01^2)
        (2, 0.01, 0.3, [0.3 * 25 * (3 / 1.01 + 3 / 1.01**2), 0.3 * 10 * (1 / 1.01 + 1 / 1.01**2)]),
    ],
)
def test_clv_is_margin_times_order_value_times_discounted_purchases(
    horizon_months, discount_rate, margin, expected_clv
):
    model = _model(horizon_months, discount_rate, margin)
    histories = CUSTOMERS.drop(columns="customer_id")
    predicted = model.predict(None, histories)
    assert predicted["p_alive"].tolist() == [1.0, 1.0]
    assert predicted["expected_purchases"].to_numpy() == pytest.approx(
        [horizon_months * m for m in MONTHLY], rel=1e-12
    )
    assert predicted["expected_average_order_value"].to_numpy() == pytest.approx(
        ORDER_VALUE, rel=1e-12
    )
    for column in ("clv", "clv_lower", "clv_upper"):
        assert predicted[column].to_numpy() == pytest.approx(expected_clv, rel=1e-12), column
    # the table's batches (predict_customer_value) and the ranking's (promote_cltv_model)
    # value alike
    (table,) = model.value_batches(iter([CUSTOMERS]))
    assert table["clv"].to_numpy() == pytest.approx(expected_clv, rel=1e-12)
    assert table["clv_draw_sums"][0] == pytest.approx([sum(expected_clv)] * 5, rel=1e-12)
    (scored,) = model.score_batches(iter([CUSTOMERS]))
    assert scored["clv"].to_numpy() == pytest.approx(expected_clv, rel=1e-12)


def test_the_naive_clv_is_margin_times_own_order_value_times_the_rate_so_far():
    # the repeat buyer: 0.5 x 40 x (2 / 21 a day x 30 days) x min(1 month horizon, 20 months
    # lifespan); the one-time buyer has no repeat rate
    (table,) = _model(1, 0.0, 0.5).value_batches(iter([CUSTOMERS]))
    assert table["naive_clv"].to_numpy() == pytest.approx([0.5 * 40 * 2 / 21 * 30, 0.0])
    # the lifespan (20 months) caps a longer horizon
    (table,) = _model(36, 0.0, 0.5).value_batches(iter([CUSTOMERS]))
    assert table["naive_clv"].to_numpy() == pytest.approx([0.5 * 40 * 2 / 21 * 30 * 20, 0.0])
