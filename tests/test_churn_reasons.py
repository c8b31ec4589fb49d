"""Why this customer: the churn reasons add up to the model's log-odds, equal SHAP's for
XGBoost, follow a hand computation for logistic regression, and move with the feature."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost
from deltalake import DeltaTable
from pyspark.sql import functions as F
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cltv.pipelines.churn_modeling import driver, reasons
from cltv.pipelines.churn_modeling.nodes import score_customers, summarise_churn_reasons
from cltv.spark import executor_cores

FEATURES = {"numeric": ["recency_days", "monetary_total"], "categorical": ["country"]}
INPUTS = [*FEATURES["numeric"], *FEATURES["categorical"]]
# the inputs a lever may be, by default: recency and spend, not the country
ACTIONABLE = slice(0, 2)
LOGISTIC = {"reg_param": 0.01, "elastic_net_param": 0.5, "max_iter": 1000}
XGBOOST = {
    "max_iter": 200,
    "early_stopping_rounds": 5,
    "max_depth": 3,
    "step_size": 0.3,
    "subsampling_rate": 0.8,
    "seed": 7,
    "n_jobs": 1,
}


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    """Customers whose churn rises with recency and in one country, falls with spend."""
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "recency_days": rng.integers(0, 400, n),
            "monetary_total": rng.lognormal(5, 1, n),
            "country": rng.choice(["France", "Germany", "United Kingdom"], n, p=[0.2, 0.2, 0.6]),
            "split": rng.choice(["train", "validation"], n, p=[0.75, 0.25]),
        }
    )
    log_odds = (
        (frame["recency_days"] - 200) / 80
        + (frame["country"] == "Germany") * 1.0
        - np.log(frame["monetary_total"]) / 3
        + rng.normal(0, 1, n)
    )
    frame[driver.LABEL] = (log_odds > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def models(customers) -> dict[str, Pipeline]:
    return {
        "logistic_regression": driver.fit_logistic_regression(
            customers, FEATURES, LOGISTIC, "none"
        ),
        "xgboost": driver.fit_xgboost(customers, FEATURES, XGBOOST, "none"),
    }


def _log_odds(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """The classifier's own margin on the prepared inputs."""
    prepared = model.named_steps["prepare"].transform(frame[INPUTS])
    classifier = model.named_steps["classifier"]
    if hasattr(classifier, "get_booster"):
        return classifier.predict(prepared, output_margin=True).astype(float)
    return classifier.decision_function(prepared)


