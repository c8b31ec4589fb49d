"""Nodes of ``churn_modeling``: label, split, fit, select, evaluate and score.

Two engines fit the candidates (``churn_modeling.engine``): ``driver`` (default; scikit-learn
and XGBoost on the collected model table, :mod:`.driver`) and ``spark_ml`` (:mod:`.spark_ml`).
Scoring, every customer's and the held-out splits', runs in Spark whichever engine trained the
model, with DataFrame APIs only (no RDDs, no SparkContext), so it runs over Spark Connect; the
held-out customers' scores are collected once and their metrics computed on the driver.
Churn means no purchase in the ``holdout_days`` after ``calibration_end``
(``customer_summary.churned``); features come from ``customer_features``, computed from the
calibration period alone.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from pyspark.ml import Transformer
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cltv import metrics
from cltv import promotion as promotion_in_registry
from cltv.datasets.mlflow_champion_dataset import selection_of
from cltv.datasets.mlflow_churn_model_dataset import ModelWithExample, load_churn_model
from cltv.parameters import CHURN_CANDIDATES, CHURN_ENGINES
from cltv.pipelines.churn_modeling import contract, driver, spark_ml
from cltv.pipelines.churn_modeling import reasons as reasons_of
from cltv.pipelines.churn_modeling.driver import LABEL
from cltv.pipelines.cltv.nodes import MODEL_LABELS, NO_PURCHASE_PREFIX

logger = logging.getLogger(__name__)

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


def fit_churn_candidates(
    model_input: DataFrame, modeling: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit every candidate of the engine (``modeling['candidates'][engine]``) on the training
    split and score each once on the validation split (PR-AUC, ROC-AUC); when
    ``btyd_features`` are offered, the best of them on validation is fitted again with them
    (``<name>_with_btyd``), so that the validation split decides whether they help.

    ``engine: driver`` collects the train and validation customers (a seeded stratified sample
    above ``max_train_customers``) and fits scikit-learn / XGBoost pipelines on the driver;
    ``spark_ml`` fits Spark ML pipelines. The driver engine scores the validation customers it
    collected on the driver (above ``max_train_customers``, its sample of them); ``spark_ml``
    scores them in Spark and collects the scores, one job per candidate. Returns the fitted
    models and ``{"validation": scores, "training": rows used, "customers": customers per
    split, "validation_predictions": each candidate's validation label and score (pandas)}``:
    selection chooses the threshold and evaluation counts the splits from them, without
    Spark.
    """
    engine = modeling["engine"]
    if engine not in CHURN_ENGINES:
        raise ValueError(
            f"parameter churn_modeling.engine: '{engine}' is not one of {', '.join(CHURN_ENGINES)}"
        )
    candidates = modeling["candidates"][engine]
    unknown = sorted(set(candidates) - set(CHURN_CANDIDATES[engine]))
    if unknown:
        raise ValueError(
            f"parameter churn_modeling.candidates.{engine}: unknown model(s) "
            f"{', '.join(unknown)}; known: {', '.join(CHURN_CANDIDATES[engine])}"
        )
    # every column some candidate sees
    features = candidate_features(WITH_BTYD if modeling["btyd_features"] else "", modeling)
    columns = ["customer_id", *features["numeric"], *features["categorical"]]
    if engine == "driver":
        rows, customers = driver.collect_training_rows(
            model_input, columns, modeling["max_train_customers"], modeling["split"]["seed"]
        )
        rows_used = len(rows)

        def fit(name: str, suffix: str = "") -> Any:
            return driver.BUILDERS[name](
                rows,
                candidate_features(name + suffix, modeling),
                candidates[name],
                modeling["class_weight"],
            )

        def validate(model: Any) -> pd.DataFrame:
            return driver.validation_predictions(model, rows)
    else:
        rows = spark_ml.training_rows(model_input, [*columns, LABEL], modeling["class_weight"])
        customers = dict.fromkeys(SPLITS, 0) | {
            row["split"]: row["count"] for row in model_input.groupBy("split").count().collect()
        }
        rows_used = customers["train"] + customers["validation"]

        def fit(name: str, suffix: str = "") -> Any:
            return spark_ml.fit_candidate(
                name, candidates[name], candidate_features(name + suffix, modeling), rows
            )

        def validate(model: Any) -> pd.DataFrame:
            return _held_out(model, model_input, "validation")

    fitted = {name: fit(name) for name in candidates}
    predictions = {name: validate(model) for name, model in fitted.items()}
    scores = {name: _validation_scores(found) for name, found in predictions.items()}
    if modeling["btyd_features"]:
        # offered to the best classifier on validation: one more fit, not one per candidate
        best = max(scores, key=lambda name: scores[name]["pr_auc"])
        fitted[best + WITH_BTYD] = fit(best, WITH_BTYD)
        predictions[best + WITH_BTYD] = validate(fitted[best + WITH_BTYD])
        scores[best + WITH_BTYD] = _validation_scores(predictions[best + WITH_BTYD])
    for name, score in scores.items():
        logger.info(
            "Churn candidate %s: validation PR-AUC %.4f, ROC-AUC %.4f",
            name,
            score["pr_auc"],
            score["roc_auc"],
        )
    available = customers["train"] + customers["validation"]
    return fitted, {
        "validation": scores,
        "training": {"engine": engine, "rows_used": rows_used, "rows_available": available},
        "customers": customers,
        "validation_predictions": predictions,
    }


