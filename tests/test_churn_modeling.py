"""churn_modeling: no leakage, reproducible split, exact metrics, model round trip, oracle."""

from __future__ import annotations

import json
import math

import mlflow
import mlflow.spark
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from cltv import metrics
from cltv.datasets import MlflowSparkModelDataset
from cltv.models import BetaGeoModel, ParetoNBDModel
from cltv.pipelines.churn_modeling.nodes import (
    _with_class_weight,
    assign_split,
    build_model_input,
    churn_scores,
    evaluate_churn_model,
    fit_churn_candidates,
    score_customers,
    select_churn_model,
)
from cltv.pipelines.cltv.nodes import btyd_churn_scores, fit_cltv_models
from cltv.pipelines.data_processing.nodes import (
    build_current_customer_features,
    build_current_customer_summary,
    build_customer_features,
    build_customer_summary,
    resolve_analysis_period,
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
    params["churn_modeling"]["candidates"]["gradient_boosted_trees"]["max_iter"] = 15
    return params


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory, parameters):
    """Clean transactions, tables and a fitted selection on ~8,000 generated customers."""
    csv = tmp_path_factory.mktemp("churn") / "generated.csv"
    truth = write_csv(150_000, csv, seed=3, latent=True)
    clean, _, _ = clean_csv(csv)
    clean = clean.cache()
    period = resolve_analysis_period(clean, None, None, 90)
    summary = build_customer_summary(clean, period, "W").cache()
    features = build_customer_features(clean, period, parameters["features"])
    modeling = parameters["churn_modeling"]
    models = ("bgnbd", "pnbd", "gamma_gamma")
    cltv = {"candidates": ["bgnbd", "pnbd"], **{m: {"penalizer": 0.0} for m in models}}
    calibration_fit = fit_cltv_models(summary, cltv, "W")
    btyd_scores = btyd_churn_scores(summary, calibration_fit, period).cache()
    model_input = build_model_input(features, summary, btyd_scores, modeling["split"]).cache()
    candidates, validation = fit_churn_candidates(model_input, modeling)
    selected, selection = select_churn_model(candidates, validation, model_input, modeling)
    return {
        "csv": csv,
        "truth": truth,
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
    clean, period = generated["clean"], generated["period"]
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
    original = _sorted_rows(build_customer_features(clean, period, features))
    changed = _sorted_rows(build_customer_features(tampered, period, features))
    pd.testing.assert_frame_equal(original, changed)
    # ... while the features as of observation_end (used for scoring) do see them
    assert not _sorted_rows(build_current_customer_features(clean, period, features)).equals(
        _sorted_rows(build_current_customer_features(tampered, period, features))
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
        for row in _with_class_weight(train, "balanced")
        .select("churned", "class_weight")
        .distinct()
        .collect()
    }
    assert weights == {1: pytest.approx(1000 / 600), 0: pytest.approx(1000 / 1400)}
    assert {
        r[0] for r in _with_class_weight(train, "none").select("class_weight").distinct().collect()
    } == {1.0}
    with pytest.raises(ValueError, match="class_weight"):
        _with_class_weight(train, "inverse")


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
def tiny(spark):
    return spark.createDataFrame(TINY, "label int, score double")


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
def test_metrics_agree_with_scikit_learn(spark, rows):
    frame = spark.createDataFrame(rows, "label int, score double")
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
    best_without = max(modeling["candidates"], key=lambda name: validation[name]["pr_auc"])
    assert set(validation) == {*modeling["candidates"], f"{best_without}_with_btyd"}
    best = max(v["pr_auc"] for v in selection["validation"].values())
    assert selection["validation"][selection["selected"]]["pr_auc"] == best
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
        model, generated["model_input"], selection, modeling["evaluation"]
    )
    counts = generated["model_input"].groupBy("split").count().toPandas()
    n = dict(zip(counts["split"], counts["count"], strict=True))
    assert churn_metrics["n_train"] == n["train"] and churn_metrics["n_test"] == n["test"]
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

    current = build_current_customer_features(
        generated["clean"], generated["period"], {"windows_days": [30, 90, 180], "rfm_segments": []}
    )
    current_summary = build_current_customer_summary(generated["clean"], generated["period"], "W")
    btyd_current = btyd_churn_scores(
        current_summary, generated["calibration_fit"], generated["period"]
    )
    predictions = score_customers(
        model, current, btyd_current, selection, modeling["risk_bands"], generated["period"]
    ).toPandas()
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


def test_boosting_stops_when_validation_stops_improving(generated):
    model_input, modeling = generated["model_input"], generated["modeling"]
    trees = modeling["candidates"]["gradient_boosted_trees"]

    def fitted(validation_tol):
        only_trees = {
            **modeling,
            "btyd_features": [],
            "candidates": {"gradient_boosted_trees": {**trees, "validation_tol": validation_tol}},
        }
        models, scores = fit_churn_candidates(model_input, only_trees)
        return models["gradient_boosted_trees"], scores["gradient_boosted_trees"]

    every_round, _ = fitted(None)
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


def test_logged_model_loads_back_and_scores_the_same(generated, tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("round-trip")
    dataset = MlflowSparkModelDataset(
        save_args={"name": "churn_model", "registered_model_name": "round_trip_churn"}
    )
    with mlflow.start_run() as run:
        dataset.save(generated["selected"])
    # in the run, the saved model itself; from MLflow, a model that scores the same
    assert dataset.load() is generated["selected"].model
    loaded = mlflow.spark.load_model(f"runs:/{run.info.run_id}/churn_model")
    customers = generated["model_input"].filter(F.col("split") == "test").limit(25)
    expected = churn_scores(generated["selected"].model, customers).toPandas()
    actual = churn_scores(loaded, customers).toPandas()
    pd.testing.assert_frame_equal(expected, actual)

    info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/churn_model")
    features = generated["selection"]["features"]
    assert info.signature.inputs.input_names() == [*features["numeric"], *features["categorical"]]
    assert info.saved_input_example_info is not None
    registered = mlflow.MlflowClient().search_model_versions("name='round_trip_churn'")
    assert [v.run_id for v in registered] == [run.info.run_id]
    # the generic pyfunc flavor scores pandas rows too (class labels at 0.5)
    pyfunc = mlflow.pyfunc.load_model(f"models:/round_trip_churn/{registered[0].version}")
    labels = pyfunc.predict(customers.select(*info.signature.inputs.input_names()).toPandas())
    assert set(labels) <= {0.0, 1.0} and len(labels) == 25


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
        generated["selected"].model, model_input, selection, generated["modeling"]["evaluation"]
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
