"""Nodes of ``churn_modeling``: label, split, fit, select, evaluate and score on Spark ML.

Only DataFrame and ``pyspark.ml`` APIs (no RDDs, no SparkContext), so the same code runs over
Spark Connect. Churn means no purchase in the ``holdout_days`` after ``calibration_end``
(``customer_summary.churned``); features come from ``customer_features``, computed from the
calibration period alone.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import mlflow.spark
from matplotlib.figure import Figure
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cltv import metrics
from cltv.datasets.mlflow_spark_model_dataset import SparkModelWithExample
from cltv.pipelines.cltv.nodes import MODEL_LABELS, NO_PURCHASE_PREFIX

logger = logging.getLogger(__name__)

LABEL = "churned"
SPLITS = ("train", "validation", "test")
INPUT_EXAMPLE_ROWS = 5


# ------------------------------------------------------------------ model input
def assign_split(
    customers: DataFrame, label: str, fractions: dict[str, float], seed: int
) -> DataFrame:
    """Add ``split`` (train / validation / test), stratified by ``label`` and seeded.

    Within each label, customers are ordered by a seeded hash of their id and cut at the
    cumulative fractions, so each split holds the same share of every class (to one customer)
    and the assignment does not depend on partitioning or row order.
    """
    if set(fractions) != set(SPLITS) or abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise ValueError(
            f"parameter churn_modeling.split.fractions: need {', '.join(SPLITS)} summing to 1, "
            f"got {fractions}"
        )
    stratum = Window.partitionBy(label).orderBy(
        F.xxhash64(F.lit(seed), "customer_id"), "customer_id"
    )
    position = (F.row_number().over(stratum) - 0.5) / F.count(F.lit(1)).over(
        Window.partitionBy(label)
    )
    train_end = fractions["train"]
    validation_end = train_end + fractions["validation"]
    split = (
        F.when(F.col("_position") < train_end, "train")
        .when(F.col("_position") < validation_end, "validation")
        .otherwise("test")
    )
    return customers.withColumn("_position", position).withColumn("split", split).drop("_position")


def build_model_input(
    customer_features: DataFrame,
    customer_summary: DataFrame,
    btyd_scores: DataFrame,
    split: dict[str, Any],
) -> DataFrame:
    """Calibration features with the holdout label, one row per customer, split by customer;
    with the purchase models' calibration-period scores (``cltv``'s ``btyd_churn_scores``):
    candidate features and the models' own P(no purchase), compared on the test customers."""
    labelled = customer_features.join(
        customer_summary.select("customer_id", F.col("churned").cast("int").alias(LABEL)),
        "customer_id",
    ).join(btyd_scores, "customer_id")
    return assign_split(labelled, LABEL, split["fractions"], split["seed"])


# candidates fitted with the BTYD features as well are named <classifier> + this (MLflow
# metric names allow no "+")
WITH_BTYD = "_with_btyd"


def candidate_features(name: str, modeling: dict[str, Any]) -> dict[str, list[str]]:
    """The features candidate ``name`` sees: ``features``, plus ``btyd_features`` for the
    candidates fitted with them."""
    features = modeling["features"]
    if not name.endswith(WITH_BTYD):
        return features
    return {**features, "numeric": [*features["numeric"], *modeling["btyd_features"]]}


# ------------------------------------------------------------------ models
def _pipeline(features: dict[str, list[str]], classifier) -> Pipeline:
    """Scale numeric features, one-hot the categoricals (unseen values kept apart), classify."""
    numeric, categorical = features["numeric"], features["categorical"]
    indexed = [f"{name}_index" for name in categorical]
    encoded = [f"{name}_onehot" for name in categorical]
    return Pipeline(
        stages=[
            StringIndexer(inputCols=categorical, outputCols=indexed, handleInvalid="keep"),
            OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"),
            VectorAssembler(inputCols=numeric, outputCol="numeric_raw", handleInvalid="error"),
            StandardScaler(
                inputCol="numeric_raw", outputCol="numeric_scaled", withMean=True, withStd=True
            ),
            VectorAssembler(inputCols=["numeric_scaled", *encoded], outputCol="features"),
            classifier,
        ]
    )


