"""churn_modeling: no leakage, reproducible split, exact metrics, model round trip, oracle."""

from __future__ import annotations

import json
import math
import uuid
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from xgboost import XGBClassifier

from cltv import metrics
from cltv.datasets import (
    MlflowChampionDataset,
    MlflowChurnModelDataset,
    ModelWithExample,
    load_churn_model,
)
from cltv.models import BetaGeoModel, ParetoNBDModel
from cltv.pipelines.churn_modeling.contract import churn_contract
from cltv.pipelines.churn_modeling.driver import collect_training_rows
from cltv.pipelines.churn_modeling.nodes import (
    _feature_weights,
    _test_ranking,
    assign_split,
    build_model_input,
    candidate_features,
    churn_scores,
    evaluate_churn_model,
    fit_churn_candidates,
    score_customers,
    select_churn_model,
)
from cltv.pipelines.churn_modeling.spark_ml import with_class_weight
from cltv.pipelines.cltv.nodes import btyd_churn_scores, fit_cltv_models
from cltv.pipelines.data_processing.nodes import (
    build_current_customer_features,
    build_current_customer_summary,
    build_customer_features,
    build_customer_history,
    build_customer_summary,
    resolve_analysis_period,
    summarise_purchase_days,
)
from cltv.synthetic import write_csv

from .churn_oracle import compare
from .test_cleaning import clean_csv

BANDS = ["high", "medium", "low"]


@pytest.fixture(scope="module")
def parameters(project_root):
    conf = project_root / "conf" / "base"
    params = yaml.safe_load((conf / "parameters_churn_modeling.yml").read_text())
    params.update(yaml.safe_load((conf / "parameters_data_processing.yml").read_text()))
    # a few trees are enough to test the Spark ML engine (kept for fully distributed training)
    params["churn_modeling"]["candidates"]["spark_ml"]["gradient_boosted_trees"]["max_iter"] = 8
    return params


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory, parameters):
    """Clean transactions, tables and a fitted selection on ~8,000 generated customers."""
    csv = tmp_path_factory.mktemp("churn") / "generated.csv"
    truth = write_csv(150_000, csv, seed=3, latent=True)
    clean, _, _ = clean_csv(csv)
    # checkpointed, as the pipeline's Delta tables are: every node below reads the days
    # several times, and with the cleaning plan under each read the plans of a few queries
    # filled the test session's 3 GB heap (700k plan nodes)
    clean = clean.localCheckpoint()
    days = summarise_purchase_days(clean).localCheckpoint()
    period = resolve_analysis_period(days, None, None, 90)
    summary = build_customer_summary(days, period, "W").cache()
    history = build_customer_history(days, period, parameters["features"])
    features = build_customer_features(history, period, parameters["features"])
    modeling = parameters["churn_modeling"]
    models = ("bgnbd", "pnbd", "gamma_gamma")
    cltv = {"candidates": ["bgnbd", "pnbd"], **{m: {"penalizer": 0.0} for m in models}}
    calibration_fit = fit_cltv_models(summary, cltv, "W")
    btyd_scores = btyd_churn_scores(summary, calibration_fit, period).cache()
    model_input = build_model_input(features, summary, btyd_scores, modeling["split"]).cache()
    candidates, fit_report = fit_churn_candidates(model_input, modeling)
    run_contract = churn_contract(modeling, parameters["features"], 90, "W")
    selected, selection = select_churn_model(
        candidates, fit_report, model_input, modeling, run_contract
    )
    return {
        "run_contract": run_contract,
        "days": days,
        "csv": csv,
        "truth": truth,
        "candidates": candidates,
        "fit_report": fit_report,
        "clean": clean,
        "period": period,
        "summary": summary,
        "calibration_fit": calibration_fit,
        "btyd_scores": btyd_scores,
        "model_input": model_input,
        "selected": selected,
        "selection": selection,
        "modeling": modeling,
    }


def _sorted_rows(frame):
    return frame.toPandas().sort_values("customer_id").reset_index(drop=True)


