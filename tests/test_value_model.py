"""The CLV model as MLflow sees it (issue 30): what ``predict`` refuses, in words a caller can
act on, and that it survives a round trip through ``mlflow.pyfunc`` unchanged."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cltv.datasets.mlflow_cltv_model_dataset import MlflowCltvModelDataset, input_example
from cltv.models.value_model import (
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
    CustomerValueModel,
    check_histories,
)

# a BG/NBD + Gamma-Gamma fit in the layout of cltv_model_fit.json (CDNOW-like parameters, a
# small diagonal covariance of the log-parameters)
FIT = {
    "time_unit": "W",
    "purchase_model": "bgnbd",
    "bgnbd": {
        "r": 0.243,
        "alpha": 4.414,
        "a": 0.793,
        "b": 2.426,
        "boundary": [],
        "covariance": {
            "coordinates": ["log(r)", "log(alpha)", "log(a)", "log(b)"],
            "matrix": np.diag([0.01, 0.02, 0.03, 0.04]).tolist(),
        },
    },
    "gamma_gamma": {
        "p": 6.25,
        "q": 3.74,
        "gamma": 15.44,
        "population_mean": 6.25 * 15.44 / 2.74,
        "boundary": [],
        "covariance": {
            "coordinates": ["log(p)", "log(q - 1)", "log(gamma)"],
            "matrix": np.diag([0.01, 0.01, 0.02]).tolist(),
        },
    },
}
NAIVE = {"expected_lifespan_months": 20.0, "mean_repeat_order_value": 30.0}
VALUATION = {"horizon_months": 12, "discount_rate": 0.01, "margin": 1.0}
UNCERTAINTY = {"interval": 0.8, "draws": 50, "seed": 3}


@pytest.fixture(scope="module")
def model() -> CustomerValueModel:
    return CustomerValueModel(FIT, NAIVE, VALUATION, UNCERTAINTY)


def _customers(**overrides) -> pd.DataFrame:
    row = {"frequency": 2, "recency": 10.0, "T": 30.0, "monetary_value": 35.5, **overrides}
    return pd.DataFrame([row, {"frequency": 0, "recency": 0.0, "T": 5.0, "monetary_value": 0.0}])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"T": -1.0}, "row 0: T = -1 must not be negative"),
        ({"recency": 31.0}, "row 0: recency = 31 must not exceed T (30)"),
        ({"frequency": -2}, "row 0: frequency = -2 must not be negative"),
        ({"frequency": 1.5}, "row 0: frequency = 1.5 must be a whole number of purchases"),
        ({"monetary_value": -3.0}, "row 0: monetary_value = -3 must not be negative"),
        ({"T": "soon"}, "row 0: T = 'soon' is not a finite number"),
        ({"recency": float("inf")}, "row 0: recency = inf is not a finite number"),
    ],
)
def test_a_history_no_customer_can_have_is_refused_by_row_and_column(model, overrides, message):
    with pytest.raises(mlflow.exceptions.MlflowException) as raised:
        model.predict(None, _customers(**overrides))
    assert raised.value.message == message
    # an MLflow scoring server answers this with a 400
    assert raised.value.get_http_status_code() == 400


def test_a_missing_column_is_named():
    with pytest.raises(ValueError, match=r"^missing column\(s\) T, monetary_value: each row"):
        check_histories(_customers().drop(columns=["T", "monetary_value"]))


def test_a_one_time_buyer_with_a_recency_is_refused():
    with pytest.raises(ValueError, match="row 1: recency = 2 must be 0 when frequency is 0"):
        check_histories(
            pd.DataFrame({"frequency": [1, 0], "recency": [1.0, 2.0], "T": [3.0, 3.0],
                          "monetary_value": [1.0, 0.0]})
        )  # fmt: skip


def test_predict_returns_the_values_and_intervals_and_keeps_the_rows(model):
    customers = _customers().set_axis(["a", "b"])
    predicted = model.predict(None, customers)
    assert list(predicted.columns) == list(OUTPUT_COLUMNS)
    assert list(predicted.index) == ["a", "b"]
    # the one-time buyer of 5 weeks ago: P(alive) 1 under BG/NBD (no repeat, so no chance
    # to have left), and Gamma-Gamma's order value shrinks to the population mean, p γ / (q - 1)
    one_time = predicted.loc["b"]
    assert one_time["p_alive"] == 1.0
    assert one_time["expected_average_order_value"] == pytest.approx(6.25 * 15.44 / 2.74)
    for column in ("p_alive", "expected_purchases", "expected_average_order_value", "clv"):
        assert (predicted[f"{column}_lower"] <= predicted[column]).all()
        assert (predicted[column] <= predicted[f"{column}_upper"]).all()
    assert model.predict(None, customers.iloc[:0]).columns.tolist() == list(OUTPUT_COLUMNS)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 60),
            st.floats(0, 1, allow_nan=False),
            st.floats(0, 150, allow_nan=False),
            st.floats(0, 5000, allow_nan=False),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_every_valid_history_gets_finite_non_negative_values_row_by_row(rows):
    model = CustomerValueModel(FIT, NAIVE, VALUATION, UNCERTAINTY)
    customers = pd.DataFrame(
        [
            {
                "frequency": x,
                "recency": share * t if x else 0.0,
                "T": t,
                "monetary_value": m if x else 0.0,
            }
            for x, share, t, m in rows
        ]
    )
    predicted = model.predict(None, customers)
    assert np.isfinite(predicted.to_numpy()).all() and (predicted.to_numpy() >= 0).all()
    # a customer's values do not depend on who else is in the request: each row alone
    for row in range(len(customers)):
        alone = model.predict(None, customers.iloc[[row]])
        pd.testing.assert_frame_equal(alone, predicted.iloc[[row]], rtol=1e-12)


def test_the_model_round_trips_through_mlflow_with_its_signature(model, tmp_path, mlflow_uris):
    """Logged by the project's own dataset (as a run logs it: from code, with ``code_paths``
    and pinned requirements) and loaded back by ``mlflow.pyfunc``."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    with mlflow.start_run() as run:
        MlflowCltvModelDataset(save_args={"name": "cltv_value_model"}).save(model)
    uri = f"runs:/{run.info.run_id}/cltv_value_model"
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "m")))
    assert not list(folder.rglob("*.pkl"))  # models from code: nothing pickled
    # a serving environment gets the project's code and the pinned requirements, no wheel
    assert (folder / "code" / "cltv" / "models" / "value_model.py").is_file()
    requirements = (folder / "requirements.txt").read_text().split()
    for package in ("mlflow", "numpy", "scipy", "pandas"):
        assert f"{package}=={version(package)}" in requirements
    loaded = mlflow.pyfunc.load_model(str(folder))
    assert loaded.metadata.signature.inputs.input_names() == list(INPUT_COLUMNS)
    example = input_example("W")
    pd.testing.assert_frame_equal(loaded.predict(example), model.predict(None, example))
    # in days, the same customers: recency and T seven times larger
    days = input_example("D")
    assert (days["T"] == 7 * example["T"]).all() and (
        days["frequency"] == example["frequency"]
    ).all()
    # JSON has one number type: a whole-number float frequency is a purchase count, a
    # fraction is refused by row
    customers = pd.DataFrame(
        {"frequency": [3.0, 2], "recency": [20.0, 9.0], "T": [40.0, 30.0],
         "monetary_value": [55.0, 20.0]}
    )  # fmt: skip
    pd.testing.assert_frame_equal(
        loaded.predict(customers),
        model.predict(None, customers.astype({"frequency": "int64"})),
    )
    with pytest.raises(mlflow.MlflowException, match=r"row 1: frequency = 2\.5 must be a whole"):
        loaded.predict(customers.assign(frequency=[3.0, 2.5]))
    # the unwrapped model is the one Spark batches use, built from its settings
    unwrapped = loaded.unwrap_python_model()
    assert isinstance(unwrapped, CustomerValueModel)
    assert unwrapped.model_config() == model.model_config()
