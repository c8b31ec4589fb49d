"""The ``driver`` engine: churn candidates trained with scikit-learn and XGBoost on the driver.

The model input has one row per customer, so it fits in the driver's memory: it is collected
with Arrow (a seeded sample, stratified by the label, above ``max_train_customers``) and each
candidate is a scikit-learn ``Pipeline`` (scale the numeric features, one-hot the categoricals,
classify), a standard MLflow flavor that loads and serves without Spark. Scoring every customer
stays in Spark: :func:`score_in_spark` sends the fitted pipeline to the executors in a pandas
UDF, so 100M customers are scored where they live, over Spark Connect too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

if TYPE_CHECKING:  # scikit-learn loads when a candidate is fitted, not when the pipeline is
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

# the churn label of the model input (1: no purchase in the holdout), for both engines
LABEL = "churned"


def collect_training_rows(
    model_input: DataFrame, columns: list[str], max_customers: int, seed: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The train and validation customers as pandas (``columns``, ``split``, the label), and
    how many customers each split holds (``train``, ``validation``, ``test``: counted in the
    job that sizes the sample, so the evaluation needs no count of its own).

    Above ``max_customers`` a seeded sample of that size is taken, stratified by label and
    split: within each (label, split) the customers first in a seeded hash order are kept, so
    every class and split keeps its share and the sample does not depend on partitioning.
    """
    in_training = model_input.filter(F.col("split") != "test")
    every_stratum = {
        (row[LABEL], row["split"]): row["count"]
        for row in model_input.groupBy(LABEL, "split").count().collect()
    }
    customers = {split: 0 for split in ("train", "validation", "test")}
    for (_, split), n in every_stratum.items():
        customers[split] += n
    strata = {key: n for key, n in every_stratum.items() if key[1] != "test"}
    available = sum(strata.values())
    kept = in_training
    if available > max_customers:
        fraction = max_customers / available
        quota = F.lit(0)
        for (label, split), n in strata.items():
            in_stratum = (F.col(LABEL) == label) & (F.col("split") == split)
            quota = F.when(in_stratum, round(n * fraction)).otherwise(quota)
        order = Window.partitionBy(LABEL, "split").orderBy(
            F.xxhash64(F.lit(seed), "customer_id"), "customer_id"
        )
        kept = in_training.withColumn("_rank", F.row_number().over(order)).filter(
            F.col("_rank") <= quota
        )
    # in customer order: the fits (XGBoost's row subsampling, saga's passes) then do not depend
    # on how Spark happened to partition the table, classic or Connect
    rows = (
        kept.select(*columns, "split", LABEL)
        .toPandas()
        .sort_values("customer_id", ignore_index=True)
    )
    logger.info(
        "Churn training on the driver: %d of %d train and validation customers%s",
        len(rows),
        available,
        f" (a seeded sample, max_train_customers={max_customers})"
        if available > max_customers
        else "",
    )
    return rows, customers


def _preparation(features: dict[str, list[str]]) -> ColumnTransformer:
    """Scale numeric features; one-hot the categoricals, a value unseen in training all zeros."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [
            ("numeric", StandardScaler(), features["numeric"]),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                features["categorical"],
            ),
        ],
        verbose_feature_names_out=False,
    )


def _inputs(features: dict[str, list[str]]) -> list[str]:
    """The columns a pipeline is fitted on, and so the only ones it asks for when scoring."""
    return [*features["numeric"], *features["categorical"]]


def _sample_weights(labels: pd.Series, class_weight: str) -> np.ndarray:
    """``balanced`` (checked in :mod:`cltv.parameters`): n / (2 n_class); ``none``: 1."""
    if class_weight == "none":
        return np.ones(len(labels))
    counts = labels.value_counts()
    return (len(labels) / (2.0 * labels.map(counts))).to_numpy()


def fit_logistic_regression(
    rows: pd.DataFrame, features: dict[str, list[str]], p: dict[str, Any], class_weight: str
) -> Pipeline:
    """Elastic-net logistic regression with Spark ML's objective (mean log loss +
    ``reg_param`` x (``elastic_net_param`` L1 + (1 - it) / 2 L2)): scikit-learn's C is
    1 / (reg_param x n)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    train = rows[rows["split"] == "train"]
    l1_ratio = float(p["elastic_net_param"])
    regularised = p["reg_param"] > 0
    classifier = LogisticRegression(
        C=1.0 / (p["reg_param"] * len(train)) if regularised else np.inf,
        l1_ratio=l1_ratio if regularised else 0.0,
        # saga is scikit-learn's solver for an L1 part; lbfgs is faster for pure L2
        solver="saga" if regularised and l1_ratio > 0 else "lbfgs",
        max_iter=p["max_iter"],
        random_state=0,
    )
    inputs = _inputs(features)
    model = Pipeline([("prepare", _preparation(features)), ("classifier", classifier)])
    model.fit(
        train[inputs],
        train[LABEL],
        classifier__sample_weight=_sample_weights(train[LABEL], class_weight),
    )
    # part of the model: the point each customer's reasons are measured from (.reasons)
    classifier.training_mean_ = model.named_steps["prepare"].transform(train[inputs]).mean(axis=0)
    return model


