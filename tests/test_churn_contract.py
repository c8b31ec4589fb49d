"""The churn model's contract (issue 46): its settings and inputs are logged with it; a
challenger trained under another contract is promoted as "settings changed", never scored
against a champion that reads other tables; scoring hands a champion only the tables it was
trained on, and applies its threshold, risk bands and horizon; the alias moves only after the
production tables are written. On a real MLflow registry and local Spark, without a run."""

# the fixtures customers and models, imported from test_churn_reasons, are test parameters here
# ruff: noqa: F811

from __future__ import annotations

import mlflow
import pytest
import yaml

from cltv.datasets import MlflowChampionDataset, MlflowChurnModelDataset, ModelWithExample
from cltv.pipelines import churn_modeling, cltv
from cltv.pipelines.churn_modeling import driver
from cltv.pipelines.churn_modeling.contract import (
    ContractError,
    check_columns,
    check_settings,
    churn_contract,
    model_contract,
)
from cltv.pipelines.churn_modeling.nodes import (
    _test_ranking,
    promote_churn_model,
    score_customers,
)

from .test_churn_reasons import FEATURES, INPUTS, customers, models  # noqa: F401 (fixtures)

PROMOTION = {
    "registered_model": "cltv_churn",
    "alias": "champion",
    "metric": "pr_auc",
    "min_gain": 0.005,
}


@pytest.fixture(scope="module")
def conf(project_root) -> dict:
    base = project_root / "conf" / "base"
    params = yaml.safe_load((base / "parameters_churn_modeling.yml").read_text())
    params.update(yaml.safe_load((base / "parameters_data_processing.yml").read_text()))
    return params


def _settings(conf, **changes) -> dict:
    """The base conf's contract, with ``changes`` (``threshold=...``) to churn_modeling."""
    modeling = {**conf["churn_modeling"], **changes}
    return churn_contract(modeling, conf["features"], 90, "W")


@pytest.fixture(scope="module")
def model_input(spark, customers):
    """The customers as a model table: the validation rows are the test customers too."""
    frame = customers.assign(split=customers["split"].replace({"validation": "test"}))
    return spark.createDataFrame(frame).cache()


def _selection(settings, model_input, threshold=0.5, version=None, features=FEATURES) -> dict:
    selection = {
        "selected": "logistic_regression",
        "threshold": {"rule": settings["churn_modeling.threshold.rule"], "value": threshold},
        "features": features,
        "btyd_features": {"offered": [], "used": False},
        "contract": model_contract(
            settings, model_input, [*features["numeric"], *features["categorical"]]
        ),
    }
    return selection if version is None else {**selection, "version": version}


def _log(model, selection, customers) -> None:
    """Log and register ``model`` with its selection, in the active run, as training does."""
    example = customers[INPUTS].head(5)
    MlflowChurnModelDataset(
        save_args={"name": "churn_model", "registered_model_name": "cltv_churn"}
    ).save(ModelWithExample(model, example))
    mlflow.log_dict(selection, MlflowChampionDataset.SELECTION_ARTIFACT)


@pytest.fixture
def champion(registry, conf, models, customers, model_input):
    """Version 1 of cltv_churn, the champion, trained under the base conf's contract."""
    mlflow.set_experiment("contract")
    selection = _selection(_settings(conf), model_input)
    with mlflow.start_run():
        _log(models["logistic_regression"], selection, customers)
    registry.set_registered_model_alias("cltv_churn", "champion", "1")
    return selection


def _challenge(model, selection, model_input, customers):
    """This run's model (version 2) against the champion, as promote_churn_model is run."""
    ranking = _test_ranking(model, model_input)
    churn_metrics = {"pr_auc": ranking["pr_auc"], "roc_auc": ranking["roc_auc"], "n_test": 9}
    with mlflow.start_run():
        _log(model, selection, customers)
        return promote_churn_model(model, churn_metrics, model_input, selection, PROMOTION)


