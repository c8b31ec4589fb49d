"""The champion / challenger rules of ``cltv.promotion`` (issue 36), on a real MLflow registry
and without a run: settings are part of a model, only "not found" means no champion, a
missing score never replaces one, a tie is not a win, and the alias is read once."""

from __future__ import annotations

import shutil

import mlflow
import pytest
from kedro.io import DatasetError

from cltv import promotion
from cltv.datasets import ChampionModel, MlflowChampionDataset, MlflowCltvModelDataset
from cltv.models.value_model import CustomerValueModel
from cltv.pipelines.scoring.nodes import unpack_champions
from cltv.warm_start import make_mlflow_store_template

from .conftest import free_port
from .test_value_model import FIT, NAIVE, UNCERTAINTY, VALUATION

RULES = {"alias": "champion", "metric": "holdout_revenue_top_20pct", "min_gain": 0.005}
SETTINGS = {"time_unit": "W", "margin": 1.0, "horizon_months": 12}


def _decide(score, champion_score, settings=SETTINGS, champion_settings=SETTINGS, **extra):
    champion = {"version": 1, "score": champion_score, "settings": champion_settings}
    return promotion.challenge(
        "cltv_value", 2, RULES, {"score": score, "settings": settings, **extra}, champion
    )


def test_changed_settings_take_the_alias_whatever_the_metric_says():
    decision = _decide(0.40, 0.70, settings={**SETTINGS, "margin": 0.25})
    assert decision["promoted"] is True
    assert decision["reason"].startswith("settings changed: margin 1.0 → 0.25 (the champion")
    # a champion fitted in weeks is replaced by one in days, not compared with it
    decision = _decide(None, None, settings={**SETTINGS, "time_unit": "D"})
    assert decision["promoted"] is True
    assert "time_unit W → D" in decision["reason"]


@pytest.mark.parametrize(
    ("score", "champion", "outcome", "without_min_gain", "difference"),
    [
        (0.69304, 0.69296, "tie", "tie", "+0.0000"),  # both print as 0.6930 (Online Retail I)
        (0.70300, 0.70000, "tie", "better", "+0.0030"),  # better, but by less than min_gain
        (0.69700, 0.70000, "tie", "worse", "-0.0030"),
        (0.70500, 0.70000, "better", "better", "+0.0050"),  # exactly min_gain
        (0.69000, 0.70000, "worse", "worse", "-0.0100"),
        # the same printed difference gets the same word: as binary floats the first
        # difference is 0.00499999... and the second 0.00500000...04
        (0.565, 0.560, "better", "better", "+0.0050"),
        (0.560, 0.565, "worse", "worse", "-0.0050"),
        (0.5649, 0.560, "tie", "better", "+0.0049"),
    ],
)
def test_a_difference_below_min_gain_or_the_printed_precision_is_a_tie(
    score, champion, outcome, without_min_gain, difference
):
    decision = _decide(score, champion)
    assert decision["outcome"] == outcome
    assert decision["promoted"] is (outcome == "better")
    assert decision["reason"].startswith("a tie") is (outcome == "tie")
    assert f"a difference of {difference}" in decision["reason"]
    # with no min_gain, only a difference that shows when printed wins
    assert promotion.compare_scores(score, champion, 0.0)[0] == without_min_gain


def test_a_missing_score_keeps_the_champion_and_is_never_logged_as_zero():
    why = "no customer of the calibration period bought in the holdout"
    decision = _decide(None, None, no_score=why)
    assert decision["promoted"] is False and decision["outcome"] == "unknown"
    assert decision["reason"] == (
        f"holdout_revenue_top_20pct could not be computed ({why}): the champion (version 1) "
        "keeps the alias"
    )
    first = promotion.challenge("cltv_value", 1, RULES, {"score": None, "no_score": why}, None)
    assert first["promoted"] is True and why in first["reason"]


def _register(client, name: str, versions: int) -> None:
    client.create_registered_model(name)
    for _ in range(versions):
        client.create_model_version(name, source="file:///nowhere", run_id=None)


def test_only_not_found_means_no_champion(registry):
    assert promotion.champion_version("cltv_value", "champion") is None  # no such model
    _register(registry, "cltv_value", 2)
    assert promotion.champion_version("cltv_value", "champion") is None  # no alias yet
    registry.set_registered_model_alias("cltv_value", "champion", "2")
    found = promotion.champion_version("cltv_value", "champion")
    assert (found.name, int(found.version)) == ("cltv_value", 2)
    # the model is loaded by the version read, not by the alias again
    assert promotion.version_uri(found) == "models:/cltv_value/2"