def _with_class_weight(train: DataFrame, class_weight: str) -> DataFrame:
    """``balanced``: each class weighs n / (2 n_class), as scikit-learn's class_weight does."""
    if class_weight == "none":
        return train.withColumn("class_weight", F.lit(1.0))
    if class_weight != "balanced":
        raise ValueError(
            f"parameter churn_modeling.class_weight: '{class_weight}' is not balanced or none"
        )
    counts = train.groupBy(LABEL).count()
    total = F.sum("count").over(Window.partitionBy())
    weights = counts.select(LABEL, (total / (2.0 * F.col("count"))).alias("class_weight"))
    return train.join(F.broadcast(weights), LABEL)


def fit_churn_candidates(
    model_input: DataFrame, modeling: dict[str, Any]
) -> tuple[dict[str, PipelineModel], dict[str, dict[str, float]]]:
    """Fit every candidate in ``modeling['candidates']`` on the training split and score each
    once on the validation split (PR-AUC, ROC-AUC); when ``btyd_features`` are offered, the
    best of them on validation is fitted again with them (``<name>_with_btyd``), so that the
    validation split decides whether they help.

    Gradient-boosted trees stop adding trees when the validation loss stops improving by
    ``validation_tol`` (relative; Spark's ``validationTol``), at most ``max_iter``: the
    validation customers then ride along in the training set, flagged, and only measure.
    """
    # every column some candidate sees
    features = candidate_features(WITH_BTYD if modeling["btyd_features"] else "", modeling)
    columns = ["customer_id", *features["numeric"], *features["categorical"], LABEL]
    in_training = model_input.filter(F.col("split") != "test")
    train = _with_class_weight(
        in_training.filter(F.col("split") == "train"), modeling["class_weight"]
    ).select(*columns, "class_weight", F.lit(False).alias(VALIDATION_FLAG))
    common = {"featuresCol": "features", "labelCol": LABEL, "weightCol": "class_weight"}

    def gradient_boosted_trees(p: dict[str, Any]) -> GBTClassifier:
        stopping = {}
        if p.get("validation_tol") is not None:
            stopping = {
                "validationIndicatorCol": VALIDATION_FLAG,
                "validationTol": p["validation_tol"],
            }
        return GBTClassifier(
            maxIter=p["max_iter"],
            maxDepth=p["max_depth"],
            stepSize=p["step_size"],
            subsamplingRate=p["subsampling_rate"],
            seed=p["seed"],
            **stopping,
            **common,
        )

    builders = {
        "logistic_regression": lambda p: LogisticRegression(
            regParam=p["reg_param"],
            elasticNetParam=p["elastic_net_param"],
            maxIter=p["max_iter"],
            standardization=False,  # numeric features are already scaled; one-hots stay 0/1
            **common,
        ),
        "gradient_boosted_trees": gradient_boosted_trees,
    }
    unknown = sorted(set(modeling["candidates"]) - set(builders))
    if unknown:
        raise ValueError(
            f"parameter churn_modeling.candidates: unknown model(s) {', '.join(unknown)}; "
            f"known: {', '.join(builders)}"
        )
    # validation rows only measure early stopping (weight 1: the loss they report is the
    # plain validation loss); the scaler and encoders are fitted on the training rows alone
    with_validation = train.unionByName(
        in_training.filter(F.col("split") == "validation").select(
            *columns, F.lit(1.0).alias("class_weight"), F.lit(True).alias(VALIDATION_FLAG)
        )
    )

    def fit(name: str, suffix: str = "") -> PipelineModel:
        classifier = builders[name](modeling["candidates"][name])
        pipeline = _pipeline(candidate_features(name + suffix, modeling), classifier)
        if not (
            classifier.hasParam("validationIndicatorCol")
            and classifier.isSet("validationIndicatorCol")
        ):
            return pipeline.fit(train)
        preparation = Pipeline(stages=pipeline.getStages()[:-1]).fit(train)
        trees = classifier.fit(preparation.transform(with_validation))
        return PipelineModel([*preparation.stages, trees])

    fitted = {name: fit(name) for name in modeling["candidates"]}
    scores = {name: _validation_scores(model, model_input) for name, model in fitted.items()}
    if modeling["btyd_features"]:
        # offered to the best classifier on validation: one more fit, not one per candidate
        best = max(scores, key=lambda name: scores[name]["pr_auc"])
        fitted[best + WITH_BTYD] = fit(best, WITH_BTYD)
        scores[best + WITH_BTYD] = _validation_scores(fitted[best + WITH_BTYD], model_input)
    for name, score in scores.items():
        logger.info(
            "Churn candidate %s: validation PR-AUC %.4f, ROC-AUC %.4f",
            name,
            score["pr_auc"],
            score["roc_auc"],
        )
    return fitted, scores


