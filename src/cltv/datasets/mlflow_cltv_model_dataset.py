"""``MlflowCltvModelDataset``: the CLV model logged to MLflow as a pyfunc model and registered."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

import cltv
from cltv.datasets.logged_model_dataset import LoggedModelDataset
from cltv.models import value_model
from cltv.models.value_model import CustomerValueModel, model_signature

# the file MLflow runs to build the model (not imported here: it sets MLflow's current model)
MODEL_CODE = Path(value_model.__file__).with_name("value_model_code.py")

# histories of three customers (one-time buyer, occasional, regular) in weeks: the example
# logged with the model, shown by the MLflow UI and checked against the signature
EXAMPLE_WEEKS = {
    "frequency": [0, 2, 12],
    "recency": [0.0, 10.0, 48.0],
    "T": [20.0, 30.0, 52.0],
    "monetary_value": [0.0, 35.5, 120.0],
}
DAYS_IN = {"W": 7.0, "D": 1.0}


def load_value_model(model_uri: str) -> CustomerValueModel:
    """The CLV model at ``model_uri`` (``models:/cltv_value@champion``, ``runs:/…``) as the
    :class:`CustomerValueModel` it was logged from, ready to value Spark batches."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()


def input_example(time_unit: str) -> pd.DataFrame:
    """:data:`EXAMPLE_WEEKS` in the fit's time unit."""
    scale = 7.0 / DAYS_IN[time_unit]
    example = pd.DataFrame(EXAMPLE_WEEKS)
    example[["recency", "T"]] *= scale
    return example


class MlflowCltvModelDataset(LoggedModelDataset):
    """kedro-mlflow's model dataset for the CLV model (:class:`CustomerValueModel`), logged in
    the active run as an ``mlflow.pyfunc`` model from code (:mod:`cltv.models.value_model_code`
    with the model's settings as ``model_config``: nothing pickled) with its signature, an
    input example in the fit's time unit, the ``cltv`` code it runs (``code_paths``: a serving
    environment needs only the listed requirements, not this project's wheel) and pinned
    requirements;
    ``registered_model_name`` in ``save_args`` registers a new version.

    Loading returns the model saved last through this dataset in this process, or, with
    ``load_args.model_uri``, the :class:`CustomerValueModel` at that URI.

    Example catalog entry:

    .. code-block:: yaml

        cltv_value_model:
          type: cltv.datasets.MlflowCltvModelDataset
          save_args:
            name: cltv_value_model
            registered_model_name: cltv_value

    Example in Python (no Spark needed):

    .. code-block:: python

        import mlflow
        model = mlflow.pyfunc.load_model("models:/cltv_value@champion")
        model.predict(customer_summary[["frequency", "recency", "T", "monetary_value"]])
    """

    def __init__(
        self,
        *,
        save_args: dict[str, Any] | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            flavor="mlflow.pyfunc",
            pyfunc_workflow="python_model",
            save_args=save_args,
            load_args=load_args,
            metadata=metadata,
        )

    def _load_from_uri(self, model_uri: str) -> CustomerValueModel:
        return load_value_model(model_uri)

    def _save(self, data: CustomerValueModel) -> None:
        arguments = {
            # models from code: MLflow stores this file and the settings, not a pickle
            "model_config": data.model_config(),
            "signature": model_signature(),
            "input_example": input_example(data.fit["time_unit"]),
            "code_paths": [str(Path(cltv.__file__).parent)],
            # given, so that MLflow does not infer them by loading the model in a subprocess
            "pip_requirements": [
                f"{package}=={version(package)}"
                for package in ("mlflow", "numpy", "scipy", "pandas")
            ],
            "metadata": data.describe(),
            **self._save_args,
        }
        self._log(str(MODEL_CODE), data, arguments)