def _assert_adds_up(pushes, bias, model, frame) -> None:
    """Contributions plus bias = log-odds, to 1e-6 (relative beyond 1: XGBoost adds its float32
    contributions in float32, 2-3e-7 of the margin)."""
    np.testing.assert_allclose(
        pushes.sum(axis=1) + bias, _log_odds(model, frame), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("name", ["logistic_regression", "xgboost"])
def test_contributions_and_bias_add_up_to_the_log_odds(models, customers, name):
    model = models[name]
    pushes, bias = reasons.contributions(model, customers)
    assert pushes.shape == (len(customers), len(INPUTS))
    _assert_adds_up(pushes, bias, model, customers)
    probability = model.predict_proba(customers[INPUTS])[:, 1]
    expit = 1.0 / (1.0 + np.exp(-(pushes.sum(axis=1) + bias)))
    np.testing.assert_allclose(expit, probability, atol=1e-6)


def test_xgboost_contributions_equal_shaps_tree_explainer(models, customers):
    shap = pytest.importorskip("shap")
    model = models["xgboost"]
    classifier = model.named_steps["classifier"]
    # training stopped early: the reasons explain the trees predict_proba uses, not all of them
    assert classifier.best_iteration + 1 < classifier.get_booster().num_boosted_rounds()
    prepared = model.named_steps["prepare"].transform(customers[INPUTS])
    explainer = shap.TreeExplainer(classifier)
    values = explainer.shap_values(prepared)
    # shap sees the one-hot slots: a categorical's reason is the sum of its slots
    slots = [
        *FEATURES["numeric"],
        *[f"country_{c}" for c in ("France", "Germany", "United Kingdom")],
    ]
    assert list(model.named_steps["prepare"].get_feature_names_out()) == slots
    expected = np.column_stack([values[:, 0], values[:, 1], values[:, 2:].sum(axis=1)])
    pushes, bias = reasons.contributions(model, customers)
    np.testing.assert_allclose(pushes, expected, atol=1e-6)
    np.testing.assert_allclose(bias, explainer.expected_value, atol=1e-6)


def test_tree_contributions_by_path_pattern_equal_xgboosts_on_every_row(models, customers):
    """The patterns shortcut (one TreeSHAP per distinct path pattern of each tree) gives
    ``pred_contribs``' numbers, with missing values and values on a threshold too."""
    model = models["xgboost"]
    classifier = model.named_steps["classifier"]
    frame = customers.copy()
    frame.loc[frame.index[::17], "monetary_total"] = np.nan  # each tree's default way
    trees = json.loads(classifier.get_booster().save_raw("json"))["learner"]
    splits = trees["gradient_booster"]["model"]["trees"][0]
    on_threshold = np.float32(splits["split_conditions"][0])  # a split's threshold (to rounding)
    scaler = model.named_steps["prepare"].named_transformers_["numeric"]
    feature = splits["split_indices"][0]
    frame[INPUTS[feature]] = frame[INPUTS[feature]].astype(float)
    frame.loc[frame.index[::23], INPUTS[feature]] = (
        float(on_threshold) * scaler.scale_[feature] + scaler.mean_[feature]
    )
    explainer = reasons.Explainer(model)
    prepared = explainer.prepare(frame)
    pushes, bias = explainer.contributions(prepared)
    direct = classifier.get_booster().predict(
        xgboost.DMatrix(prepared),
        pred_contribs=True,
        iteration_range=(0, classifier.best_iteration + 1),
    )
    grouped = np.column_stack([direct[:, 0], direct[:, 1], direct[:, 2:-1].sum(axis=1)])
    np.testing.assert_allclose(pushes, grouped, atol=1e-6)
    np.testing.assert_allclose(bias, direct[:, -1], atol=1e-6)


# ------------------------------------------------------------------ every explainer path
def _tree_shapes(classifier) -> dict[str, Any]:
    """What decides the explainer's path, read from the model: splits per tree, whether any
    split is categorical, trees per round, and each split's default way for a missing value."""
    model = json.loads(classifier.get_booster().save_raw("json"))["learner"]
    boosted = model["gradient_booster"]["model"]
    trees = boosted["trees"]
    inner = [np.asarray(t["left_children"]) != -1 for t in trees]
    return {
        "splits": [int(i.sum()) for i in inner],
        "categorical": any(any(t.get("split_type", [])) for t in trees),
        "trees_per_round": set(np.diff(boosted["iteration_indptr"]).tolist()),
        "default_left": {
            (int(f), bool(d))
            for t, i in zip(trees, inner, strict=True)
            for f, d in zip(
                np.asarray(t["split_indices"])[i], np.asarray(t["default_left"])[i], strict=True
            )
        },
    }


def _slots_by_name(names: list[str], inputs: list[str], categorical: list[str]) -> np.ndarray:
    """Prepared columns x inputs, from the slots' names (``country_France`` is ``country``'s):
    an oracle for the explainer's grouping that does not read the transformers."""
    owner = [
        next(c for c in inputs if n == c or (c in categorical and n.startswith(f"{c}_")))
        for n in names
    ]
    return np.array([[float(o == c) for c in inputs] for o in owner])


def _assert_equals_xgboost_and_shap(pushes, bias, classifier, prepared, slots) -> None:
    """Each row's contributions (grouped by ``slots``) are XGBoost's ``pred_contribs`` on
    that row and shap's TreeExplainer, to float32; and with the bias add up to the margin."""
    shap = pytest.importorskip("shap")
    booster = classifier.get_booster()
    best = getattr(classifier, "best_iteration", None)
    rounds = best + 1 if best is not None else booster.num_boosted_rounds()
    direct = booster.predict(
        xgboost.DMatrix(prepared, feature_types=booster.feature_types, enable_categorical=True),
        pred_contribs=True,
        iteration_range=(0, rounds),
    )
    np.testing.assert_allclose(pushes, direct[:, :-1] @ slots, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bias, direct[:, -1], atol=1e-6)
    explainer = shap.TreeExplainer(classifier)
    np.testing.assert_allclose(
        pushes, explainer.shap_values(prepared) @ slots, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(bias, explainer.expected_value, atol=1e-5)
    margin = classifier.predict(prepared, output_margin=True).astype(float)
    np.testing.assert_allclose(pushes.sum(axis=1) + bias, margin, rtol=1e-6, atol=1e-5)
    assert np.abs(pushes).sum(axis=1).min() > 0  # every customer is taken apart


def _explained_by_the_pipeline(model: Pipeline, frame: pd.DataFrame) -> None:
    """The driver pipeline's reasons for ``frame``, checked against XGBoost and shap."""
    explainer = reasons.Explainer(model)
    prepared = explainer.prepare(frame)
    pushes, bias = explainer.contributions(prepared)
    preparation = model.named_steps["prepare"]
    slots = _slots_by_name(
        list(preparation.get_feature_names_out()), INPUTS, FEATURES["categorical"]
    )
    _assert_equals_xgboost_and_shap(pushes, bias, model.named_steps["classifier"], prepared, slots)


def test_trees_of_more_than_63_splits_are_explained_on_every_row(customers):
    """A tree of more than 63 splits has more path bits than a pattern code holds:
    ``pred_contribs`` on every row."""
    params = {**XGBOOST, "max_depth": 12, "max_iter": 8, "early_stopping_rounds": None}
    model = driver.fit_xgboost(customers, FEATURES, params, "none")
    assert max(_tree_shapes(model.named_steps["classifier"])["splits"]) > 63
    _explained_by_the_pipeline(model, customers)


def test_missing_values_go_each_splits_default_way(customers):
    """Customers without a value (NaN, which the pipeline's scaler passes through) go each
    split's learned default way, left at some splits and right at others."""
    frame = customers.copy()
    rng = np.random.default_rng(5)
    for column in FEATURES["numeric"]:
        frame[column] = frame[column].astype(float).mask(rng.random(len(frame)) < 0.2)
    # the unknown spend is mostly of churners, so the trees learn a way for it
    frame.loc[frame["monetary_total"].isna() & (rng.random(len(frame)) < 0.5), driver.LABEL] = 1
    model = driver.fit_xgboost(frame, FEATURES, {**XGBOOST, "max_iter": 20}, "none")
    shapes = _tree_shapes(model.named_steps["classifier"])
    assert max(shapes["splits"]) <= 63 and not shapes["categorical"]  # the patterns' path
    assert {(0, True), (0, False), (1, True), (1, False)} <= shapes["default_left"]
    _explained_by_the_pipeline(model, frame)


def test_several_trees_per_round_are_explained_on_every_row(customers):
    """A boosted forest (``num_parallel_tree``): one round is several trees."""
    train = customers[customers["split"] == "train"]
    preparation = driver._preparation(FEATURES).fit(train[INPUTS])
    classifier = xgboost.XGBClassifier(
        n_estimators=4,
        num_parallel_tree=3,
        max_depth=3,
        subsample=0.8,
        colsample_bynode=0.8,
        tree_method="hist",
        random_state=7,
        n_jobs=1,
    ).fit(preparation.transform(train[INPUTS]), train[driver.LABEL])
    assert _tree_shapes(classifier)["trees_per_round"] == {3}
    model = Pipeline([("prepare", preparation), ("classifier", classifier)])
    _explained_by_the_pipeline(model, customers)


def test_categorical_splits_are_explained_on_every_row(customers):
    """XGBoost's own categorical splits (a set of categories goes left). The driver pipeline
    one-hots categoricals, so it never makes them: the tree explainer is tested alone, on a
    booster fitted with a categorical feature as XGBoost meets it (its category codes)."""
    codes = customers["country"].astype("category").cat.codes.to_numpy(float)
    prepared = np.column_stack([customers[FEATURES["numeric"]].to_numpy(float), codes])
    classifier = xgboost.XGBClassifier(
        n_estimators=6,
        max_depth=3,
        tree_method="hist",
        enable_categorical=True,
        feature_types=["q", "q", "c"],
        max_cat_to_onehot=1,  # a partition of the categories, not one against the rest
        n_jobs=1,
    ).fit(prepared, customers[driver.LABEL])
    assert _tree_shapes(classifier)["categorical"]
    trees = reasons._TreePaths(classifier)
    slots = np.eye(prepared.shape[1])
    pushes = trees(prepared, slots)
    _assert_equals_xgboost_and_shap(
        pushes, np.full(len(prepared), trees.bias), classifier, prepared, slots
    )


def test_a_logistic_regression_with_the_pipelines_preparation_equals_shap(customers):
    """The driver's logistic regression (scaled numerics, one-hot categoricals, an unseen
    country all zeros): shap's LinearExplainer with the training customers as background, and
    the closed form coefficient x (input - training mean), summed over a categorical's slots."""
    shap = pytest.importorskip("shap")
    model = driver.fit_logistic_regression(customers, FEATURES, LOGISTIC, "none")
    preparation, classifier = model.named_steps["prepare"], model.named_steps["classifier"]
    train = preparation.transform(customers.loc[customers["split"] == "train", INPUTS])
    frame = customers.copy()
    frame.loc[frame.index[::10], "country"] = "Spain"  # unseen in training
    prepared = preparation.transform(frame[INPUTS])
    assert (prepared[::10, 2:] == 0).all()
    slots = _slots_by_name(
        list(preparation.get_feature_names_out()), INPUTS, FEATURES["categorical"]
    )
    pushes, bias = reasons.contributions(model, frame)

    # interventional: every training customer as background (shap samples 100 by default)
    background = shap.maskers.Independent(train, max_samples=len(train))
    explainer = shap.LinearExplainer(classifier, background)
    np.testing.assert_allclose(pushes, explainer.shap_values(prepared) @ slots, atol=1e-9)
    np.testing.assert_allclose(bias, explainer.expected_value, atol=1e-9)
    closed = (prepared - train.mean(axis=0)) * classifier.coef_[0]
    np.testing.assert_allclose(pushes, closed @ slots, atol=1e-9)
    np.testing.assert_allclose(
        pushes.sum(axis=1) + bias, classifier.decision_function(prepared), atol=1e-9
    )
    assert np.abs(pushes).sum(axis=1).min() > 0


def _hand_model() -> Pipeline:
    """Recency 10 and 30 in training (mean 20, sd 10), countries FR and UK half each; log-odds
    = -1 + 2 z(recency) + 0.5 [FR] - 0.5 [UK]."""
    training = pd.DataFrame({"recency_days": [10.0, 30.0], "country": ["FR", "UK"]})
    preparation = ColumnTransformer(
        [
            ("numeric", StandardScaler(), ["recency_days"]),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ["country"],
            ),
        ],
        verbose_feature_names_out=False,
    )
    classifier = LogisticRegression()
    classifier.classes_ = np.array([0, 1])
    classifier.coef_ = np.array([[2.0, 0.5, -0.5]])
    classifier.intercept_ = np.array([-1.0])
    classifier.training_mean_ = np.array([0.0, 0.5, 0.5])
    model = Pipeline([("prepare", preparation), ("classifier", classifier)])
    model.named_steps["prepare"].fit(training)
    return model


def test_a_logistic_regression_by_hand(spark):
    model = _hand_model()
    customers = pd.DataFrame(
        {"customer_id": ["a", "b"], "recency_days": [40, 10], "country": ["UK", "FR"]}
    )
    pushes, bias = reasons.contributions(model, customers)
    # a: z = 2, so recency 2 x 2 = 4; UK: 0.5 x (0 - 0.5) + (-0.5) x (1 - 0.5) = -0.5
    # b: z = -1, so recency -2; FR: 0.5 x (1 - 0.5) + (-0.5) x (0 - 0.5) = 0.5
    np.testing.assert_allclose(pushes, [[4.0, -0.5], [-2.0, 0.5]])
    # bias: -1 + 0.5 x 0.5 - 0.5 x 0.5 = -1
    np.testing.assert_allclose(bias, [-1.0, -1.0])

    scored, observation = reasons.explained_scores(model, spark.createDataFrame(customers), 3, 1)
    rows = {r["customer_id"]: r.asDict(recursive=True) for r in scored.collect()}
    a, b = rows["a"], rows["b"]
    assert a["churn_probability"] == pytest.approx(1 / (1 + math.exp(-2.5)))  # -1 + 4 - 0.5
    assert a["churn_reasons"] == [
        {"feature": "recency_days", "value": "40", "contribution": pytest.approx(4.0)}
    ]
    # UK pulls a's churn down, but where a customer lives is no lever a team can pull
    assert a["retention_levers"] == []
    assert a["retention_lever_text"] is None
    assert a["churn_reason_text"] == "no purchase for 40 days"
    assert b["churn_reasons"] == [
        {"feature": "country", "value": "FR", "contribution": pytest.approx(0.5)}
    ]
    assert b["retention_levers"] == [
        {"feature": "recency_days", "value": "10", "contribution": pytest.approx(-2.0)}
    ]
    assert b["retention_lever_text"] == "last purchase 10 days ago"
    assert b["churn_reason_text"] == "a customer in FR"
    assert a["reasons_skipped"] == b["reasons_skipped"] == 0
    # the global view, observed on that one action: total |contribution| per input
    assert observation.get == {
        "customers": 2,
        "recency_days": pytest.approx(6.0),  # 4 + 2
        "country": pytest.approx(1.0),  # 0.5 + 0.5
    }
    assert reasons.GlobalImportance(observation, "hand").get()["features"] == [
        {"feature": "recency_days", "mean_abs_contribution": pytest.approx(3.0)},
        {"feature": "country", "mean_abs_contribution": pytest.approx(0.5)},
    ]


@pytest.mark.parametrize("name", ["logistic_regression", "xgboost"])
def test_shuffling_one_feature_moves_its_reasons_with_it(spark, customers, name):
    """An additive model (trees of depth one for XGBoost): a customer's reason from a feature
    depends only on their value of it, so shuffled values carry their reasons along."""
    params = {**XGBOOST, "max_depth": 1} if name == "xgboost" else LOGISTIC
    model = driver.BUILDERS[name](customers, FEATURES, params, "none")
    order = np.random.default_rng(11).permutation(len(customers))
    shuffled = customers.copy()
    shuffled["recency_days"] = customers["recency_days"].to_numpy()[order]
    before, _ = reasons.contributions(model, customers)
    after, bias = reasons.contributions(model, shuffled)
    _assert_adds_up(after, bias, model, shuffled)
    recency = INPUTS.index("recency_days")
    np.testing.assert_allclose(after[:, recency], before[order, recency], atol=1e-6)
    others = [i for i in range(len(INPUTS)) if i != recency]
    np.testing.assert_allclose(after[:, others], before[:, others], atol=1e-6)

    def recency_reasons(frame: pd.DataFrame) -> pd.Series:
        scored, _ = reasons.explained_scores(model, spark.createDataFrame(frame), 3, 3)
        table = scored.toPandas().set_index("customer_id").loc[frame["customer_id"]]
        return table["churn_reasons"].map(
            lambda found: next(
                (
                    (r["value"], round(r["contribution"], 5))
                    for r in found
                    if r["feature"] == "recency_days"
                ),
                None,
            )
        )

    assert (
        recency_reasons(shuffled).tolist() == recency_reasons(customers).to_numpy()[order].tolist()
    )


def _sides(model: Pipeline, customers: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per customer and input: on the worse side of the training mean (a long wait, a low
    spend) and on the better side; the country has no side."""
    mean = model.named_steps["prepare"].named_transformers_["numeric"].mean_
    recency, spend = (customers[FEATURES["numeric"]].to_numpy(float) - mean).T
    always = np.ones(len(customers), bool)
    worse = np.column_stack([recency >= 0, spend <= 0, always])
    better = np.column_stack([recency <= 0, spend >= 0, always])
    return worse, better


def test_reasons_are_ranked_and_signed(spark, models, customers):
    frame = spark.createDataFrame(customers.drop(columns=["split", driver.LABEL]))
    scored, observation = reasons.explained_scores(models["xgboost"], frame, 2, 1)
    table = scored.toPandas()
    pushes, _ = reasons.contributions(models["xgboost"], customers)
    assert len(table) == len(customers)
    for found in table["churn_reasons"]:
        contributions = [r["contribution"] for r in found]
        assert len(found) <= 2 and all(c > 0 for c in contributions)
        assert contributions == sorted(contributions, reverse=True)
    assert all(
        len(f) <= 1 and all(r["contribution"] < 0 for r in f) for f in table["retention_levers"]
    )
    # a customer has reasons exactly when an input pushes their churn up from the worse side
    # of its training mean (a long wait, a low spend: here 63% of them), a lever when an
    # actionable one pulls it down from the better side, and words with each
    by_customer = table.set_index("customer_id").loc[customers["customer_id"]]
    has_reason = by_customer["churn_reasons"].map(len).to_numpy() > 0
    worse, better = _sides(models["xgboost"], customers)
    np.testing.assert_array_equal(has_reason, np.where(worse, pushes, 0).max(axis=1) > 0)
    has_lever = by_customer["retention_levers"].map(len).to_numpy() > 0
    np.testing.assert_array_equal(
        has_lever, np.where(better, pushes, 0)[:, ACTIONABLE].min(axis=1) < 0
    )
    assert 0 < has_lever.sum() < (pushes.min(axis=1) < 0).sum()  # the country is left out
    np.testing.assert_array_equal(by_customer["churn_reason_text"].notna(), has_reason)
    np.testing.assert_array_equal(by_customer["retention_lever_text"].notna(), has_lever)
    # an input passed over is counted: pushes up from the better side among the first two,
    # or down from the worse side first among the actionable
    up = np.argsort(-pushes, axis=1, kind="stable")[:, :2]
    skipped_up = ((np.take_along_axis(pushes, up, 1) > 0) & ~np.take_along_axis(worse, up, 1)).sum(
        axis=1
    )
    lever_pushes = pushes[:, ACTIONABLE]
    down = np.argmin(lever_pushes, axis=1)[:, None]
    skipped_down = (np.take_along_axis(lever_pushes, down, 1) < 0) & ~np.take_along_axis(
        better[:, ACTIONABLE], down, 1
    )
    np.testing.assert_array_equal(by_customer["reasons_skipped"], skipped_up + skipped_down.ravel())
    assert (by_customer["reasons_skipped"] > 0).any()
    seen = observation.get
    assert seen["customers"] == len(customers)
    for i, feature in enumerate(INPUTS):
        assert seen[feature] == pytest.approx(np.abs(pushes[:, i]).sum(), rel=1e-6)


def test_the_reasons_udf_gets_one_even_share_of_customers_per_core(spark, models, customers):
    """Customers arriving in three uneven partitions (as a table's files give them) reach the
    UDF in one even share per core."""
    frame = customers.drop(columns=["split", driver.LABEL])
    part = np.repeat([0, 1, 2], [1100, 1500, len(frame) - 2600])
    uneven = (
        spark.createDataFrame(frame.assign(part=part)).repartitionByRange(3, "part").drop("part")
    )
    sizes = uneven.groupBy(F.spark_partition_id().alias("p")).count().toPandas()["count"]
    assert sorted(sizes) == [400, 1100, 1500]
    scored, _ = reasons.explained_scores(models["xgboost"], uneven, 2, 1)
    shares = (
        scored.groupBy(F.spark_partition_id().alias("part")).count().toPandas()["count"].tolist()
    )
    cores = spark.sparkContext.defaultParallelism
    assert executor_cores(spark) == cores
    assert len(shares) == cores and sum(shares) == len(frame)
    # round robin from each of the three inputs: the shares differ by at most one row each
    assert max(shares) - min(shares) <= 3


def test_a_reason_shows_the_customers_own_value(spark, models):
    """Each input's value as the customer has it: an integer as it is, a double to four
    decimals, a country as text, and nothing for a missing value."""
    schema = "customer_id string, recency_days int, monetary_total double, country string"
    rows = [
        ("c1", 300, 12.34567, "Germany"),
        ("c2", 5, 250.0, "France"),
        ("c3", 120, None, "United Kingdom"),
    ]
    expected = {
        "c1": {"recency_days": "300", "monetary_total": "12.3457", "country": "Germany"},
        "c2": {"recency_days": "5", "monetary_total": "250.0", "country": "France"},
        "c3": {"recency_days": "120", "monetary_total": None, "country": "United Kingdom"},
    }
    scored, _ = reasons.explained_scores(
        models["xgboost"], spark.createDataFrame(rows, schema), 3, 3, actionable_levers=["*"]
    )
    shown = {
        (row["customer_id"], found["feature"]): found["value"]
        for row in scored.collect()
        for found in [*row["churn_reasons"], *row["retention_levers"]]
    }
    # every input pushes each of these customers one way or the other
    assert len(shown) == 9
    assert shown == {
        (customer, feature): value
        for customer, values in expected.items()
        for feature, value in values.items()
    }


@pytest.mark.parametrize(
    ("feature", "value", "customer", "words"),
    [
        (
            "recency_days",
            94,
            {"n_purchase_days": 5, "mean_days_between_purchases": 21.0},
            "no purchase for 94 days; this customer usually buys every 21 days",
        ),
        (
            "recency_days",
            1,
            {"n_purchase_days": 1, "mean_days_between_purchases": 0.0},
            "no purchase for 1 day",
        ),
        ("revenue_trend_90d", -0.25, {}, "spend fell 40% against the previous 90 days"),
        (
            "revenue_trend_180d",
            -1.0,
            {},
            "no spend in the last 180 days, after spending in the 180 before",
        ),
        ("revenue_trend_180d", 0.5, {}, "spend rose 200% against the previous 180 days"),
        ("n_purchase_days", 1, {}, "one purchase only"),
        ("purchases_last_30d", 0, {}, "no purchase in the last 30 days"),
        ("revenue_last_90d", 1234.5, {}, "only 1,234 spent in the last 90 days"),
        ("mean_days_between_purchases", 0.0, {"n_purchase_days": 1}, "one purchase only"),
        (
            "btyd_p_alive",
            0.14,
            {"n_purchase_days": 3},
            "the purchase model's probability of still being an active customer is 14%",
        ),
        ("loyalty_points", 7, {}, "loyalty_points is 7"),
    ],
)
def test_each_feature_has_words_for_people(feature, value, customer, words):
    assert reasons.phrase_for(feature)(value, {feature: value, **customer}) == words


def test_every_default_feature_has_a_phrase_of_its_own(project_root):
    import yaml

    params = yaml.safe_load((project_root / "conf/base/parameters_churn_modeling.yml").read_text())[
        "churn_modeling"
    ]
    features = [
        *params["features"]["numeric"],
        *params["features"]["categorical"],
        *params["btyd_features"],
    ]
    for feature in features:
        assert not reasons.phrase_for(feature)(1, {}).startswith(f"{feature} is"), feature


def test_scoring_writes_reasons_and_the_global_view(spark, models, customers, tmp_path):
    """score_customers' reasons come from the model that scored, and the global view from the
    write of the table itself."""
    features = spark.createDataFrame(
        customers.drop(columns=["split", driver.LABEL]).assign(rfm_segment="champions")
    )
    selection = {
        "selected": "xgboost",
        "threshold": {"value": 0.5},
        "btyd_features": {"used": False},
        "features": FEATURES,
    }
    period = {"observation_end": "2011-12-09", "holdout_days": 90}
    predictions, importance = score_customers(
        models["xgboost"],
        features,
        None,
        selection,
        {  # this run's contract: the selection was logged before contracts
            "churn_modeling.risk_bands": [
                {"name": "high", "min_probability": 0.5},
                {"name": "low", "min_probability": 0.0},
            ],
            "holdout_days": 90,
        },
        period,
        {"churn_reasons": 3, "retention_levers": 1},
    )
    from cltv.datasets import SparkDeltaTableDataset

    SparkDeltaTableDataset(filepath=str(tmp_path / "churn_predictions")).save(predictions)
    written = DeltaTable(str(tmp_path / "churn_predictions")).to_pandas()
    assert list(written.columns[6:11]) == list(reasons.REASON_COLUMNS)
    summary, mlflow_metrics, plots = summarise_churn_reasons(importance)
    pushes, _ = reasons.contributions(models["xgboost"], customers)
    # every customer an input pushes up has reasons, and one pulled down a lever
    by_customer = written.set_index("customer_id").loc[customers["customer_id"]]
    worse, better = _sides(models["xgboost"], customers)
    np.testing.assert_array_equal(
        by_customer["churn_reasons"].map(len).to_numpy() > 0,
        np.where(worse, pushes, 0).max(axis=1) > 0,
    )
    np.testing.assert_array_equal(
        by_customer["retention_levers"].map(len).to_numpy() > 0,
        np.where(better, pushes, 0)[:, ACTIONABLE].min(axis=1) < 0,
    )
    means = dict(zip(INPUTS, np.abs(pushes).mean(axis=0), strict=True))
    assert summary["observed"] and summary["customers"] == len(customers)
    assert [f["feature"] for f in summary["features"]] == sorted(means, key=lambda f: -means[f])
    for entry in summary["features"]:
        assert entry["mean_abs_contribution"] == pytest.approx(means[entry["feature"]], rel=1e-6)
        key = f"reason_importance.{entry['feature']}"
        assert mlflow_metrics[key]["value"] == entry["mean_abs_contribution"]
    assert list(plots) == ["churn_reason_importance.png"]
    json.dumps(summary)  # the dashboard's JSON


def test_a_model_without_reasons_leaves_the_columns_empty_and_says_so(caplog):
    importance = reasons.GlobalImportance(None, "gradient_boosted_trees")
    assert importance.get() == {
        "model": "gradient_boosted_trees",
        "customers": 0,
        "observed": False,
        "features": [],
    }
    assert not reasons.explains(object())


def assert_every_customer_has_reasons(project) -> pd.DataFrame:
    """A run's ``churn_predictions``: every customer has reasons from the inputs of the model
    that scored, up the most first, and the first one in words; levers only among the inputs a
    team can act on; and each reads right for the customer (:func:`assert_reasons_read_right`)."""
    from cltv.parameters import ACTIONABLE_LEVERS

    table = DeltaTable(str(project / "data/07_model_output/churn_predictions")).to_pandas()
    selection = json.loads((project / "data/06_models/churn_model_selection.json").read_text())
    inputs = {*selection["features"]["numeric"], *selection["features"]["categorical"]}
    can_act = set(np.array(sorted(inputs))[reasons.actionable(sorted(inputs), ACTIONABLE_LEVERS)])
    assert can_act and not {"country", "tenure_days", "rfm_segment"} & can_act
    for column in ("churn_reasons", "retention_levers", "reasons_skipped"):
        assert table[column].notna().all(), column
    for found, levers, words, lever_words in table[
        ["churn_reasons", "retention_levers", "churn_reason_text", "retention_lever_text"]
    ].itertuples(index=False):
        pushes = [r["contribution"] for r in found]
        assert len(found) <= 3 and all(p > 0 for p in pushes) and pushes == sorted(pushes)[::-1]
        assert len(levers) <= 1 and all(r["contribution"] < 0 for r in levers)
        assert {r["feature"] for r in found} <= inputs
        assert {r["feature"] for r in levers} <= can_act
        # words exactly with a reason (and a lever): the first shown one's
        assert (words is None) == (len(found) == 0)
        assert (lever_words is None) == (len(levers) == 0)
    # nearly everyone has something that pushes their churn up, and something to build on
    assert (table["churn_reasons"].map(len) > 0).mean() > 0.9
    assert (table["retention_levers"].map(len) > 0).mean() > 0.5
    assert_reasons_read_right(project, table)
    return table


# a percentage that reads 0% or 100%, or a share that does (P(alive) is 1 only when exact)
ROUNDED_OUT = re.compile(r"(?<![\d.])(?:0|100)%")


def assert_reasons_read_right(project, table: pd.DataFrame) -> None:
    """Issue 47's checks on a whole run, against the customers' own features: no 0% or 100%
    that is not exact; no P(alive) (nor usual gap) shown for a customer with one purchase; no
    spend trend shown for one with no spend in either window; no segment named for praise as a
    reason to churn. Each shown input is looked up in the features it was scored from."""
    features = (
        DeltaTable(str(project / "data/04_feature/customer_features_current"))
        .to_pandas()
        .set_index("customer_id")
    )
    shown = pd.DataFrame(
        [
            {"customer_id": row.customer_id, "as": way, "rank": rank, **entry}
            for row in table.itertuples(index=False)
            for way, entries in (("reason", row.churn_reasons), ("lever", row.retention_levers))
            for rank, entry in enumerate(entries)
        ]
    ).join(features, on="customer_id")
    assert len(shown) > 0
    one_purchase = shown["n_purchase_days"] <= 1
    assert one_purchase.any() and (~one_purchase).any()
    said_nothing = shown["feature"].isin(["btyd_p_alive", "mean_days_between_purchases"])
    assert not (said_nothing & one_purchase).any(), shown[said_nothing & one_purchase].head()
    for trend in [f for f in shown["feature"].unique() if f.startswith("revenue_trend_")]:
        window = trend.removeprefix("revenue_trend_")
        no_spend = (shown[trend] == 0) & (shown[f"revenue_last_{window}"] <= 0)
        assert not ((shown["feature"] == trend) & no_spend).any(), trend
    praise = shown["value"].str.casefold().isin([s.casefold() for s in reasons.PRAISE_SEGMENTS])
    assert not ((shown["as"] == "reason") & (shown["feature"] == "rfm_segment") & praise).any()
    for column in ("churn_reason_text", "retention_lever_text"):
        words = table[column].dropna()
        assert len(words) > 0
        rounded = words[words.str.contains(ROUNDED_OUT)]
        # only a P(alive) of exactly 1 may read 100% (a customer who bought on the last day)
        way = "churn_reasons" if column == "churn_reason_text" else "retention_levers"
        first = table.loc[rounded.index, way].map(lambda entries: entries[0])
        assert all(e["feature"] == "btyd_p_alive" and e["value"] == "1.0" for e in first), (
            rounded.head().tolist()
        )
        # P(alive) of a one-time buyer is never shown, so it is never put in words either
        assert not words.str.contains("cannot tell yet").any()
        assert not words.str.contains("spend flat").any()


def test_every_customer_of_a_run_has_reasons_and_the_run_logs_the_global_view(default_run):
    import mlflow

    assert_every_customer_has_reasons(default_run.project)
    importance = json.loads(
        (default_run.project / "data/08_reporting/churn_reason_importance.json").read_text()
    )
    assert importance["observed"]
    mlflow.set_tracking_uri(f"sqlite:///{default_run.project / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["cltv-churn"], order_by=["start_time ASC"]).iloc[0]
    for entry in importance["features"]:
        logged = run[f"metrics.churn.reason_importance.{entry['feature']}"]
        assert logged == pytest.approx(entry["mean_abs_contribution"])
    artifacts = mlflow.MlflowClient().list_artifacts(run.run_id, "churn_reason_plots")
    assert [a.path for a in artifacts] == ["churn_reason_plots/churn_reason_importance.png"]