def test_a_promotion_moves_the_alias_and_a_loss_leaves_it(registry):
    _register(registry, "cltv_value", 3)
    registry.set_registered_model_alias("cltv_value", "champion", "1")
    won = promotion.challenge(
        "cltv_value", 2, RULES, {"score": 0.8, "settings": SETTINGS},
        {"version": 1, "score": 0.7, "settings": SETTINGS},
    )  # fmt: skip
    promotion.settle(won, "CLV model")
    assert int(registry.get_model_version_by_alias("cltv_value", "champion").version) == 2
    assert promotion.decision_scores(won) == {"challenger": 0.8, "promoted": 1.0, "champion": 0.7}
    lost = promotion.challenge(
        "cltv_value", 3, RULES, {"score": None, "no_score": "no holdout revenue"},
        {"version": 2, "score": None},
    )  # fmt: skip
    promotion.settle(lost, "CLV model")
    assert promotion.decision_scores(lost) == {"promoted": 0.0}  # no score, no metric
    assert int(registry.get_model_version_by_alias("cltv_value", "champion").version) == 2
    assert promotion.produced_by(lost) == {
        "registered_model": "cltv_value",
        "version": 2,
        "alias": "champion",
        "holds_alias": True,
        "challenger_version": 3,
        "challenger_promoted": False,
    }


def test_a_registry_that_refuses_connections_stops_the_promotion_in_one_line(mlflow_uris):
    mlflow_uris.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow_uris.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"http://127.0.0.1:{free_port()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with pytest.raises(promotion.RegistryError) as refused:
        promotion.champion_version("cltv_value", "champion")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        f"the MLflow registry at {uri} failed to say which version of cltv_value has "
        "'champion' (no connection)"
    )
    assert message.endswith("Nothing was promoted and no alias moved; run again once the "
                            "registry answers")  # fmt: skip
    # nor does scoring take it for "no champion, train first"
    with pytest.raises(DatasetError) as not_loaded:
        MlflowChampionDataset(registered_model="cltv_value", kind="cltv").load()
    assert isinstance(not_loaded.value.__cause__, promotion.RegistryError)
    # and a decision to promote is not recorded as done when the alias cannot move
    decision = promotion.challenge("cltv_value", 1, RULES, {"score": 0.7}, None)
    with pytest.raises(promotion.RegistryError, match="failed to give cltv_value version 1"):
        promotion.settle(decision, "CLV model")


def test_scoring_refuses_a_time_unit_its_clv_champion_was_not_fitted_in():
    value_model = CustomerValueModel(FIT, NAIVE, VALUATION, UNCERTAINTY)  # fitted in weeks
    churn = ChampionModel(model=None, version=4, selection={"selected": "x"})
    cltv = ChampionModel(model=value_model, version=7, selection={})
    with pytest.raises(ValueError) as refused:
        unpack_champions(churn, cltv, {}, {}, 90, "D")
    assert str(refused.value) == (
        "the CLV champion (cltv_value version 7) was fitted with time_unit W, but this run's "
        "time_unit is D: score with --params time_unit=W, or train and promote a model in D "
        "first (kedro run --params time_unit=D)"
    )


def test_the_clv_model_settings_are_the_users_choices_not_the_fit():
    value_model = CustomerValueModel(FIT, NAIVE, {**VALUATION, "value_tiers": []}, UNCERTAINTY)
    assert value_model.settings() == {
        "time_unit": "W",
        "horizon_months": 12,
        "discount_rate": 0.01,
        "margin": 1.0,
        "interval_interval": 0.8,
        "interval_draws": 50,
        "interval_seed": 3,
    }
    refit = CustomerValueModel({**FIT, "bgnbd": {**FIT["bgnbd"], "r": 0.3}}, NAIVE, VALUATION,
                               UNCERTAINTY)  # fmt: skip
    assert refit.settings() == value_model.settings()


def test_registering_with_a_registry_that_refuses_connections_stops_in_one_line(
    tmp_path, mlflow_uris
):
    mlflow_uris.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow_uris.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    store = tmp_path / "mlflow.db"
    shutil.copy(make_mlflow_store_template(), store)
    uri = f"http://127.0.0.1:{free_port()}"
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    mlflow.set_registry_uri(uri)
    dataset = MlflowCltvModelDataset(
        save_args={"name": "cltv_value_model", "registered_model_name": "cltv_value"}
    )
    with mlflow.start_run(), pytest.raises(DatasetError) as failed:
        dataset.save(CustomerValueModel(FIT, NAIVE, VALUATION, UNCERTAINTY))
    message = str(failed.value.__cause__)
    assert "\n" not in message
    assert message.startswith(
        f"the MLflow registry at {uri} failed to log and register cltv_value (no connection)"
    )
