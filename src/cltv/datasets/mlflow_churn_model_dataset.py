"""``MlflowChurnModelDataset``: the churn model logged to MLflow, with signature and example."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from cltv.datasets.logged_model_dataset import LoggedModelDataset

SPARK_FLAVOR, SKLEARN_FLAVOR = "mlflow.spark", "mlflow.sklearn"
XGBOOST_TYPES = ["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"]


@dataclass(frozen=True)
class ModelWithExample:
    """A fitted churn model and a few rows of its input (pandas), logged together."""

    model: Any
    input_example: pd.DataFrame


def _flavor_of(model: Any) -> str:
    from pyspark.ml import Transformer

    return SPARK_FLAVOR if isinstance(model, Transformer) else SKLEARN_FLAVOR


# the example's numpy kinds as MLflow column types
_COLUMN_TYPES = {"i": "long", "u": "long", "f": "double", "b": "boolean", "O": "string"}


def input_signature(example: pd.DataFrame) -> ModelSignature:
    """The model's input columns, typed as the feature tables type them.

    Given rather than inferred from the example: MLflow's inference warns on every run that
    integer columns cannot hold missing values, and the features' integers (counts, days) have
    none."""
    return ModelSignature(
        inputs=Schema(
            [
                ColSpec(_COLUMN_TYPES.get(kind.kind, "string"), column)
                for column, kind in example.dtypes.items()
            ]
        )
    )


def load_churn_model(model_uri: str) -> Any:
    """The churn model at ``model_uri`` in its own flavor: a scikit-learn pipeline (engine
    ``driver``) or a Spark ML ``PipelineModel`` (engine ``spark_ml``, or a version registered
    before the driver engine existed)."""
    flavors = mlflow.models.get_model_info(model_uri).flavors
    if "spark" in flavors:
        # imports pyspark: only for a Spark ML model
        return importlib.import_module("mlflow.spark").load_model(model_uri)
    return mlflow.sklearn.load_model(model_uri)


class MlflowChurnModelDataset(LoggedModelDataset):
    """kedro-mlflow's model dataset for the churn model, in the flavor of the engine that
    trained it: ``mlflow.sklearn`` for a scikit-learn pipeline (its pyfunc predicts
    ``predict_proba``: column 1 is the churn probability), ``mlflow.spark`` for Spark ML.

    Saving takes a :class:`ModelWithExample` and logs the model in the active run with the
    input example and its input signature (:func:`input_signature`); the example comes from the node
    because it depends on the data, which a catalog entry cannot know. ``registered_model_name``
    in ``save_args`` also registers a new model version. Loading returns the model saved last
    through this dataset in this process (the very object that was logged, not read back), or,
    with ``load_args.model_uri``, the model at that URI.

    Example catalog entry:

    .. code-block:: yaml

        churn_model:
          type: cltv.datasets.MlflowChurnModelDataset
          save_args:
            name: churn_model
            registered_model_name: cltv_churn

    Example in Python (outside Kedro, no Spark needed for a scikit-learn model):

    .. code-block:: python

        import mlflow
        model = mlflow.pyfunc.load_model("models:/cltv_churn@champion")
        model.predict(features)[:, 1]  # churn probabilities
    """

    def __init__(
        self,
        *,
        save_args: dict[str, Any] | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            flavor=SKLEARN_FLAVOR, save_args=save_args, load_args=load_args, metadata=metadata
        )

    def _load_from_uri(self, model_uri: str) -> Any:
        return load_churn_model(model_uri)

    def _save(self, data: ModelWithExample) -> None:
        arguments = {
            **self._save_args,
            "input_example": data.input_example,
            "signature": input_signature(data.input_example),
        }
        self._flavor = _flavor_of(data.model)
        # given, so that MLflow does not infer them by reloading the model in a subprocess
        # (for Spark ML a second Spark start, ~20 s)
        if self._flavor == SPARK_FLAVOR:
            spark_flavor = importlib.import_module(SPARK_FLAVOR)
            # mlflow.spark.log_model still names the model by its positional artifact_path
            arguments.setdefault("artifact_path", arguments.pop("name", "model"))
            arguments.setdefault("pip_requirements", spark_flavor.get_default_pip_requirements())
        else:
            arguments.setdefault("pyfunc_predict_fn", "predict_proba")
            # MLflow saves scikit-learn models with skops, which loads only the types it is told
            # to trust: scikit-learn's own, and these for the XGBoost candidate
            arguments.setdefault("skops_trusted_types", XGBOOST_TYPES)
            arguments.setdefault(
                "pip_requirements",
                [
                    *mlflow.sklearn.get_default_pip_requirements(),
                    f"xgboost=={version('xgboost')}",
                    f"pandas=={version('pandas')}",
                ],
            )
        self._log(data.model, data.model, arguments)
