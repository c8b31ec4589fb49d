"""The CLV model as MLflow "models from code": MLflow runs this file to build the model it
loads, and gives it its settings (the fit, the naive baseline, the valuation and interval
settings) from the logged ``model_config`` (:meth:`CustomerValueModel.load_context`). Nothing
is pickled, so the model loads on any Python that has its requirements."""

from mlflow.models import set_model

from cltv.models.value_model import CustomerValueModel

set_model(CustomerValueModel())
