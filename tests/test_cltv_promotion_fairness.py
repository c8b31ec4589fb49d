"""The CLV decision is fair (issue 46): neither the challenger, fitted up to observation_end,
nor the champion, fitted by an earlier run, is ranked on data it was fitted on. Each side's
recipe is fitted on this run's calibration period and those fits are ranked on the holdout.
On real local Spark and a real MLflow registry, without a whole run."""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd
import pytest

from cltv.datasets import MlflowCltvModelDataset
from cltv.models.value_model import INPUT_COLUMNS, CustomerValueModel
from cltv.pipelines.cltv.nodes import (
    fit_chosen_model,
    fit_cltv_models,
    naive_baseline,
    promote_cltv_model,
)
from cltv.pipelines.data_processing.nodes import (
    build_current_customer_summary,
    build_customer_summary,
    resolve_analysis_period,
)

from .conftest import top_fifth_share
from .test_cltv_models import cltv_params

PROMOTION = {
    "registered_model": "cltv_value",
    "alias": "champion",
    "metric": "holdout_revenue_top_20pct",
    "min_gain": 0.005,
}
VALUATION = {"horizon_months": 12, "discount_rate": 0.01, "margin": 1.0}
UNCERTAINTY = {"interval": 0.8, "draws": 20, "seed": 5}
FIT_LOGGER = "cltv.pipelines.cltv.nodes"


@pytest.fixture(scope="module")
def data(spark):
    """1,500 seeded customers buying at their own rate until they drop out, over two years:
    the calibration summary (to 2021-07-04), the current one (to 2021-12-31: it also has the
    customers who first bought in the holdout), this run's calibration fit, and the run's CLV
    model (the challenger), fitted up to observation_end as the pipeline fits it."""
    rng = np.random.default_rng(46)
    rows = []
    for customer in range(1500):
        rate, dropout = rng.gamma(0.8, 1 / 20), rng.beta(1, 4)
        spend = rng.gamma(4, 10)
        day = rng.uniform(0, 700)
        while day < 730:
            rows.append((f"c{customer}", int(day), float(spend * rng.gamma(5) / 5)))
            if rng.uniform() < dropout:
                break
            day += rng.exponential(1 / rate)
    frame = pd.DataFrame(rows, columns=["customer_id", "offset", "revenue"])
    frame["day"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(frame["offset"], unit="D")
    days = spark.createDataFrame(
        frame.groupby(["customer_id", "day"], as_index=False)["revenue"].sum()
    ).selectExpr("customer_id", "cast(day as date) as day", "revenue")
    period = resolve_analysis_period(days, "2021-12-31", None, 180)
    summary = build_customer_summary(days, period, "W").cache()
    current = build_current_customer_summary(days, period, "W").cache()
    # BG/NBD alone, for speed: the other candidates' fits change nothing here
    calibration_fit = fit_cltv_models(summary, {**cltv_params(), "candidates": ["bgnbd"]}, "W")
    model_fit = fit_chosen_model(current, cltv_params(), "W", {"selection": {"chosen": "bgnbd"}})
    naive = naive_baseline(summary, period)
    return {
        "period": period,
        "summary": summary,
        "frame": summary.toPandas(),
        "current": current,
        "calibration_fit": calibration_fit,
        "challenger": CustomerValueModel(model_fit, naive, VALUATION, UNCERTAINTY),
        "naive": naive,
    }


def _register(model: CustomerValueModel) -> None:
    MlflowCltvModelDataset(
        save_args={"name": "cltv_value_model", "registered_model_name": "cltv_value"}
    ).save(model)


def _promote_against(champion: CustomerValueModel, data, registry, caplog) -> dict:
    """The champion registered with the alias by an earlier run; this run registers the
    challenger and decides. Returns the decision and the fits logged while deciding."""
    with mlflow.start_run():
        _register(champion)
    registry.set_registered_model_alias("cltv_value", "champion", "1")
    with mlflow.start_run():
        _register(data["challenger"])
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=FIT_LOGGER):
            decided = promote_cltv_model(
                data["challenger"],
                data["summary"],
                data["calibration_fit"],
                data["period"],
                PROMOTION,
            )
    # the decision first, the model that values customers and its fit last
    decision, production = decided[0], decided[-2]
    # fit_cltv_models logs each purchase model it fits, with its log-likelihood
    fits = [r.getMessage() for r in caplog.records if "(log-likelihood" in r.getMessage()]
    return {"decision": decision, "production": production, "fits": fits}


def _top_fifth_share(model: CustomerValueModel, frame: pd.DataFrame) -> float:
    clv = model.predict(None, frame[list(INPUT_COLUMNS)])["clv"].to_numpy()
    return top_fifth_share(clv, frame["frequency_holdout"] * frame["monetary_value_holdout"])


def _calibration_fit_of(fit: dict, name: str) -> dict:
    return {**fit, "purchase_model": name}