# GBT's early stopping reads this flag to tell validation rows from training rows
VALIDATION_FLAG = "is_validation"


def _validation_scores(model: PipelineModel, model_input: DataFrame) -> dict[str, float]:
    ranking = metrics.ranking_metrics(
        metrics.score_table(_held_out(model, model_input, "validation"))
    )
    return {"pr_auc": ranking["pr_auc"], "roc_auc": ranking["roc_auc"]}


def churn_scores(model: PipelineModel, customers: DataFrame) -> DataFrame:
    """``customers`` with ``churn_probability``, the model's probability of class 1."""
    scored = model.transform(customers)
    return scored.select(
        *customers.columns,
        vector_to_array("probability")[1].alias("churn_probability"),
    )


def _held_out(model: PipelineModel, model_input: DataFrame, split: str) -> DataFrame:
    rows = model_input.filter(F.col("split") == split)
    return churn_scores(model, rows).select(
        F.col(LABEL).alias("label"), F.col("churn_probability").alias("score")
    )


def select_churn_model(
    candidates: dict[str, PipelineModel],
    scores: dict[str, dict[str, float]],
    model_input: DataFrame,
    modeling: dict[str, Any],
) -> tuple[SparkModelWithExample, dict[str, Any]]:
    """Pick the candidate with the best validation PR-AUC (``scores``, from
    :func:`fit_churn_candidates`), and its threshold on the validation split."""
    selected = max(scores, key=lambda name: scores[name]["pr_auc"])
    btyd = _btyd_feature_selection(scores, selected, modeling["btyd_features"])
    rule = modeling["threshold"]
    table = metrics.score_table(_held_out(candidates[selected], model_input, "validation")).cache()
    threshold = metrics.choose_threshold(table, rule["rule"], rule.get("value"))
    table.unpersist()
    features = candidate_features(selected, modeling)
    example = (
        model_input.filter(F.col("split") == "train")
        .select(*features["numeric"], *features["categorical"])
        .orderBy("recency_days", *features["categorical"])
        .limit(INPUT_EXAMPLE_ROWS)
        .toPandas()  # the feature tables' own types, so their rows score as they are
    )
    selection = {
        "selected": selected,
        "selection_metric": "pr_auc",
        "validation": scores,
        "threshold": {"rule": rule["rule"], "value": threshold},
        "features": features,
        "btyd_features": btyd,
    }
    logger.info("Selected churn model %s, threshold %.4f", selected, threshold)
    return SparkModelWithExample(candidates[selected], example), selection


def _btyd_feature_selection(
    scores: dict[str, dict[str, float]], selected: str, offered: list[str]
) -> dict[str, Any]:
    """Whether the BTYD features were offered and kept, with the best validation PR-AUC with
    and without them; logged."""
    if not offered:
        return {"offered": [], "used": False}
    best = {
        kept: max(v["pr_auc"] for name, v in scores.items() if name.endswith(WITH_BTYD) == kept)
        for kept in (True, False)
    }
    used = selected.endswith(WITH_BTYD)
    logger.info(
        "BTYD features %s offered to the churn model: best validation PR-AUC %.4f with them, "
        "%.4f without; %s",
        ", ".join(offered),
        best[True],
        best[False],
        "kept" if used else "left out",
    )
    return {
        "offered": list(offered),
        "used": used,
        "best_validation_pr_auc_with": best[True],
        "best_validation_pr_auc_without": best[False],
    }


