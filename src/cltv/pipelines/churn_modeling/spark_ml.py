"""The ``spark_ml`` engine: churn candidates trained in Spark ML, for fully distributed training.

Only DataFrame and ``pyspark.ml`` APIs (no RDDs, no SparkContext), so it runs over Spark
Connect too. The default engine is ``driver`` (:mod:`.driver`); this one is kept for model
tables too big to sample, and is tested on the bundled sample.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .driver import LABEL

# GBT's early stopping reads this flag to tell validation rows from training rows
VALIDATION_FLAG = "is_validation"


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


def with_class_weight(train: DataFrame, class_weight: str) -> DataFrame:
    """``balanced`` (checked in :mod:`cltv.parameters`): n / (2 n_class); ``none``: 1."""
    if class_weight == "none":
        return train.withColumn("class_weight", F.lit(1.0))
    counts = train.groupBy(LABEL).count()
    total = F.sum("count").over(Window.partitionBy())
    weights = counts.select(LABEL, (total / (2.0 * F.col("count"))).alias("class_weight"))
    return train.join(F.broadcast(weights), LABEL)


def _classifier(name: str, p: dict[str, Any]):
    common = {"featuresCol": "features", "labelCol": LABEL, "weightCol": "class_weight"}
    if name == "logistic_regression":
        return LogisticRegression(
            regParam=p["reg_param"],
            elasticNetParam=p["elastic_net_param"],
            maxIter=p["max_iter"],
            standardization=False,  # numeric features are already scaled; one-hots stay 0/1
            **common,
        )
    stopping = {}
    if p.get("validation_tol") is not None:
        stopping = {"validationIndicatorCol": VALIDATION_FLAG, "validationTol": p["validation_tol"]}
    return GBTClassifier(
        maxIter=p["max_iter"],
        maxDepth=p["max_depth"],
        stepSize=p["step_size"],
        subsamplingRate=p["subsampling_rate"],
        seed=p["seed"],
        **stopping,
        **common,
    )


def training_rows(model_input: DataFrame, columns: list[str], class_weight: str) -> DataFrame:
    """The train customers weighted, and the validation customers flagged (weight 1: the loss
    they report is the plain validation loss) for GBT's early stopping."""
    train = with_class_weight(model_input.filter(F.col("split") == "train"), class_weight)
    return train.select(*columns, "class_weight", F.lit(False).alias(VALIDATION_FLAG)).unionByName(
        model_input.filter(F.col("split") == "validation").select(
            *columns, F.lit(1.0).alias("class_weight"), F.lit(True).alias(VALIDATION_FLAG)
        )
    )


def fit_candidate(
    name: str, p: dict[str, Any], features: dict[str, list[str]], rows: DataFrame
) -> PipelineModel:
    """One candidate on the training rows. Gradient-boosted trees stop adding trees when the
    validation loss improves by less than ``validation_tol`` (relative; Spark's
    ``validationTol``), at most ``max_iter``: the validation customers then ride along,
    flagged, and only measure; the scaler and encoders see the training rows alone."""
    classifier = _classifier(name, p)
    pipeline = _pipeline(features, classifier)
    train = rows.filter(~F.col(VALIDATION_FLAG))
    if not (
        classifier.hasParam("validationIndicatorCol") and classifier.isSet("validationIndicatorCol")
    ):
        return pipeline.fit(train)
    preparation = Pipeline(stages=pipeline.getStages()[:-1]).fit(train)
    trees = classifier.fit(preparation.transform(rows))
    return PipelineModel([*preparation.stages, trees])


def score_in_spark(model: PipelineModel, customers: DataFrame) -> DataFrame:
    """``customers`` with ``churn_probability``, the model's probability of class 1."""
    scored = model.transform(customers)
    return scored.select(
        *customers.columns, vector_to_array("probability")[1].alias("churn_probability")
    )


def feature_weights(
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
