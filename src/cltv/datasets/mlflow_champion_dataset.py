"""``MlflowChampionDataset``: the churn model behind a registry alias, with how it was chosen."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError

from cltv.datasets.mlflow_churn_model_dataset import load_churn_model


@dataclass(frozen=True)
class ChampionModel:
    """The model behind the alias (a scikit-learn pipeline, or a Spark ML model for a version
    trained by the ``spark_ml`` engine or before the driver engine existed), its version, and
    the ``churn_model_selection.json`` its training run wrote (threshold, features, whether
    BTYD features were used)."""

    model: Any
    version: int
    selection: dict[str, Any]


class MlflowChampionDataset(AbstractDataset[ChampionModel, None]):
    """Loads the version of ``registered_model`` that holds ``alias`` (read-only).

    Scoring without training needs the model and the threshold and features it was chosen
    with; both come from the registry, so a scoring run uses exactly what training promoted.
    No version with the alias is one line that says what to run.

    Example catalog entry:

    .. code-block:: yaml

        churn_champion:
          type: cltv.datasets.MlflowChampionDataset
          registered_model: cltv_churn
          alias: champion
    """

    SELECTION_ARTIFACT = "churn_model_selection.json"

    def __init__(
        self, *, registered_model: str, alias: str = "champion", metadata: dict | None = None
    ) -> None:
        self._registered_model = registered_model
        self._alias = alias
        self.metadata = metadata

    def load(self) -> ChampionModel:
        client = mlflow.MlflowClient()
        try:
            version = client.get_model_version_by_alias(self._registered_model, self._alias)
        except mlflow.exceptions.MlflowException:
            # not chained: this line is the whole story (the run's last line shows the
            # innermost error)
            raise DatasetError(
                f"no version of the churn model {self._registered_model} has the alias "
                f"'{self._alias}' in the MLflow registry at {mlflow.get_tracking_uri()}: run "
                "the training pipelines first (kedro run), which promote one"
            ) from None
        model = load_churn_model(f"models:/{self._registered_model}@{self._alias}")
        with TemporaryDirectory() as folder:
            path = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=self.SELECTION_ARTIFACT, dst_path=folder
            )
            selection = json.loads(Path(path).read_text())
        return ChampionModel(model=model, version=int(version.version), selection=selection)

    def save(self, data: None) -> None:
        raise DatasetError("MlflowChampionDataset is read-only: training promotes the champion")

    def _describe(self) -> dict[str, Any]:
        return {"registered_model": self._registered_model, "alias": self._alias}