# ------------------------------------------------------------------ evaluation
def _feature_weights(
    model: PipelineModel, model_input: DataFrame, numeric: list[str]
) -> list[dict[str, Any]]:
    """Coefficients (logistic regression) or importances (trees) by expanded feature name,
    largest magnitude first, zeros left out."""
    assembled = model.transform(model_input.limit(1)).schema["features"].metadata["ml_attr"]
    names: dict[int, str] = {}
    for group in assembled["attrs"].values():
        for attribute in group:
            name = attribute["name"]
            # the scaler's output slots lose their names; they are the numeric inputs in order
            if name.startswith("numeric_scaled_"):
                name = numeric[int(name.rsplit("_", 1)[1])]
            names[attribute["idx"]] = name
    classifier = model.stages[-1]
    if hasattr(classifier, "coefficients"):
        values, kind = classifier.coefficients.toArray(), "coefficient"
    else:
        values, kind = classifier.featureImportances.toArray(), "importance"
    weights = [
        {"feature": names.get(i, f"feature_{i}"), "kind": kind, "value": float(v)}
        for i, v in enumerate(values)
        if v != 0.0
    ]
    return sorted(weights, key=lambda w: -abs(w["value"]))


def evaluate_churn_model(
    churn_model: PipelineModel,
    model_input: DataFrame,
    selection: dict[str, Any],
    evaluation: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics on the held-out test customers only, and the curves behind the plots."""
    test = _held_out(churn_model, model_input, "test").cache()
    table = metrics.score_table(test).cache()
    ranking = metrics.ranking_metrics(table, evaluation["top_fraction"])
    threshold = selection["threshold"]["value"]
    counts = model_input.groupBy("split").count().collect()
    n_by_split = {row["split"]: row["count"] for row in counts}
    churn_metrics = {
        "model": selection["selected"],
        "roc_auc": ranking["roc_auc"],
        "pr_auc": ranking["pr_auc"],
        **metrics.probability_metrics(test),
        "n_train": n_by_split.get("train", 0),
        "n_validation": n_by_split.get("validation", 0),
        "n_test": ranking["n"],
        "positive_rate": ranking["positive_rate"],
        "top_fraction": ranking["top_fraction"],
        "lift_top_decile": ranking["lift_top"],
        "capture_rate_top_decile": ranking["capture_rate_top"],
        "threshold": threshold,
        "threshold_rule": selection["threshold"]["rule"],
        "confusion_matrix": metrics.confusion_matrix(test, threshold),
        "validation": selection["validation"],
        "btyd_features": selection["btyd_features"],
        "head_to_head": _head_to_head(model_input, ranking, metrics.probability_metrics(test)),
    }
    curves = {
        **metrics.curves(table, evaluation["curve_points"]),
        "calibration": metrics.reliability_table(test, evaluation["calibration_bins"]),
        "feature_weights": _feature_weights(
            churn_model, model_input, selection["features"]["numeric"]
        ),
        "model": selection["selected"],
    }
    test.unpersist()
    table.unpersist()
    logger.info(
        "Churn model %s on %d held-out customers: ROC-AUC %.4f, PR-AUC %.4f",
        churn_metrics["model"],
        churn_metrics["n_test"],
        churn_metrics["roc_auc"],
        churn_metrics["pr_auc"],
    )
    return churn_metrics, curves


HEAD_TO_HEAD = ("roc_auc", "pr_auc", "brier", "log_loss")


def _head_to_head(
    model_input: DataFrame, ranking: dict[str, Any], probability: dict[str, float]
) -> dict[str, Any]:
    """The classifier against each purchase model's probability of no purchase in the
    holdout, as churn predictions for the same test customers; and a verdict in words."""
    test = model_input.filter(F.col("split") == "test")

    def kept(*found: dict[str, Any]) -> dict[str, float]:
        merged = {key: value for part in found for key, value in part.items()}
        return {key: merged[key] for key in HEAD_TO_HEAD}

    scores = {"classifier": kept(ranking, probability)}
    for column in (c for c in model_input.columns if c.startswith(NO_PURCHASE_PREFIX)):
        predictions = test.select(F.col(LABEL).alias("label"), F.col(column).alias("score"))
        scores[column.removeprefix(NO_PURCHASE_PREFIX)] = kept(
            metrics.ranking_metrics(metrics.score_table(predictions)),
            metrics.probability_metrics(predictions),
        )
    return {**scores, "verdict": _head_to_head_verdict(scores)}


def _head_to_head_verdict(scores: dict[str, dict[str, float]]) -> str:
    models = [name for name in scores if name != "classifier"]
    if not models:
        return "No purchase model's churn prediction to compare with."
    best = max(models, key=lambda name: scores[name]["pr_auc"])
    ours, theirs = scores["classifier"], scores[best]
    label = MODEL_LABELS.get(best, best)
    ranks = "better" if ours["pr_auc"] >= theirs["pr_auc"] else "worse"
    calibrated = "better" if ours["brier"] <= theirs["brier"] else "worse"
    return (
        f"On the test customers the churn classifier ranks churners {ranks} than the best "
        f"purchase model's probability of no purchase ({label}): PR-AUC {ours['pr_auc']:.4f} vs "
        f"{theirs['pr_auc']:.4f}, ROC-AUC {ours['roc_auc']:.4f} vs {theirs['roc_auc']:.4f}; "
        f"its probabilities are {calibrated} calibrated (Brier {ours['brier']:.4f} vs "
        f"{theirs['brier']:.4f})."
    )


def churn_mlflow_metrics(churn_metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Every numeric churn metric (confusion counts and validation scores included) for MLflow."""
    return metrics.as_mlflow_metrics(churn_metrics)


def plot_churn_evaluation(curves: dict[str, Any], max_features: int = 20) -> dict[str, Figure]:
    """ROC, precision-recall, reliability and feature-weight plots (PNG artifacts)."""
    model = curves["model"]
    roc = Figure(figsize=(5, 5))
    axes = roc.subplots()
    axes.plot([p["fpr"] for p in curves["roc"]], [p["tpr"] for p in curves["roc"]], label=model)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC (test)")
    axes.legend(loc="lower right")

    pr = Figure(figsize=(5, 5))
    axes = pr.subplots()
    points = curves["precision_recall"]
    axes.plot([p["recall"] for p in points], [p["precision"] for p in points], label=model)
    axes.set(xlabel="Recall", ylabel="Precision", title="Precision-recall (test)", ylim=(0, 1.02))
    axes.legend(loc="lower left")

    calibration = Figure(figsize=(5, 5))
    axes = calibration.subplots()
    bins = curves["calibration"]
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axes.plot(
        [b["mean_predicted"] for b in bins],
        [b["observed_rate"] for b in bins],
        marker="o",
        label=model,
    )
    axes.set(
        xlabel="Mean predicted churn probability",
        ylabel="Observed churn rate",
        title="Reliability (test)",
    )
    axes.legend(loc="upper left")

    weights = curves["feature_weights"][:max_features][::-1]
    importance = Figure(figsize=(7, 0.3 * len(weights) + 1.5), layout="constrained")
    axes = importance.subplots()
    axes.barh([w["feature"] for w in weights], [w["value"] for w in weights])
    kind = weights[0]["kind"] if weights else "weight"
    axes.set(xlabel=kind, title=f"{model}: top {len(weights)} feature {kind}s")
    return {
        "roc_curve.png": roc,
        "precision_recall_curve.png": pr,
        "calibration_curve.png": calibration,
        "feature_weights.png": importance,
    }


# ------------------------------------------------------------------ scoring
def score_customers(
    churn_model: PipelineModel,
    current_features: DataFrame,
    btyd_scores_current: DataFrame,
    selection: dict[str, Any],
    risk_bands: list[dict[str, Any]],
    analysis_period: dict[str, Any],
) -> DataFrame:
    """Churn probability and risk band for every customer known at ``observation_end``.

    ``risk_bands`` lists ``{name, min_probability}``; a customer gets the first band (highest
    bound first) whose bound the probability reaches.
    """
    band = F.lit(None).cast("string")
    # built from the lowest bound up, so the highest bound is tested first
    for rule in sorted(risk_bands, key=lambda band: band["min_probability"]):
        band = F.when(
            F.col("churn_probability") >= rule["min_probability"], rule["name"]
        ).otherwise(band)
    threshold = selection["threshold"]["value"]
    if selection["btyd_features"]["used"]:
        current_features = current_features.join(btyd_scores_current, "customer_id")
    scored = churn_scores(churn_model, current_features)
    return scored.select(
        "customer_id",
        "churn_probability",
        band.alias("risk_band"),
        (F.col("churn_probability") >= threshold).cast("int").alias("predicted_churn"),
        "rfm_segment",
        "country",
        F.lit(analysis_period["observation_end"]).cast("date").alias("scored_at"),
        F.lit(analysis_period["holdout_days"]).alias("horizon_days"),
        F.lit(selection["selected"]).alias("model"),
    )


# ------------------------------------------------------------------ champion / challenger
def promote_churn_model(
    churn_model: PipelineModel, model_input: DataFrame, promotion: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The run's model (the challenger, the version this run registered) against the model
    behind the registry alias ``promotion.alias`` (the champion), both scored on this run's
    test customers by ``promotion.metric``: the challenger takes the alias when it is better
    by ``promotion.min_gain``, or when there is no champion yet.

    Returns the decision (``model_promotion.json``) and its scores as MLflow metrics. Works
    with any MLflow registry that has aliases (the local SQLite one, Unity Catalog).
    """
    client = mlflow.MlflowClient()
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("promote_churn_model needs the run's MLflow run (kedro-mlflow)")
    registered = client.search_model_versions(f"run_id='{run.info.run_id}'")
    if not registered:
        raise RuntimeError(
            f"MLflow run {run.info.run_id} registered no churn model version: set "
            "save_args.registered_model_name on the churn_model catalog entry"
        )
    name, version = registered[0].name, int(registered[0].version)
    alias, metric, min_gain = promotion["alias"], promotion["metric"], promotion["min_gain"]
    challenger = _test_ranking(churn_model, model_input)
    challenger_score = challenger[metric]
    try:
        champion_version = int(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        champion_version = None  # no model has the alias yet
    decision: dict[str, Any] = {
        "registered_model": name,
        "alias": alias,
        "metric": metric,
        "min_gain": min_gain,
        "n_test": challenger["n"],
        "challenger": {"version": version, "score": challenger_score},
        "champion": None,
    }
    if champion_version is None:
        promoted, reason = True, f"no model had the alias '{alias}' yet"
    else:
        champion = mlflow.spark.load_model(f"models:/{name}@{alias}")
        champion_score = _test_ranking(champion, model_input)[metric]
        decision["champion"] = {"version": champion_version, "score": champion_score}
        gain = challenger_score - champion_score
        promoted = gain >= min_gain
        reason = (
            f"{metric} {challenger_score:.4f} vs the champion's {champion_score:.4f} "
            f"(version {champion_version}): a gain of {gain:+.4f}, "
            f"{'at least' if promoted else 'below'} the {min_gain} required"
        )
    if promoted:
        client.set_registered_model_alias(name, alias, str(version))
    decision.update(promoted=promoted, reason=reason)
    logger.info(
        "Churn model %s version %d %s '%s': %s",
        name,
        version,
        "takes" if promoted else "does not take",
        alias,
        reason,
    )
    scores = {"challenger": challenger_score, "promoted": float(promoted)}
    if decision["champion"]:
        scores["champion"] = decision["champion"]["score"]
    return decision, metrics.as_mlflow_metrics(scores)


def _test_ranking(model: PipelineModel, model_input: DataFrame) -> dict[str, Any]:
    """``model``'s ranking metrics on the test customers (``n``: how many)."""
    table = metrics.score_table(_held_out(model, model_input, "test")).cache()
    ranking = metrics.ranking_metrics(table)
    table.unpersist()
    return ranking
