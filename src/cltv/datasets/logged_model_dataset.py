"""``LoggedModelDataset``: what the project's MLflow model datasets share."""

from __future__ import annotations

from typing import Any

import mlflow
from kedro_mlflow.io.models import MlflowModelTrackingDataset

from cltv.promotion import registry_error


class LoggedModelDataset(MlflowModelTrackingDataset):
    """kedro-mlflow's model dataset, with two things both project model datasets need.

    - **Loading** returns the model saved last through this dataset in this process (the very
      object that was logged, not read back), or, with ``load_args.model_uri``, the model at
      that URI as :meth:`_load_from_uri` reads it.
    - **Saving** goes through :meth:`_log`: save arguments that depend on the model (its input
      example, its flavor's requirements) are added for that one save, and the catalog's
      ``save_args`` stay as configured.

    Not used in a catalog itself: see :class:`cltv.datasets.MlflowChurnModelDataset` and
    :class:`cltv.datasets.MlflowCltvModelDataset`.
    """

    def __init__(
        self,
        *,
        flavor: str,
        pyfunc_workflow: str | None = None,
        save_args: dict[str, Any] | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            flavor=flavor,
            pyfunc_workflow=pyfunc_workflow,
            save_args=save_args,
            load_args=load_args,
            metadata=metadata,
        )
        self._saved_model: Any = None

    def _load_from_uri(self, model_uri: str) -> Any:
        raise NotImplementedError

    def _load(self) -> Any:
        if self._user_defined_model_uri is None and self._saved_model is not None:
            return self._saved_model
        return self._load_from_uri(self.model_uri)

    def _log(self, logged: Any, model: Any, arguments: dict[str, Any]) -> None:
        """Log ``logged`` (what the flavor's ``log_model`` takes) with ``arguments`` in place
        of the configured save arguments, for this save only; ``model`` is what loading
        returns afterwards."""
        configured = self._save_args
        self._save_args = arguments
        try:
            super()._save(logged)
        except mlflow.exceptions.MlflowException as exc:
            if "API request to" not in str(exc):
                raise
            # a tracking server or registry that did not answer: its message is a page of
            # HTTP internals; the run stops before any promotion, in one line
            name = arguments.get("registered_model_name") or arguments.get("name", "the model")
            raise registry_error(f"log and register {name}", exc) from None
        finally:
            self._save_args = configured
        self._saved_model = model