def _validation_scores(predictions: pd.DataFrame) -> dict[str, float]:
    ranking = metrics.ranking_metrics(metrics.score_table(predictions))
    return {"pr_auc": ranking["pr_auc"], "roc_auc": ranking["roc_auc"]}


def is_spark_model(model: Any) -> bool:
    """A Spark ML model (engine ``spark_ml``, or a champion registered before ``driver``)."""
    return isinstance(model, Transformer)


def churn_scores(model: Any, customers: DataFrame) -> DataFrame:
    """``customers`` with ``churn_probability``, the model's probability of class 1, computed
    in Spark whichever engine trained the model."""
    if is_spark_model(model):
        return spark_ml.score_in_spark(model, customers)
    return driver.score_in_spark(model, customers)


def _held_out(model: Any, model_input: DataFrame, split: str, *columns: str) -> pd.DataFrame:
    """The ``split`` customers' ``label`` and ``score`` (``model``'s churn probability), with
    ``columns`` of ``model_input``, collected: one Spark job, every metric then on the driver
    (a held-out split is a fraction of the one-row-per-customer model table)."""
    rows = model_input.filter(F.col("split") == split)
    return (
        churn_scores(model, rows)
        .select(F.col(LABEL).alias("label"), F.col("churn_probability").alias("score"), *columns)
        .toPandas()
    )


def select_churn_model(
    candidates: dict[str, Any],
    fit_report: dict[str, Any],
    model_input: DataFrame,
    modeling: dict[str, Any],
    run_contract: dict[str, Any],
) -> tuple[ModelWithExample, dict[str, Any]]:
    """Pick the candidate with the best validation PR-AUC (``fit_report``, from
    :func:`fit_churn_candidates`), and its threshold on the validation split (the scores the
    fit collected: on the driver). The selection
    (``churn_model_selection.json``, logged in the model's run) carries the model's contract:
    ``run_contract`` (:func:`.contract.churn_contract`) and the columns it reads, typed."""
    scores = fit_report["validation"]
    selected = max(scores, key=lambda name: scores[name]["pr_auc"])
    btyd = _btyd_feature_selection(scores, selected, modeling["btyd_features"])
    rule = modeling["threshold"]
    table = metrics.score_table(fit_report["validation_predictions"][selected])
    threshold = metrics.choose_threshold(table, rule["rule"], rule.get("value"))
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
        "training": fit_report["training"],
        "contract": contract.model_contract(
            run_contract, model_input, [*features["numeric"], *features["categorical"]]
        ),
    }
    logger.info("Selected churn model %s, threshold %.4f", selected, threshold)
    return ModelWithExample(candidates[selected], example), selection


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
def _feature_weights(model: Any, model_input: DataFrame, numeric: list[str]) -> list[dict]:
    if is_spark_model(model):
        return spark_ml.feature_weights(model, model_input, numeric)
    return driver.feature_weights(model)