def fit_xgboost(
    rows: pd.DataFrame, features: dict[str, list[str]], p: dict[str, Any], class_weight: str
) -> Pipeline:
    """Gradient-boosted trees (XGBoost, ``hist``) that stop adding trees when the validation
    customers' log loss has not improved for ``early_stopping_rounds``; the model keeps the
    trees up to the best round."""
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    train, validation = rows[rows["split"] == "train"], rows[rows["split"] == "validation"]
    inputs = _inputs(features)
    preparation = _preparation(features).fit(train[inputs])
    stopping = p.get("early_stopping_rounds")
    classifier = XGBClassifier(
        n_estimators=p["max_iter"],
        max_depth=p["max_depth"],
        learning_rate=p["step_size"],
        subsample=p["subsampling_rate"],
        random_state=p["seed"],
        tree_method="hist",
        eval_metric="logloss",
        early_stopping_rounds=stopping,
        n_jobs=p.get("n_jobs"),
    )
    classifier.fit(
        preparation.transform(train[inputs]),
        train[LABEL],
        sample_weight=_sample_weights(train[LABEL], class_weight),
        eval_set=[(preparation.transform(validation[inputs]), validation[LABEL])]
        if stopping
        else None,
        verbose=False,
    )
    if stopping:
        logger.info(
            "XGBoost stopped at %d trees (best round %d of at most %d)",
            classifier.get_booster().num_boosted_rounds(),
            classifier.best_iteration + 1,
            p["max_iter"],
        )
    return Pipeline([("prepare", preparation), ("classifier", classifier)])


BUILDERS = {"logistic_regression": fit_logistic_regression, "xgboost": fit_xgboost}


def validation_predictions(model: Pipeline, rows: pd.DataFrame) -> pd.DataFrame:
    """``label`` and ``score`` (the churn probability) of the validation customers of the
    collected ``rows``: they are in the driver's memory already, so no Spark job scores them."""
    validation = rows[rows["split"] == "validation"]
    probability = model.predict_proba(validation[list(model.feature_names_in_)])[:, 1]
    return pd.DataFrame({"label": validation[LABEL].to_numpy(), "score": probability})


def churn_probability(model: Pipeline, columns: list[str]) -> Column:
    """The fitted pipeline's probability of churn, a column computed on the executors.

    The pipeline travels pickled inside the UDF; executors need scikit-learn and xgboost.
    """

    @pandas_udf("double")
    def probability(*values: pd.Series) -> pd.Series:
        frame = pd.concat(values, axis=1, keys=columns)
        return pd.Series(model.predict_proba(frame)[:, 1], index=frame.index)

    return probability(*columns)


def score_in_spark(model: Pipeline, customers: DataFrame) -> DataFrame:
    """``customers`` with ``churn_probability`` from a driver-trained pipeline."""
    columns = list(model.feature_names_in_)
    return customers.select(
        *customers.columns, churn_probability(model, columns).alias("churn_probability")
    )


def feature_weights(model: Pipeline) -> list[dict[str, Any]]:
    """Coefficients (logistic regression, on scaled features) or gain importances (XGBoost)
    by expanded feature name (``country_onehot_France``), largest magnitude first, zeros left
    out."""
    preparation, classifier = model.named_steps["prepare"], model.named_steps["classifier"]
    categorical = preparation.transformers_[1][2]
    names = []
    for name in preparation.get_feature_names_out():
        # OneHotEncoder names a slot <column>_<value>; the Spark engine's <column>_onehot_<value>
        column = next((c for c in categorical if name.startswith(f"{c}_")), None)
        names.append(f"{column}_onehot_{name[len(column) + 1 :]}" if column else name)
    if hasattr(classifier, "coef_"):
        values, kind = classifier.coef_[0], "coefficient"
    else:
        values, kind = classifier.feature_importances_, "importance"
    weights = [
        {"feature": names[i], "kind": kind, "value": float(v)}
        for i, v in enumerate(values)
        if v != 0.0
    ]
    return sorted(weights, key=lambda w: -abs(w["value"]))