def test_both_sides_are_scored_by_refits_that_never_saw_the_holdout(data, registry, caplog):
    period, frame = data["period"], data["frame"]
    n_calibration, n_current = len(frame), data["current"].count()
    # the challenger was fitted on more customers than the calibration period has: it has
    # seen the holdout
    assert data["challenger"].fit["bgnbd"]["n_customers"] == n_current > n_calibration
    # a champion of another recipe (a penalized BG/NBD), fitted by an earlier run on data that
    # also went through this run's holdout
    penalized = {"bgnbd": {"penalizer": 0.05}, "gamma_gamma": {"penalizer": 0.0}}
    champion_fit = fit_cltv_models(data["current"], penalized, "W", purchase_models=["bgnbd"])
    champion = CustomerValueModel(
        {**champion_fit, "purchase_model": "bgnbd"}, data["naive"], VALUATION, UNCERTAINTY
    )
    decided = _promote_against(champion, data, registry, caplog)
    decision = decided["decision"]

    calibration = f"{period['first_transaction_date']} to 2021-07-04"
    assert decision["challenger"]["scored_with"] == {
        "recipe": {"purchase_model": "bgnbd", "penalizer": 0.0, "gamma_gamma_penalizer": 0.0},
        "fit": f"refit on this run's calibration period, {calibration}",
        "source": "this run's calibration fit (cltv_calibration_fit)",
        "n_customers": n_calibration,
    }
    assert decision["champion"]["scored_with"] == {
        "recipe": {"purchase_model": "bgnbd", "penalizer": 0.05, "gamma_gamma_penalizer": 0.0},
        "fit": f"refit on this run's calibration period, {calibration}",
        "source": "refitted for this decision",
        "n_customers": n_calibration,
    }
    assert decision["scoring"] == (
        "each side's recipe (purchase model, penalizers) and settings refit on this run's "
        f"calibration period, {calibration}, and ranked on its holdout, 2021-07-05 to "
        "2021-12-31: neither model is scored on data it was fitted on"
    )
    # the challenger's recipe is this run's calibration fit, so only the champion's recipe
    # is fitted, once, on the calibration period's customers
    assert len(decided["fits"]) == 1
    assert decided["fits"][0].startswith("BG/NBD {")
    assert decided["fits"][0].endswith(f", {n_calibration} customers)")

    # the scores are the refits' rankings, not the registered fits' (the old rule's)
    challenger_refit = CustomerValueModel(
        _calibration_fit_of(data["calibration_fit"], "bgnbd"),
        data["naive"],
        VALUATION,
        UNCERTAINTY,
    )
    champion_refit_fit = fit_cltv_models(data["summary"], penalized, "W", purchase_models=["bgnbd"])
    champion_refit = CustomerValueModel(
        _calibration_fit_of(champion_refit_fit, "bgnbd"), data["naive"], VALUATION, UNCERTAINTY
    )
    fair = {
        "challenger": _top_fifth_share(challenger_refit, frame),
        "champion": _top_fifth_share(champion_refit, frame),
    }
    old = {
        "challenger": _top_fifth_share(data["challenger"], frame),
        "champion": _top_fifth_share(champion, frame),
    }
    for side in ("challenger", "champion"):
        assert decision[side]["score"] == pytest.approx(fair[side], rel=1e-9)
        assert abs(fair[side] - old[side]) > 1e-6, side
    # what values customers is still the full fit, up to observation_end
    production = data["challenger"] if decision["promoted"] else champion
    assert decided["production"].fit == production.fit


def test_a_champion_with_the_challengers_recipe_is_refreshed_without_a_second_fit(
    data, registry, caplog
):
    # the same recipe and settings, fitted by an earlier run on other data (an earlier
    # observation_end): refitted on this run's calibration period, it is the challenger's fit
    earlier = data["summary"].filter("T > 20")
    champion_fit = fit_cltv_models(earlier, cltv_params(), "W", purchase_models=["bgnbd"])
    champion = CustomerValueModel(
        {**champion_fit, "purchase_model": "bgnbd"}, data["naive"], VALUATION, UNCERTAINTY
    )
    assert champion.fit["bgnbd"]["r"] != data["challenger"].fit["bgnbd"]["r"]
    decided = _promote_against(champion, data, registry, caplog)
    decision = decided["decision"]

    assert decided["fits"] == []  # nothing fitted: both are this run's calibration fit
    assert decision["champion"]["score"] == decision["challenger"]["score"]
    assert decision["champion"]["scored_with"]["source"] == (
        "the challenger's refit: the same recipe and settings"
    )
    assert decision["champion"]["scored_with"]["n_customers"] == len(data["frame"])
    # no score can prefer either: the fit on this run's data values customers from now on
    assert decision["outcome"] == "refreshed" and decision["promoted"] is True
    assert decision["reason"].startswith("refreshed: a tie, ")
    assert (
        "; the champion has the challenger's recipe (BG/NBD penalizer 0.0, Gamma-Gamma "
        "penalizer 0.0) and settings, so refitted on this run's calibration period they are "
        "the same model, and no score can prefer either; fitted on this run's data (up to "
    ) in decision["reason"]
    assert decision["reason"].endswith(
        f"{data['challenger'].fit['bgnbd']['n_customers']} customers) rather than the "
        f"champion's run's ({champion.fit['bgnbd']['n_customers']} customers), the challenger "
        "takes the alias"
    )
    assert decided["production"].fit == data["challenger"].fit
    # the same recipe on the same data finds the same parameters: a tie the champion keeps
    # (test_two_default_runs_leave_both_models_with_the_first_as_champion)