def test_a_threshold_change_promotes_and_moves_predicted_churn(
    champion,
    registry,
    conf,
    models,
    customers,
    model_input,
    spark,
):
    """The same seeded model with only a new threshold: today's tie kept the old threshold."""
    settings = _settings(conf, threshold={"rule": "fixed", "value": 0.7})
    decision, production, selection = _challenge(
        models["logistic_regression"],
        _selection(settings, model_input, threshold=0.7),
        model_input,
        customers,
    )
    assert decision["promoted"] is True and decision["outcome"] == "settings changed"
    assert decision["reason"].startswith(
        "settings changed: churn_modeling.threshold.rule max_youden → fixed, "
        "churn_modeling.threshold.value None → 0.7 (the champion, version 1, has the old ones"
    )
    # the champion is not scored under a contract it was not trained for
    assert "score" not in decision["champion"]
    assert decision["champion"]["threshold"] == {"rule": "max_youden", "value": 0.5}
    assert selection["version"] == 2 and selection["threshold"]["value"] == 0.7
    # the alias has not moved yet: it moves once churn_predictions is written
    assert int(registry.get_model_version_by_alias("cltv_churn", "champion").version) == 1

    features = spark.createDataFrame(customers.drop(columns=["split", driver.LABEL]))
    scored = score_customers(
        production,
        features.withColumn("rfm_segment", features["country"]),
        None,
        selection,
        settings,
        {"observation_end": "2011-12-09", "holdout_days": 90},
        {"churn_reasons": 1, "retention_levers": 1},
    )[0].toPandas()
    assert (scored["predicted_churn"] == (scored["churn_probability"] >= 0.7)).all()
    # and it moves: at the champion's 0.5 more customers were flagged
    assert 0 < scored["predicted_churn"].sum() < (scored["churn_probability"] >= 0.5).sum()


def test_an_equal_contract_is_decided_on_the_same_test_customers(
    champion,
    conf,
    models,
    customers,
    model_input,
):
    decision, _, selection = _challenge(
        models["logistic_regression"],
        _selection(_settings(conf), model_input, threshold=0.4),
        model_input,
        customers,
    )
    assert decision["outcome"] == "tie" and decision["promoted"] is False
    scored = decision["champion"]
    assert scored["score"] == scored["pr_auc"] == decision["challenger"]["pr_auc"]
    assert scored["roc_auc"] == decision["challenger"]["roc_auc"]
    # the champion keeps scoring, with its own threshold
    assert selection["version"] == 1 and selection["threshold"]["value"] == 0.5


def test_a_feature_change_promotes_without_scoring_the_champion_on_tables_it_cannot_read(
    champion,
    conf,
    models,
    customers,
    model_input,
):
    """A renamed input: the champion reads monetary_total, which the new table has not
    (today: UNRESOLVED_COLUMN in promote_churn_model, in every run after)."""
    renamed = customers.rename(columns={"monetary_total": "monetary_sum"})
    features = {**FEATURES, "numeric": ["recency_days", "monetary_sum"]}
    model = driver.fit_logistic_regression(
        renamed, features, {"reg_param": 0.01, "elastic_net_param": 0.5, "max_iter": 200}, "none"
    )
    table = model_input.withColumnRenamed("monetary_total", "monetary_sum")
    modeling = {**conf["churn_modeling"], "features": features}
    settings = churn_contract(modeling, conf["features"], 90, "W")
    selection = _selection(settings, table, features=features)
    ranking = _test_ranking(model, table)
    with mlflow.start_run():
        MlflowChurnModelDataset(
            save_args={"name": "churn_model", "registered_model_name": "cltv_churn"}
        ).save(ModelWithExample(model, renamed[["recency_days", "monetary_sum", "country"]][:5]))
        decision, _, production = promote_churn_model(
            model, {**ranking, "n_test": 9}, table, selection, PROMOTION
        )
    assert decision["outcome"] == "settings changed" and "score" not in decision["champion"]
    assert (
        "churn_modeling.features.categorical ['country', 'rfm_segment'] → ['country']"
        in (decision["reason"])
    )
    assert (
        "churn_modeling.features.numeric without tenure_days, n_purchase_days, "
        in (decision["reason"])
    )
    assert (
        ", revenue_trend_180d and with monetary_sum (the champion, version 1, "
        in (decision["reason"])
    )
    assert production["version"] == 2


