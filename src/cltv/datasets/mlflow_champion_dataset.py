"""``MlflowChampionDataset``: a registered model behind a registry alias, with how it was
chosen."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError
from mlflow.entities.model_registry import ModelVersion

from cltv.datasets.mlflow_churn_model_dataset import load_churn_model
from cltv.datasets.mlflow_cltv_model_dataset import load_value_model
from cltv.promotion import champion_version, version_uri

# the churn model's training run says how it was chosen in this artifact
SELECTION_ARTIFACT = "churn_model_selection.json"
# what a champion is: how to load it, how errors name it, which artifact of its training run
# says how it was chosen (None: the model carries all it needs)
KINDS = {
    "churn": (load_churn_model, "the churn model", SELECTION_ARTIFACT),
    "cltv": (load_value_model, "the CLV model", None),
}


def selection_of(version: ModelVersion) -> dict[str, Any]:
    """How the training run of a churn model ``version`` chose it, with its threshold
    (``churn_model_selection.json`` of that run) and the version number."""
    with TemporaryDirectory() as folder:
        path = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path=SELECTION_ARTIFACT, dst_path=folder
        )
        selection = json.loads(Path(path).read_text())
    return {**selection, "version": int(version.version)}


@dataclass(frozen=True)
class ChampionModel:
    """The model behind the alias, its version, and how its training run chose it.

    For ``kind: churn``: a scikit-learn pipeline (or a Spark ML model for a version trained by
    the ``spark_ml`` engine or before the driver engine existed) and the
    ``churn_model_selection.json`` its run wrote (threshold, features, whether BTYD features
    were used). For ``kind: cltv``: the :class:`cltv.models.value_model.CustomerValueModel`,
    which carries its fit and settings itself (``selection`` is empty)."""

    model: Any
    version: int
    selection: dict[str, Any]


class MlflowChampionDataset(AbstractDataset[ChampionModel, None]):
    """Loads the version of ``registered_model`` that holds ``alias`` (read-only); ``kind``
    is ``churn`` (default) or ``cltv``.

    Scoring without training needs the models and what they were chosen with (the churn
    model's threshold and features); all of it comes from the registry, so a scoring run uses
    exactly what training promoted. No version with the alias is one line that says what to
    run.

    Example catalog entries:

    .. code-block:: yaml

        churn_champion:
          type: cltv.datasets.MlflowChampionDataset
          registered_model: cltv_churn
          alias: champion

        cltv_champion:
          type: cltv.datasets.MlflowChampionDataset
          registered_model: cltv_value
          kind: cltv
    """

    SELECTION_ARTIFACT = SELECTION_ARTIFACT

    def __init__(
        self,
        *,
        registered_model: str,
        alias: str = "champion",
        kind: str = "churn",
        metadata: dict | None = None,
    ) -> None:
        if kind not in KINDS:
            raise DatasetError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        self._registered_model = registered_model
        self._alias = alias
        self._kind = kind
        self.metadata = metadata

    def load(self) -> ChampionModel:
        load_model, what, selection_artifact = KINDS[self._kind]
        # the alias is read once; the model and its selection come from that version, so a
        # promotion landing meanwhile cannot mix two versions
        version = champion_version(self._registered_model, self._alias)
        if version is None:
            raise DatasetError(
                f"no version of {what} {self._registered_model} has the alias "
                f"'{self._alias}' in the MLflow registry at {mlflow.get_registry_uri()}: run "
                "the training pipelines first (kedro run), which promote one"
            )
        model = load_model(version_uri(version))
        selection = selection_of(version) if selection_artifact is not None else {}
        return ChampionModel(model=model, version=int(version.version), selection=selection)

    def save(self, data: None) -> None:
        raise DatasetError("MlflowChampionDataset is read-only: training promotes the champion")

    def _describe(self) -> dict[str, Any]:
        return {
            "registered_model": self._registered_model,
            "alias": self._alias,
            "kind": self._kind,
        }