def evaluate_churn_model(
    churn_model: Any,
    model_input: DataFrame,
    selection: dict[str, Any],
    fit_report: dict[str, Any],
    evaluation: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics on the held-out test customers only, and the curves behind the plots: the test
    customers' scores, with the purchase models' P(no purchase) beside them, are collected in
    one Spark job and everything else is computed on the driver. The split sizes are the
    fit's (``fit_report["customers"]``)."""
    no_purchase = [c for c in model_input.columns if c.startswith(NO_PURCHASE_PREFIX)]
    test = _held_out(churn_model, model_input, "test", *no_purchase)
    table = metrics.score_table(test)
    ranking = metrics.ranking_metrics(table, evaluation["top_fraction"])
    probability = metrics.probability_metrics(test)
    threshold = selection["threshold"]["value"]
    n_by_split = fit_report["customers"]
    churn_metrics = {
        "model": selection["selected"],
        "roc_auc": ranking["roc_auc"],
        "pr_auc": ranking["pr_auc"],
        **probability,
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
        "training": selection["training"],
        "head_to_head": _head_to_head(test, no_purchase, ranking, probability),
    }
    curves = {
        **metrics.curves(table, evaluation["curve_points"]),
        "calibration": metrics.reliability_table(test, evaluation["calibration_bins"]),
        "feature_weights": _feature_weights(
            churn_model, model_input, selection["features"]["numeric"]
        ),
        "model": selection["selected"],
    }
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
    test: pd.DataFrame,
    no_purchase: list[str],
    ranking: dict[str, Any],
    probability: dict[str, float],
) -> dict[str, Any]:
    """The classifier against each purchase model's probability of no purchase in the
    holdout (the ``no_purchase`` columns of the collected ``test`` customers), as churn
    predictions for the same customers; and a verdict in words."""

    def kept(*found: dict[str, Any]) -> dict[str, float]:
        merged = {key: value for part in found for key, value in part.items()}
        return {key: merged[key] for key in HEAD_TO_HEAD}

    scores = {"classifier": kept(ranking, probability)}
    for column in no_purchase:
        predictions = test[["label", column]].rename(columns={column: "score"})
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
    churn_model: Any,
    current_features: DataFrame,
    btyd_scores_current: DataFrame,
    selection: dict[str, Any],
    run_contract: dict[str, Any],
    analysis_period: dict[str, Any],
    reasons: dict[str, Any],
) -> tuple[DataFrame, reasons_of.GlobalImportance]:
    """Churn probability, risk band and reasons for every customer known at
    ``observation_end``; and the mean absolute contribution of each input over them, observed
    as the table is written (:mod:`.reasons`).

    The threshold, risk bands and horizon are the champion's (``selection``, its contract),
    not this run's settings (``run_contract``, used only for a champion logged before
    contracts): a prediction means what it meant when the model was trained. The tables must
    hold the columns it reads, with their types (:func:`.contract.check_columns`).

    Risk bands, ``{name, min_probability}``: a customer gets the first band (highest bound
    first) whose bound the probability reaches. ``reasons``: how many ``churn_reasons``
    (inputs pushing the probability up) and ``retention_levers`` (down) each customer gets,
    from the model that scored them; ``actionable_levers``: the inputs a lever may be.
    """
    trained_with = (selection.get("contract") or {}).get("settings") or run_contract
    risk_bands = trained_with["churn_modeling.risk_bands"]
    horizon_days = trained_with.get("holdout_days", analysis_period["holdout_days"])
    band = F.lit(None).cast("string")
    # built from the lowest bound up, so the highest bound is tested first
    for rule in sorted(risk_bands, key=lambda band: band["min_probability"]):
        band = F.when(
            F.col("churn_probability") >= rule["min_probability"], rule["name"]
        ).otherwise(band)
    threshold = selection["threshold"]["value"]
    if selection["btyd_features"]["used"]:
        current_features = current_features.join(btyd_scores_current, "customer_id")
    contract.check_columns(selection, current_features)
    if reasons_of.explains(churn_model):
        scored, observation = reasons_of.explained_scores(
            churn_model,
            current_features,
            reasons["churn_reasons"],
            reasons["retention_levers"],
            horizon_days,
            reasons.get("actionable_levers", reasons_of.ACTIONABLE_LEVERS),
        )
        importance = reasons_of.GlobalImportance(observation, selection["selected"])
    else:
        logger.warning(
            "The churn model %s (%s) cannot be taken apart into reasons: churn_reasons, "
            "retention_levers and churn_reason_text are left empty",
            selection["selected"],
            model_flavor(churn_model),
        )
        scored = reasons_of.without_reasons(churn_scores(churn_model, current_features))
        importance = reasons_of.GlobalImportance(None, selection["selected"])
    predictions = scored.select(
        "customer_id",
        "churn_probability",
        band.alias("risk_band"),
        (F.col("churn_probability") >= threshold).cast("int").alias("predicted_churn"),
        "rfm_segment",
        "country",
        *reasons_of.REASON_COLUMNS,
        F.lit(analysis_period["observation_end"]).cast("date").alias("scored_at"),
        F.lit(horizon_days).alias("horizon_days"),
        F.lit(selection["selected"]).alias("model"),
    )
    return predictions, importance


def summarise_churn_reasons(
    importance: reasons_of.GlobalImportance, max_features: int = 20
) -> tuple[dict[str, Any], dict[str, dict[str, float]], dict[str, Figure]]:
    """The global view of the reasons: each input's mean absolute contribution (log-odds) over
    the customers just scored, as ``churn_reason_importance.json``, MLflow metrics
    (``reason_importance.<feature>``) and a bar plot."""
    summary = importance.get()
    shown = summary["features"][:max_features][::-1]
    figure = Figure(figsize=(7, 0.3 * len(shown) + 1.5), layout="constrained")
    axes = figure.subplots()
    axes.barh([f["feature"] for f in shown], [f["mean_abs_contribution"] for f in shown])
    axes.set(
        xlabel="mean |contribution| to the log-odds of churn",
        title=f"{summary['model']}: why customers churn, over {summary['customers']:,} customers",
    )
    scores = {
        f"reason_importance.{f['feature']}": f["mean_abs_contribution"] for f in summary["features"]
    }
    return summary, metrics.as_mlflow_metrics(scores), {"churn_reason_importance.png": figure}


