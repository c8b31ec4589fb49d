"""Both champions served by the real MLflow scoring server (issue 30): ``mlflow models serve
-m models:/<name>@champion --env-manager local`` on localhost, asked over HTTP for customers
whose answers the batch tables already hold; bad rows get a 4xx that names the problem, and
the server keeps serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from cltv.models.value_model import INPUT_COLUMNS, OUTPUT_COLUMNS

from .conftest import free_port, registered_model, whole_run_fixture

STARTUP_SECONDS = 180


def _post(port: int, payload: dict | str) -> tuple[int, dict]:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _records(frame: pd.DataFrame) -> dict:
    return {"dataframe_records": json.loads(frame.to_json(orient="records"))}


def _serve(project: Path, model_uri: str, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
        # the server runs `uvicorn` from PATH: the venv's, as after `. .venv/bin/activate`
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=project, env=environment, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return server, port


def _wait_until_ready(server: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server stopped ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"no answer on /ping in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


@whole_run_fixture(scope="module")
def servers(trained_twice, tmp_path_factory):
    """Both champions, served at once (each server loads its model on its own)."""
    folder = tmp_path_factory.mktemp("serving")
    started = {
        name: (*_serve(trained_twice.project, f"models:/{name}@champion", folder / name), name)
        for name in ("cltv_value", "cltv_churn")
    }
    try:
        for server, port, name in started.values():
            _wait_until_ready(server, port, folder / name)
        yield {name: port for name, (_, port, _) in started.items()}
    finally:
        for server, _, _ in started.values():
            server.terminate()
            server.wait(timeout=30)


def _table(project: Path, layer_and_name: str) -> pd.DataFrame:
    frame = DeltaTable(str(project / "data" / layer_and_name)).to_pandas()
    return frame.sort_values("customer_id").reset_index(drop=True)


def test_the_clv_champion_answers_as_the_batch_table(trained_twice, servers):
    project, port = trained_twice.project, servers["cltv_value"]
    summary = _table(project, "03_primary/customer_summary_current")
    table = _table(project, "07_model_output/customer_cltv").set_index("customer_id")
    # one-time buyers, occasional and frequent ones
    customers = pd.concat(
        [summary[summary["frequency"] == 0].head(2), summary[summary["frequency"] > 0].head(2),
         summary.nlargest(2, "frequency")]
    )  # fmt: skip
    status, answer = _post(port, _records(customers[list(INPUT_COLUMNS)]))
    assert status == 200, answer
    predicted = pd.DataFrame(answer["predictions"])
    assert list(predicted.columns) == list(OUTPUT_COLUMNS)
    expected = table.loc[customers["customer_id"], list(OUTPUT_COLUMNS)]
    np.testing.assert_allclose(predicted.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("row", "named"),
    [
        # MLflow's schema check refuses these two before the model's own check runs; its
        # message quotes the schema and the input, so the column is matched in its phrase
        ({"frequency": 2, "recency": 10.0, "monetary_value": 30.0}, "missing inputs ['T']"),
        (
            {"frequency": 2, "recency": 10.0, "T": -4.0, "monetary_value": 30.0},
            "row 0: T = -4 must not be negative",
        ),
        (
            {"frequency": 2, "recency": 10.0, "T": "a year", "monetary_value": 30.0},
            "Failed to convert column T to type",
        ),
        (
            {"frequency": 2.5, "recency": 10.0, "T": 30.0, "monetary_value": 30.0},
            "row 0: frequency = 2.5 must be a whole number of purchases",
        ),
        ({"frequency": 2, "recency": 40.0, "T": 30.0, "monetary_value": 30.0}, "must not exceed T"),
    ],
    ids=["missing column", "negative T", "text", "fractional frequency", "recency beyond T"],
)
def test_a_bad_row_gets_a_400_that_names_it_and_the_server_keeps_serving(servers, row, named):
    port = servers["cltv_value"]
    status, answer = _post(port, {"dataframe_records": [row]})
    assert status == 400, answer
    assert answer["error_code"] in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST")
    assert named in answer["message"], answer["message"]
    good = {"frequency": 2, "recency": 10.0, "T": 30.0, "monetary_value": 30.0}
    status, answer = _post(port, {"dataframe_records": [good]})
    assert status == 200 and answer["predictions"][0]["clv"] > 0


def test_a_whole_number_sent_as_a_json_float_is_a_purchase_count(servers):
    port = servers["cltv_value"]
    history = {"recency": 10.0, "T": 30.0, "monetary_value": 30.0}
    as_int = _post(port, {"dataframe_records": [{"frequency": 3, **history}]})
    as_float = _post(port, {"dataframe_records": [{"frequency": 3.0, **history}]})
    assert as_float[0] == as_int[0] == 200, as_float
    assert as_float[1] == as_int[1]


def test_a_request_that_is_not_json_gets_a_400(servers):
    status, answer = _post(servers["cltv_value"], "{frequency: 2")
    assert status == 400, answer


def test_the_churn_champion_answers_as_the_batch_table(trained_twice, servers):
    project, port = trained_twice.project, servers["cltv_churn"]
    columns = registered_model(project, "cltv_churn").metadata.signature.inputs.input_names()
    features = _table(project, "04_feature/customer_features_current").merge(
        _table(project, "04_feature/btyd_churn_scores_current"), on="customer_id"
    )
    customers = features.dropna(subset=columns).head(6)
    status, answer = _post(port, _records(customers[columns]))
    assert status == 200, answer
    churn_probability = np.array(answer["predictions"])[:, 1]
    predictions = _table(project, "07_model_output/churn_predictions").set_index("customer_id")
    expected = predictions.loc[customers["customer_id"], "churn_probability"].to_numpy()
    np.testing.assert_allclose(churn_probability, expected, rtol=1e-9)
    # a row without one of the model's columns: a 400 naming it
    status, answer = _post(port, _records(customers[columns[1:]]))
    assert status == 400 and f"missing inputs ['{columns[0]}']" in answer["message"], answer
