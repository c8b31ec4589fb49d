"""``MlflowSparkModelDataset``: a Spark ML model logged to MLflow with signature and example."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow.spark
import pandas as pd
from kedro_mlflow.io.models import MlflowModelTrackingDataset
from pyspark.ml import Transformer


@dataclass(frozen=True)
class SparkModelWithExample:
    """A fitted Spark ML model and a few rows of its input (pandas), logged together."""

    model: Transformer
    input_example: pd.DataFrame


class MlflowSparkModelDataset(MlflowModelTrackingDataset):
    """kedro-mlflow's model dataset for Spark ML models (flavor ``mlflow.spark``).

    Saving takes a :class:`SparkModelWithExample` and logs the model in the active run with the
    input example, from which MLflow infers the signature; the example comes from the node
    because it depends on the data, which a catalog entry cannot know. ``registered_model_name``
    in ``save_args`` also registers a new model version. Loading returns the Spark
    ``PipelineModel`` saved last through this dataset in this process — the very object that
    was logged, not read back (reading a pipeline model back costs a few Spark jobs, and a run
    loads it twice) — or, with ``load_args.model_uri``, the model at that URI.

    Example catalog entry:

    .. code-block:: yaml

        churn_model:
          type: cltv.datasets.MlflowSparkModelDataset
          save_args:
            name: churn_model
            registered_model_name: cltv_churn

    Example in Python (loading a logged model back, outside Kedro):

    .. code-block:: python

        import mlflow.spark
        model = mlflow.spark.load_model("models:/cltv_churn/latest")
        model.transform(features)
    """

    def __init__(
        self,
        *,
        save_args: dict[str, Any] | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            flavor="mlflow.spark", save_args=save_args, load_args=load_args, metadata=metadata
        )
        self._saved_model: Transformer | None = None

    def _load(self) -> Transformer:
        if self._user_defined_model_uri is None and self._saved_model is not None:
            return self._saved_model
        return super()._load()

    def _save(self, data: SparkModelWithExample) -> None:
        configured = self._save_args
        arguments = {**configured, "input_example": data.input_example}
        # mlflow.spark.log_model still names the model by its positional ``artifact_path``
        arguments.setdefault("artifact_path", arguments.pop("name", "model"))
        # MLflow would otherwise infer them by reloading the model in a subprocess (a second
        # Spark start, ~20 s); a Spark ML pipeline needs nothing but pyspark.
        arguments.setdefault("pip_requirements", mlflow.spark.get_default_pip_requirements())
        self._save_args = arguments
        try:
            super()._save(data.model)
        finally:
            self._save_args = configured
        self._saved_model = data.model