def test_scoring_stops_in_one_line_on_tables_built_with_other_feature_settings(conf, model_input):
    champion = _selection(_settings(conf), model_input, version=3)
    windows = {**conf["features"], "windows_days": [30, 90, 365]}
    run = churn_contract(conf["churn_modeling"], windows, 90, "W")
    with pytest.raises(ContractError) as stopped:
        check_settings(champion, run)
    assert str(stopped.value) == (
        "the churn champion (cltv_churn version 3) was trained on other inputs (its settings "
        "→ this run's): features.windows_days [30, 90, 180] → [30, 90, 365]. Run `kedro run` "
        "to train and promote a model on the new settings, or set features.windows_days to "
        "[30, 90, 180] again in conf"
    )
    # a renamed RFM segment would silently be an all-zero one-hot
    segments = [dict(s) for s in conf["features"]["rfm_segments"]]
    segments[0]["name"] = "Best"
    renamed = churn_contract(
        conf["churn_modeling"], {**conf["features"], "rfm_segments": segments}, 90, "W"
    )
    with pytest.raises(ContractError, match=r"features\.rfm_segments .*its value in the champion"):
        check_settings(champion, renamed)
    # a threshold, risk bands or class weight of its own: the champion applies its own
    check_settings(champion, _settings(conf, class_weight="balanced"))
    # the horizon shapes the tables only when the champion reads the BTYD features
    longer = churn_contract(conf["churn_modeling"], conf["features"], 120, "W")
    check_settings(champion, longer)
    with_btyd = {**champion, "btyd_features": {"used": True}}
    with pytest.raises(ContractError, match=r"holdout_days 90 → 120\. Run"):
        check_settings(with_btyd, longer)


def test_a_table_without_a_column_the_champion_reads_stops_in_one_line(conf, model_input):
    champion = _selection(_settings(conf), model_input, version=3)
    with pytest.raises(ContractError) as missing:
        check_columns(champion, model_input.drop("monetary_total"))
    assert str(missing.value) == (
        "the churn champion (cltv_churn version 3) reads monetary_total, which this run's "
        "tables do not have: run `kedro run` to train and promote a model on this run's "
        "features, or restore the feature settings it was trained with"
    )
    with pytest.raises(ContractError, match=r"recency_days \(string, trained on bigint\)"):
        check_columns(champion, model_input.withColumn("recency_days", model_input["country"]))


def test_scoring_applies_the_champions_risk_bands_and_horizon(
    spark,
    conf,
    models,
    customers,
    model_input,
):
    trained = {
        **_settings(conf),
        "churn_modeling.risk_bands": [
            {"name": "act now", "min_probability": 0.6},
            {"name": "watch", "min_probability": 0.0},
        ],
        "holdout_days": 60,
    }
    features = spark.createDataFrame(customers.drop(columns=["split", driver.LABEL]))
    scored = score_customers(
        models["logistic_regression"],
        features.withColumn("rfm_segment", features["country"]),
        None,
        _selection(trained, model_input, version=1),
        _settings(conf),  # this run's: 90 days, high / medium / low
        {"observation_end": "2011-12-09", "holdout_days": 90},
        {"churn_reasons": 1, "retention_levers": 1},
    )[0].toPandas()
    assert set(scored["horizon_days"]) == {60}
    expected = (scored["churn_probability"] >= 0.6).map({True: "act now", False: "watch"})
    assert scored["risk_band"].tolist() == expected.tolist()
    assert set(scored["risk_band"]) == {"act now", "watch"}


def test_the_aliases_move_only_after_the_production_tables_are_written():
    """Each settle node reads an output that exists only once its table is written."""
    pipelines = {
        "settle_churn_promotion": (churn_modeling.create_pipeline(), "score_customers"),
        "settle_cltv_promotion": (cltv.create_pipeline(), "predict_customer_value"),
    }
    for settle, (pipeline, writes) in pipelines.items():
        upstream = {node.name for node in pipeline.to_nodes(settle).nodes}
        assert writes in upstream, settle
        # and the nodes that decide do not move the alias themselves
        assert settle not in {node.name for node in pipeline.to_nodes(writes).nodes}


def test_scoring_a_table_without_a_column_the_champion_reads_stops_before_any_work(
    spark, conf, models, customers, model_input
):
    """Today: PySparkKeyError [KEY_NOT_EXISTS] from deep inside the scoring UDF."""
    features = spark.createDataFrame(customers.drop(columns=["split", driver.LABEL]))
    with pytest.raises(ContractError, match=r"reads monetary_total, which this run's tables"):
        score_customers(
            models["logistic_regression"],
            features.withColumn("rfm_segment", features["country"]).drop("monetary_total"),
            None,
            _selection(_settings(conf), model_input, version=1),
            _settings(conf),
            {"observation_end": "2011-12-09", "holdout_days": 90},
            {"churn_reasons": 1, "retention_levers": 1},
        )