# ------------------------------------------------------------------ leakage
def test_transactions_after_calibration_end_change_no_feature(generated, parameters):
    # features are per customer, and so is leakage: a tenth of the customers (about 800) show
    # it as well as all of them, in a fifth of the time
    clean = generated["clean"].filter(F.abs(F.hash("customer_id")) % 10 == 0)
    period = generated["period"]
    after = F.to_date("invoice_date") > F.lit(period["calibration_end"]).cast("date")
    before_rows = clean.filter(~after)
    later_rows = clean.filter(after)
    existing = before_rows.select("customer_id").distinct().limit(50)
    tampered = before_rows.unionByName(
        # every later line changed: 10x quantity, another price and country
        later_rows.withColumn("quantity", F.col("quantity") * 10)
        .withColumn("price", F.col("price") + 1.5)
        .withColumn("country", F.lit("Narnia"))
        .withColumn("revenue", F.col("quantity") * F.col("price"))
        .sample(fraction=0.5, seed=1)  # and half of them gone
    ).unionByName(
        # new later lines for known customers, and brand-new customers after the cut
        existing.join(later_rows.drop("customer_id").limit(1), how="cross").unionByName(
            later_rows.limit(20).withColumn("customer_id", F.concat(F.lit("new"), "invoice"))
        )
    )
    assert tampered.filter(after).count() != later_rows.count()  # the tampering happened
    features = parameters["features"]
    days, tampered_days = summarise_purchase_days(clean), summarise_purchase_days(tampered)
    history = build_customer_history(days, period, features)
    tampered_history = build_customer_history(tampered_days, period, features)
    original = _sorted_rows(build_customer_features(history, period, features))
    changed = _sorted_rows(build_customer_features(tampered_history, period, features))
    pd.testing.assert_frame_equal(original, changed)
    # ... while the features as of observation_end (used for scoring) do see them
    assert not _sorted_rows(build_current_customer_features(history, period, features)).equals(
        _sorted_rows(build_current_customer_features(tampered_history, period, features))
    )


# ------------------------------------------------------------------ split
def test_split_is_stratified_seeded_and_order_independent(spark):
    customers = spark.createDataFrame(
        [(f"c{i}", int(i % 10 < 3)) for i in range(1000)], "customer_id string, churned int"
    )
    fractions = {"train": 0.6, "validation": 0.2, "test": 0.2}
    first = assign_split(customers, "churned", fractions, seed=7).toPandas()
    shuffled = customers.orderBy(F.rand(3)).repartition(7)
    again = assign_split(shuffled, "churned", fractions, seed=7).toPandas()
    key = ["customer_id"]
    merged = first.merge(again, on=[*key, "churned"], suffixes=("", "_again"))
    assert len(merged) == 1000 and (merged["split"] == merged["split_again"]).all()

    counts = first.groupby(["churned", "split"]).size()
    for label, n in ((1, 300), (0, 700)):
        for split, share in fractions.items():
            assert abs(counts[(label, split)] - share * n) <= 1, (label, split)

    other = assign_split(customers, "churned", fractions, seed=8).toPandas()
    changed = (
        other.sort_values("customer_id")["split"].to_numpy()
        != first.sort_values("customer_id")["split"].to_numpy()
    ).mean()
    assert changed > 0.3

    with pytest.raises(ValueError, match=r"split\.fractions"):
        assign_split(customers, "churned", {"train": 0.7, "test": 0.2}, seed=7)


def test_balanced_class_weights_follow_the_class_counts(spark):
    train = spark.createDataFrame(
        [(f"c{i}", int(i < 300)) for i in range(1000)], "customer_id string, churned int"
    )
    weights = {
        row["churned"]: row["class_weight"]
        for row in with_class_weight(train, "balanced")
        .select("churned", "class_weight")
        .distinct()
        .collect()
    }
    assert weights == {1: pytest.approx(1000 / 600), 0: pytest.approx(1000 / 1400)}
    assert {
        r[0] for r in with_class_weight(train, "none").select("class_weight").distinct().collect()
    } == {1.0}


# ------------------------------------------------------------------ metrics
TINY = [  # (label, score), hand-computed below
    (1, 0.9),
    (0, 0.8),
    (1, 0.7),
    (1, 0.7),
    (0, 0.6),
    (0, 0.3),
    (1, 0.3),
    (0, 0.1),
]


@pytest.fixture
def tiny():
    return pd.DataFrame(TINY, columns=["label", "score"])