# ------------------------------------------------------------------ champion / challenger
def promote_churn_model(
    churn_model: Any,
    churn_metrics: dict[str, Any],
    model_input: DataFrame,
    selection: dict[str, Any],
    promotion: dict[str, Any],
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """The run's model (the challenger, the version of ``promotion.registered_model`` this
    run registered) against the version behind the alias ``promotion.alias`` (the
    champion).

    Their contracts first (:mod:`.contract`): a challenger trained with other contract
    settings (features, horizon, threshold, risk bands, class weight, time unit) is promoted
    as "settings changed", and the champion is not scored on tables it was not trained for.
    With the same contract both are scored on this run's test customers by
    ``promotion.metric`` (:mod:`cltv.promotion`; a difference below ``min_gain`` is a tie,
    which the champion keeps).

    Returns the decision (the ``cltv_churn`` entry of ``model_promotion.json``) and the
    champion after it with how it was chosen (its run's ``selection``: threshold, contract):
    what scores ``churn_predictions``. The alias moves only once that table is written
    (:func:`settle_churn_promotion`).
    """
    name, version = promotion_in_registry.registered_in_this_run(promotion["registered_model"])
    metric = promotion["metric"]
    # the run's model was scored on the same test customers by evaluate_churn_model
    challenger = {"pr_auc": churn_metrics["pr_auc"], "roc_auc": churn_metrics["roc_auc"]}
    champion, champion_model, champion_selection = None, None, None
    found = promotion_in_registry.load_champion(name, promotion["alias"], load_churn_model)
    if found:
        champion_version, champion_model = found
        champion_selection = selection_of(champion_version)
        champion = {
            "version": int(champion_version.version),
            "flavor": model_flavor(champion_model),
            # None: logged before the contract was part of the model
            "settings": (champion_selection.get("contract") or {}).get("settings"),
            "model": champion_selection["selected"],
            "threshold": champion_selection["threshold"],
        }
        if champion["settings"] == selection["contract"]["settings"]:
            contract.check_columns(champion_selection, model_input)
            ranking = _test_ranking(champion_model, model_input)
            champion.update(score=ranking[metric], **{m: ranking[m] for m in challenger})
    decision = promotion_in_registry.challenge(
        name,
        version,
        promotion,
        {
            "score": challenger[metric],
            "flavor": model_flavor(churn_model),
            "settings": selection["contract"]["settings"],
            "model": selection["selected"],
            "threshold": selection["threshold"],
            **challenger,
        },
        champion,
    )
    decision["n_test"] = churn_metrics["n_test"]
    if champion and champion["flavor"] != decision["challenger"]["flavor"]:
        # e.g. a Spark ML champion from before the driver engine: still scored as it is
        decision["reason"] += (
            f"; the champion is a {champion['flavor']} model, the challenger "
            f"a {decision['challenger']['flavor']} one, "
            + ("which replaces it" if decision["promoted"] else "and the champion keeps scoring")
        )
    if decision["promoted"]:
        return decision, churn_model, {**selection, "version": version}
    return decision, champion_model, champion_selection


def settle_churn_promotion(
    decision: dict[str, Any], churn_reason_importance: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Move the alias when ``decision`` promotes, now that ``churn_predictions`` holds the
    champion's numbers (``churn_reason_importance`` is made from its write), so a write that
    fails leaves the registry as it was. Returns the decision's scores as MLflow metrics."""
    promotion_in_registry.settle(decision, "Churn model")
    return metrics.as_mlflow_metrics(promotion_in_registry.decision_scores(decision))


def record_model_promotion(
    churn_promotion: dict[str, Any], cltv_promotion: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model_promotion.json``: the decision for each registered model, by its name in the
    SPEC (``cltv_churn``, ``cltv_value``); and ``model_versions.json``: which version of each
    wrote this run's tables, and which holds the alias now."""
    decisions = {"cltv_churn": churn_promotion, "cltv_value": cltv_promotion}
    versions = {
        name: promotion_in_registry.produced_by(decision) for name, decision in decisions.items()
    }
    return decisions, {"produced_by": "training", "models": versions}


def model_flavor(model: Any) -> str:
    """The MLflow flavor a churn model is logged as: ``spark`` or ``sklearn``."""
    return "spark" if is_spark_model(model) else "sklearn"


def _test_ranking(model: Any, model_input: DataFrame) -> dict[str, Any]:
    """``model``'s ranking metrics on the test customers (``n``: how many)."""
    return metrics.ranking_metrics(metrics.score_table(_held_out(model, model_input, "test")))