def test_metrics_match_hand_computed_values(tiny):
    table = metrics.score_table(tiny)
    ranking = metrics.ranking_metrics(table, top_fraction=0.25)
    # positives beat negatives in 4 + 3 + 3 + 1 pairs, and tie once: (11 + 0.5) / 16
    assert ranking["roc_auc"] == pytest.approx(11.5 / 16)
    # precision at each positive's score times the recall it adds: 1/4 + (2/4)(3/4) + (1/4)(4/7)
    assert ranking["pr_auc"] == pytest.approx(0.25 + 0.375 + 1 / 7)
    assert ranking["positive_rate"] == 0.5
    # top 2 of 8: scores 0.9 (churned) and 0.8 (not)
    assert ranking["capture_rate_top"] == pytest.approx(1 / 4)
    assert ranking["lift_top"] == pytest.approx((1 / 2) / 0.5)
    # top 3 cuts the tie at 0.7 (two churners) in half: 1 + 1 caught
    three = metrics.ranking_metrics(table, top_fraction=0.375)
    assert three["capture_rate_top"] == pytest.approx(2 / 4)
    assert three["lift_top"] == pytest.approx((2 / 3) / 0.5)
    # top 6 cuts the tie at 0.3 (one churner, one not): 3 + 0.5
    assert metrics.ranking_metrics(table, top_fraction=0.75)["capture_rate_top"] == pytest.approx(
        3.5 / 4
    )

    probability = metrics.probability_metrics(tiny)
    logs = [math.log(p) for p in (0.9, 0.7, 0.7, 0.3, 0.2, 0.4, 0.7, 0.9)]
    assert probability["log_loss"] == pytest.approx(-sum(logs) / 8)
    assert probability["brier"] == pytest.approx(
        (0.01 + 0.64 + 0.09 + 0.09 + 0.36 + 0.09 + 0.49 + 0.01) / 8
    )

    assert metrics.confusion_matrix(tiny, 0.7) == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    # Youden's J per threshold: .25, 0, .5, .25, .25, 0; F1: .4, .33, .75, .67, .73, .67
    assert metrics.choose_threshold(table, "max_youden") == 0.7
    assert metrics.choose_threshold(table, "max_f1") == 0.7
    assert metrics.choose_threshold(table, "top_fraction", 0.5) == 0.7
    assert metrics.choose_threshold(table, "top_fraction", 0.1) == 0.9
    assert metrics.choose_threshold(table, "fixed", 0.42) == 0.42
    with pytest.raises(ValueError, match="max_youden"):
        metrics.choose_threshold(table, "best")

    bins = metrics.reliability_table(tiny, bins=2)
    assert [(b["n"], b["observed_rate"]) for b in bins] == [(3, pytest.approx(1 / 3)), (5, 0.6)]
    assert bins[0]["mean_predicted"] == pytest.approx(0.7 / 3)
    curves = metrics.curves(table)
    assert [(p["fpr"], p["tpr"]) for p in curves["roc"]] == [
        (0, 0),
        (0, 0.25),
        (0.25, 0.25),
        (0.25, 0.75),
        (0.5, 0.75),
        (0.75, 1),
        (1, 1),
    ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95])),
        min_size=4,
        max_size=60,
    ).filter(lambda rows: len({label for label, _ in rows}) == 2)
)
def test_metrics_agree_with_scikit_learn(rows):
    frame = pd.DataFrame(rows, columns=["label", "score"])
    labels, scores = zip(*rows, strict=True)
    ranking = metrics.ranking_metrics(metrics.score_table(frame))
    probability = metrics.probability_metrics(frame)
    assert ranking["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert ranking["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert probability["log_loss"] == pytest.approx(log_loss(labels, scores), abs=1e-12)
    assert probability["brier"] == pytest.approx(brier_score_loss(labels, scores), abs=1e-12)


# ------------------------------------------------------------------ models
def test_selection_evaluation_and_scoring(generated):
    selection, modeling = generated["selection"], generated["modeling"]
    # every classifier, and the best of them with the BTYD features too; the best is kept
    validation = selection["validation"]
    assert modeling["engine"] == "driver"  # the default
    candidates = modeling["candidates"]["driver"]
    best_without = max(candidates, key=lambda name: validation[name]["pr_auc"])
    assert set(validation) == {*candidates, f"{best_without}_with_btyd"}
    # every train and validation customer was collected (below max_train_customers)
    counts = generated["model_input"].groupBy("split").count().toPandas()
    n = dict(zip(counts["split"], counts["count"], strict=True))
    assert selection["training"] == {
        "engine": "driver",
        "rows_used": n["train"] + n["validation"],
        "rows_available": n["train"] + n["validation"],
    }
    best = max(v["pr_auc"] for v in selection["validation"].values())
    assert selection["validation"][selection["selected"]]["pr_auc"] == best
    # the driver scored validation on the rows it collected: the same numbers as Spark's
    # scoring of the validation split, by scikit-learn's definitions
    for name, model in generated["candidates"].items():
        validation_rows = generated["model_input"].filter(F.col("split") == "validation")
        scored = churn_scores(model, validation_rows).toPandas()
        spark_scores = {
            "pr_auc": average_precision_score(scored["churned"], scored["churn_probability"]),
            "roc_auc": roc_auc_score(scored["churned"], scored["churn_probability"]),
        }
        for key in ("pr_auc", "roc_auc"):
            assert validation[name][key] == pytest.approx(spark_scores[key], abs=1e-12), name
    # the fit counted every split; the threshold was chosen on the validation scores it kept
    assert generated["fit_report"]["customers"] == n
    kept = generated["fit_report"]["validation_predictions"][selection["selected"]]
    assert len(kept) == n["validation"]
    btyd = selection["btyd_features"]
    assert btyd["offered"] == ["btyd_p_alive", "btyd_expected_purchases"]
    assert btyd["used"] == selection["selected"].endswith("_with_btyd")
    assert max(btyd["best_validation_pr_auc_with"], btyd["best_validation_pr_auc_without"]) == best
    assert (
        set(selection["features"]["numeric"]) >= set(btyd["offered"])
        if btyd["used"]
        else (not set(selection["features"]["numeric"]) & set(btyd["offered"]))
    )

    model = generated["selected"].model
    churn_metrics, curves = evaluate_churn_model(
        model, generated["model_input"], selection, generated["fit_report"], modeling["evaluation"]
    )
    assert churn_metrics["n_train"] == n["train"] and churn_metrics["n_test"] == n["test"]
    assert churn_metrics["training"] == selection["training"]
    assert sum(churn_metrics["confusion_matrix"].values()) == n["test"]
    assert 0.65 < churn_metrics["roc_auc"] < 1
    assert {w["feature"] for w in curves["feature_weights"]} <= {
        *selection["features"]["numeric"],
        *(
            f"{c}_onehot_{v}"
            for c in modeling["features"]["categorical"]
            for v in _categories(generated["model_input"], c)
        ),
    }

    current_parameters = {"windows_days": [30, 90, 180], "rfm_segments": []}
    current = build_current_customer_features(
        build_customer_history(generated["days"], generated["period"], current_parameters),
        generated["period"],
        current_parameters,
    )
    current_summary = build_current_customer_summary(generated["days"], generated["period"], "W")
    btyd_current = btyd_churn_scores(
        current_summary, generated["calibration_fit"], generated["period"]
    )
    predictions = score_customers(
        model,
        current,
        btyd_current,
        selection,
        generated["run_contract"],
        generated["period"],
        modeling["reasons"],
    )[0].toPandas()
    assert len(predictions) == current.count() == predictions["customer_id"].nunique()
    assert predictions["churn_probability"].between(0, 1).all()
    # bands from modeling["risk_bands"]: high from 0.7, medium from 0.4, low below; each
    # band holds customers, so no check below is over an empty selection
    probability = predictions["churn_probability"]
    expected_band = pd.cut(probability, [-0.1, 0.4, 0.7, 1.1], right=False, labels=BANDS[::-1])
    assert predictions["risk_band"].tolist() == expected_band.astype(str).tolist()
    assert predictions["risk_band"].value_counts().reindex(BANDS).min() > 0
    # predicted churn: the probability reaches the threshold chosen on validation
    threshold = selection["threshold"]["value"]
    assert 0 < threshold < 1 and threshold != 0.5
    expected_churn = (probability >= threshold).astype(int)
    assert predictions["predicted_churn"].tolist() == expected_churn.tolist()
    assert set(predictions["predicted_churn"]) == {0, 1}


def _with_jobs_counted(spark, work):
    """What ``work()`` returns, and how many Spark jobs it ran."""
    group = f"counted-{uuid.uuid4()}"
    spark.sparkContext.setJobGroup(group, "counted by the test")
    try:
        result = work()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    return result, len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_fit_selection_evaluation_and_promotion_run_few_spark_jobs(spark, generated):
    """The cost of a churn run is per Spark action: the fit counts the splits and collects the
    training customers; selection takes its input example; evaluation and the champion's
    score collect the test customers' scores once, and every metric is computed on the
    driver (on the old code: 52 jobs in evaluation alone)."""
    model_input, modeling = generated["model_input"], generated["modeling"]
    (candidates, report), fit_jobs = _with_jobs_counted(
        spark, lambda: fit_churn_candidates(model_input, modeling)
    )
    assert fit_jobs <= 2
    (selected, selection), select_jobs = _with_jobs_counted(
        spark,
        lambda: select_churn_model(
            candidates, report, model_input, modeling, generated["run_contract"]
        ),
    )
    assert select_jobs <= 1
    (churn_metrics, _), evaluate_jobs = _with_jobs_counted(
        spark,
        lambda: evaluate_churn_model(
            selected.model, model_input, selection, report, modeling["evaluation"]
        ),
    )
    assert evaluate_jobs == 1
    ranking, champion_jobs = _with_jobs_counted(
        spark, lambda: _test_ranking(selected.model, model_input)
    )
    assert champion_jobs == 1
    assert ranking["pr_auc"] == churn_metrics["pr_auc"]


def test_xgboost_stops_when_validation_stops_improving(generated):
    model_input, modeling = generated["model_input"], generated["modeling"]
    trees = {**modeling["candidates"]["driver"]["xgboost"], "max_iter": 60}

    def fitted(rounds):
        only_trees = {
            **modeling,
            "btyd_features": [],
            "candidates": {"driver": {"xgboost": {**trees, "early_stopping_rounds": rounds}}},
        }
        models, report = fit_churn_candidates(model_input, only_trees)
        return models["xgboost"], report["validation"]["xgboost"]

    every_round, _ = fitted(None)
    # no patience: boosting stops at the first round that does not improve the validation loss
    stopped, scores = fitted(1)
    trees_of = lambda model: model.named_steps["classifier"]  # noqa: E731
    assert trees_of(every_round).get_booster().num_boosted_rounds() == 60
    grown = trees_of(stopped).get_booster().num_boosted_rounds()
    assert 1 < grown < 60
    losses = trees_of(stopped).evals_result()["validation_0"]["logloss"]
    assert len(losses) == grown and losses[-1] >= losses[-2]
    assert trees_of(stopped).best_iteration == grown - 2 == int(np.argmin(losses))
    assert 0 < scores["pr_auc"] <= 1
    # the model scores with the trees up to the best round, not the one grown after it
    rows = model_input.filter(F.col("split") == "test").limit(50).toPandas()
    inputs = list(stopped.feature_names_in_)
    prepared = stopped.named_steps["prepare"].transform(rows[inputs])
    best_only = trees_of(stopped).predict_proba(prepared, iteration_range=(0, grown - 1))
    assert stopped.predict_proba(rows[inputs]) == pytest.approx(best_only, abs=0)
    # the scaler saw the training customers only, not the validation ones that measured
    train = model_input.filter(F.col("split") == "train")
    first = modeling["features"]["numeric"][0]
    expected_mean = train.agg(F.mean(first)).first()[0]
    for model in (stopped, every_round):
        scaler = model.named_steps["prepare"].named_transformers_["numeric"]
        assert scaler.mean_[0] == pytest.approx(expected_mean, rel=1e-12)


def test_above_max_train_customers_a_stratified_seeded_sample_is_collected(generated):
    model_input, modeling = generated["model_input"], generated["modeling"]
    columns = ["customer_id", "recency_days"]
    full, customers = collect_training_rows(model_input, columns, 10**9, seed=1)
    assert customers["train"] + customers["validation"] == len(full)
    sample, customers_again = collect_training_rows(model_input, columns, 1000, seed=1)
    assert customers_again == customers  # every customer is counted, sampled or not
    counts = {"rows_used": len(sample), "rows_available": len(full)}
    assert abs(len(sample) - 1000) <= 4  # rounded per (label, split) stratum
    # every label and split keeps its share, to one customer per stratum
    for key, n in full.groupby(["churned", "split"]).size().items():
        kept = (sample[["churned", "split"]].apply(tuple, axis=1) == key).sum()
        assert abs(kept - n * 1000 / len(full)) <= 1, key
    again, _ = collect_training_rows(model_input.repartition(5), columns, 1000, seed=1)
    pd.testing.assert_frame_equal(sample, again)
    other, _ = collect_training_rows(model_input, columns, 1000, seed=2)
    assert set(other["customer_id"]) != set(sample["customer_id"])
    # and the fit says so
    small = {**modeling, "max_train_customers": 1000, "btyd_features": []}
    small["candidates"] = {
        "driver": {"logistic_regression": modeling["candidates"]["driver"]["logistic_regression"]}
    }
    _, report = fit_churn_candidates(model_input, small)
    assert report["training"] == {"engine": "driver", **counts}


# ------------------------------------------------------------------ the spark_ml engine
@pytest.fixture(scope="module")
def spark_ml_fit(generated):
    """The same model input fitted and selected by the Spark ML engine (kept for fully
    distributed training): few iterations and no BTYD refit, each Spark ML iteration is a job."""
    modeling = {**generated["modeling"], "engine": "spark_ml", "btyd_features": []}
    spark_candidates = modeling["candidates"]["spark_ml"]
    modeling["candidates"] = {
        "spark_ml": {
            "logistic_regression": {**spark_candidates["logistic_regression"], "max_iter": 20},
            # every tree (no early stopping): the stopping test's reference
            "gradient_boosted_trees": {
                **spark_candidates["gradient_boosted_trees"],
                "validation_tol": None,
            },
        }
    }
    candidates, report = fit_churn_candidates(generated["model_input"], modeling)
    selected, selection = select_churn_model(
        candidates, report, generated["model_input"], modeling, generated["run_contract"]
    )
    return SimpleNamespace(
        modeling=modeling,
        candidates=candidates,
        report=report,
        selected=selected,
        selection=selection,
    )


def test_the_spark_ml_engine_fits_selects_and_scores_in_spark(generated, spark_ml_fit):
    assert set(spark_ml_fit.report["validation"]) == {
        "logistic_regression",
        "gradient_boosted_trees",
    }
    assert isinstance(spark_ml_fit.selected.model, PipelineModel)
    n_training = generated["model_input"].filter(F.col("split") != "test").count()
    assert spark_ml_fit.selection["training"] == {
        "engine": "spark_ml",
        "rows_used": n_training,
        "rows_available": n_training,
    }
    test = churn_scores(
        spark_ml_fit.selected.model, generated["model_input"].filter(F.col("split") == "test")
    ).toPandas()
    assert test["churn_probability"].between(0, 1).all()
    assert roc_auc_score(test["churned"], test["churn_probability"]) > 0.65
    weights = spark_ml_fit_weights(spark_ml_fit, generated["model_input"])
    assert weights and weights[0]["kind"] in {"coefficient", "importance"}
    # evaluated like the driver's models: on the collected test scores
    churn_metrics, curves = evaluate_churn_model(
        spark_ml_fit.selected.model,
        generated["model_input"],
        spark_ml_fit.selection,
        spark_ml_fit.report,
        spark_ml_fit.modeling["evaluation"],
    )
    assert churn_metrics["n_test"] == len(test)
    assert churn_metrics["n_train"] + churn_metrics["n_validation"] == n_training
    assert churn_metrics["roc_auc"] == pytest.approx(
        roc_auc_score(test["churned"], test["churn_probability"]), abs=1e-12
    )
    assert curves["feature_weights"] == weights


def spark_ml_fit_weights(fit, model_input):
    return _feature_weights(fit.selected.model, model_input, fit.selection["features"]["numeric"])


def test_spark_gbt_stops_when_validation_stops_improving(generated, spark_ml_fit):
    model_input, modeling = generated["model_input"], spark_ml_fit.modeling
    trees = modeling["candidates"]["spark_ml"]["gradient_boosted_trees"]

    def fitted(validation_tol):
        only_trees = {
            **modeling,
            "btyd_features": [],
            "candidates": {
                "spark_ml": {"gradient_boosted_trees": {**trees, "validation_tol": validation_tol}}
            },
        }
        models, report = fit_churn_candidates(model_input, only_trees)
        return models["gradient_boosted_trees"], report["validation"]["gradient_boosted_trees"]

    every_round = spark_ml_fit.candidates["gradient_boosted_trees"]
    # a tolerance no tree can meet: boosting stops after the first round without gain
    stopped, scores = fitted(0.5)
    assert every_round.stages[-1].getNumTrees == trees["max_iter"]
    assert 1 <= stopped.stages[-1].getNumTrees < trees["max_iter"]
    assert 0 < scores["pr_auc"] <= 1
    # the scaler saw the training customers only, not the validation ones that rode along
    train = model_input.filter(F.col("split") == "train")
    first = modeling["features"]["numeric"][0]
    expected_mean = train.agg(F.mean(first)).first()[0]
    assert stopped.stages[3].mean[0] == pytest.approx(expected_mean, rel=1e-12)
    assert every_round.stages[3].mean[0] == pytest.approx(expected_mean, rel=1e-12)


def _categories(model_input, column):
    return [row[0] for row in model_input.select(column).distinct().collect()] + ["__unknown"]


@pytest.mark.parametrize("engine", ["driver", "spark_ml"])
def test_logged_models_load_back_score_the_same_and_serve_as_champion(
    generated, spark_ml_fit, tmp_path, engine
):
    """Either engine's model: logged, registered, loaded back in its flavor; behind the alias
    it is the champion the scoring pipeline scores with (a Spark ML champion registered
    before the driver engine still scores). The driver's is its XGBoost candidate, whose
    trees MLflow's skops format must be told to trust."""
    if engine == "driver":
        modeling = generated["modeling"]
        features = candidate_features("xgboost", modeling)
        example = generated["model_input"].select(*features["numeric"], *features["categorical"])
        selected = ModelWithExample(generated["candidates"]["xgboost"], example.limit(5).toPandas())
        selection = {
            **generated["selection"],
            "selected": "xgboost",
            "features": features,
            "btyd_features": {"offered": [], "used": False},
        }
    else:
        selected, selection = spark_ml_fit.selected, spark_ml_fit.selection
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("round-trip")
    name = f"round_trip_{engine}"
    dataset = MlflowChurnModelDataset(
        save_args={"name": "churn_model", "registered_model_name": name}
    )
    with mlflow.start_run() as run:
        dataset.save(selected)
        mlflow.log_dict(selection, MlflowChampionDataset.SELECTION_ARTIFACT)
    # in the run, the saved model itself; from MLflow, a model that scores the same
    assert dataset.load() is selected.model
    uri = f"runs:/{run.info.run_id}/churn_model"
    info = mlflow.models.get_model_info(uri)
    assert ("sklearn" if engine == "driver" else "spark") in info.flavors
    assert engine == "spark_ml" or isinstance(selected.model[-1], XGBClassifier)
    loaded = load_churn_model(uri)
    customers = generated["model_input"].filter(F.col("split") == "test").limit(25)
    expected = churn_scores(selected.model, customers).toPandas()
    pd.testing.assert_frame_equal(expected, churn_scores(loaded, customers).toPandas())

    features = selection["features"]
    assert info.signature.inputs.input_names() == [*features["numeric"], *features["categorical"]]
    assert info.saved_input_example_info is not None
    client = mlflow.MlflowClient()
    registered = client.search_model_versions(f"name='{name}'")
    assert [v.run_id for v in registered] == [run.info.run_id]
    rows = customers.select(*info.signature.inputs.input_names()).toPandas()
    predicted = mlflow.pyfunc.load_model(f"models:/{name}/{registered[0].version}").predict(rows)
    if engine == "driver":
        # pyfunc predicts predict_proba, without Spark: column 1 is the churn probability
        assert predicted[:, 1] == pytest.approx(expected["churn_probability"].to_numpy(), abs=0)
    else:
        assert set(predicted) <= {0.0, 1.0} and len(predicted) == 25  # class labels at 0.5

    client.set_registered_model_alias(name, "champion", registered[0].version)
    champion = MlflowChampionDataset(registered_model=name).load()
    assert champion.version == int(registered[0].version)
    assert champion.selection["selected"] == selection["selected"]
    current = customers.drop("split", "churned")
    scored = score_customers(
        champion.model,
        current,
        current.select("customer_id"),
        champion.selection,
        generated["run_contract"],
        generated["period"],
        generated["modeling"]["reasons"],
    )[0].toPandas()
    merged = scored.merge(expected, on="customer_id", suffixes=("", "_expected"))
    assert len(merged) == 25
    assert merged["churn_probability"].to_numpy() == pytest.approx(
        merged["churn_probability_expected"].to_numpy(), abs=0
    )


# ------------------------------------------------------------------ oracle
def test_model_approaches_what_the_true_process_allows(generated):
    model_input = generated["model_input"]
    test = (
        churn_scores(generated["selected"].model, model_input.filter(F.col("split") == "test"))
        .select("customer_id", "churned", "churn_probability")
        .toPandas()
    )
    latent = pd.read_parquet(f"{generated['csv']}.latent.parquet")
    result = compare(
        test, generated["summary"].toPandas(), latent, generated["truth"], generated["period"]
    )
    print(result)
    # nobody beats knowing the latent state; the history-only optimum is the fair target
    assert result["latent"]["roc_auc"] > result["bayes"]["roc_auc"]
    assert result["model"]["roc_auc"] > result["bayes"]["roc_auc"] - 0.03


def test_head_to_head_with_the_purchase_models_own_churn_prediction(generated):
    """The classifier vs each purchase model's P(no purchase in the holdout) on the same test
    customers: scores checked against scikit-learn on probabilities computed here from the
    fitted parameters, and against the oracles (the data are drawn from BG/NBD)."""
    selection, model_input = generated["selection"], generated["model_input"]
    churn_metrics, _ = evaluate_churn_model(
        generated["selected"].model,
        model_input,
        selection,
        generated["fit_report"],
        generated["modeling"]["evaluation"],
    )
    head_to_head = churn_metrics["head_to_head"]
    assert set(head_to_head) == {"classifier", "bgnbd", "pnbd", "verdict"}
    for key in ("roc_auc", "pr_auc", "brier", "log_loss"):
        assert head_to_head["classifier"][key] == churn_metrics[key]
    test = (
        model_input.filter(F.col("split") == "test")
        .select("customer_id", "churned")
        .toPandas()
        .merge(
            generated["summary"].select("customer_id", "frequency", "recency", "T").toPandas(),
            on="customer_id",
        )
    )
    horizon = generated["period"]["holdout_days"] / 7
    fit = generated["calibration_fit"]
    for name, model in (("bgnbd", BetaGeoModel), ("pnbd", ParetoNBDModel)):
        p_quiet = model.from_params(fit[name]).predict_no_purchase(
            horizon, test["frequency"], test["recency"], test["T"]
        )
        scores = head_to_head[name]
        assert scores["roc_auc"] == pytest.approx(roc_auc_score(test["churned"], p_quiet))
        assert scores["pr_auc"] == pytest.approx(average_precision_score(test["churned"], p_quiet))
        assert scores["brier"] == pytest.approx(brier_score_loss(test["churned"], p_quiet))
    # the data are drawn from BG/NBD: its fitted P(no purchase) ranks about as well as the
    # Bayes oracle, which knows the true parameters; knowing the latent state does better
    latent = pd.read_parquet(f"{generated['csv']}.latent.parquet")
    oracle = compare(
        test[["customer_id", "churned"]].assign(churn_probability=0.0),
        generated["summary"].toPandas(),
        latent,
        generated["truth"],
        generated["period"],
    )
    assert head_to_head["bgnbd"]["roc_auc"] == pytest.approx(oracle["bayes"]["roc_auc"], abs=0.01)
    assert oracle["latent"]["roc_auc"] > max(
        head_to_head[m]["roc_auc"] for m in ("classifier", "bgnbd", "pnbd")
    )
    verdict = head_to_head["verdict"]
    assert verdict.startswith("On the test customers the churn classifier ranks churners")
    best = max(("bgnbd", "pnbd"), key=lambda m: head_to_head[m]["pr_auc"])
    assert {"bgnbd": "BG/NBD", "pnbd": "Pareto/NBD"}[best] in verdict
    assert ("better than" in verdict) == (
        head_to_head["classifier"]["pr_auc"] >= head_to_head[best]["pr_auc"]
    )
    json.dumps(churn_metrics, allow_nan=False)
