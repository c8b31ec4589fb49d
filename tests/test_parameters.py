"""Bad parameters stop a run before any Spark work, with a message naming each of them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from deltalake import DeltaTable

from cltv import parameters as parameters_module
from cltv.parameters import ParameterError, problems, validate_parameters

from .conftest import cli_run, copy_project, run_cli_in_process, run_kedro


@pytest.fixture(scope="module")
def base_params(project_root) -> dict:
    params: dict = {}
    for path in sorted((project_root / "conf" / "base").glob("parameters*.yml")):
        params.update(yaml.safe_load(path.read_text()))
    return params


def test_the_committed_parameters_are_valid(base_params):
    assert problems(base_params) == []


def test_the_parameters_as_kedro_merges_them_are_valid(project_root):
    """As the run sees them: conf/base through the project's OmegaConfigLoader (globals
    resolved), with a nested ``--params`` merged in the way Kedro does."""
    from kedro.config import OmegaConfigLoader

    from cltv.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(
        str(project_root / "conf"),
        **{**CONFIG_LOADER_ARGS, "default_run_env": "base"},
        runtime_params={"churn_modeling": {"threshold": {"rule": "fixed", "value": 0.9}}},
    )
    params = loader["parameters"]
    assert params["churn_modeling"]["promotion"]["registered_model"] == "cltv_churn"
    assert params["churn_modeling"]["threshold"] == {"rule": "fixed", "value": 0.9}
    validate_parameters(params)


def test_keys_beside_the_sections_are_left_alone(base_params):
    """Kedro or a plugin may add top-level keys; only the sections of parameters*.yml are
    ours to judge."""
    assert problems({**base_params, "runner": "SequentialRunner", "mlflow": {"x": 1}}) == []


def test_every_problem_is_reported_in_one_error(base_params):
    params = yaml.safe_load(yaml.safe_dump(base_params))  # a deep copy
    params["time_unit"] = "M"
    params["churn_modeling"]["threshold"]["rule"] = "best_f1"
    params["churn_modeling"]["candidates"]["driver"]["xgboost"]["max_depth"] = 0
    params["cltv"]["valuation"]["margin"] = -1
    params["reporting"]["targets"]["limit"] = "all"
    with pytest.raises(ParameterError) as error:
        validate_parameters(params)
    assert str(error.value).split("; ") == [
        "parameter time_unit: 'M' is not one of D, W",
        "parameter churn_modeling.candidates.driver.xgboost.max_depth: "
        "0 must be a whole number above 0",
        "parameter churn_modeling.threshold.rule: "
        "'best_f1' is not one of max_youden, max_f1, top_fraction, fixed",
        "parameter cltv.valuation.margin: -1 must be above 0",
        "parameter reporting.targets.limit: 'all' must be a whole number above 0",
    ]


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        (
            "churn_modeling",
            ["treshold"],
            "parameter churn_modeling.treshold: unknown setting; did you mean threshold?",
        ),
        (
            "cltv",
            ["valuation", "discount"],
            "parameter cltv.valuation.discount: unknown setting; did you mean discount_rate?",
        ),
        (
            "churn_modeling",
            ["candidates", "driver", "random_forest"],
            "parameter churn_modeling.candidates.driver.random_forest: unknown setting; known: "
            "logistic_regression, xgboost",
        ),
    ],
)
def test_a_misspelt_or_unknown_key_is_reported(base_params, section, path, message):
    params = yaml.safe_load(yaml.safe_dump(base_params))
    target = params[section]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = {"rule": "fixed"}
    assert problems(params) == [message]


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        (
            {"rule": "fixed", "value": None},
            "parameter churn_modeling.threshold.value: "
            "rule fixed needs a probability between 0 and 1, not None",
        ),
        (
            {"rule": "top_fraction", "value": 1.5},
            "parameter churn_modeling.threshold.value: "
            "rule top_fraction needs the share flagged, above 0 and at most 1, not 1.5",
        ),
    ],
)
def test_a_threshold_rule_needs_its_value(base_params, threshold, message):
    params = yaml.safe_load(yaml.safe_dump(base_params))
    params["churn_modeling"]["threshold"] = threshold
    assert problems(params) == [message]


def test_a_list_item_is_named_by_its_list(base_params):
    """``--params`` cannot name an item of a list: the list is named, the item is counted."""
    params = yaml.safe_load(yaml.safe_dump(base_params))
    params["churn_modeling"]["risk_bands"][1]["min_probability"] = 1.5
    params["features"]["windows_days"] = [30, -90]
    assert problems(params) == [
        "parameter features.windows_days: -90 must be a whole number above 0",
        "parameter churn_modeling.risk_bands: item 2, min_probability: 1.5 must be between 0 and 1",
    ]


def test_the_cltv_selection_names_a_rule_or_a_listed_candidate(base_params):
    params = yaml.safe_load(yaml.safe_dump(base_params))
    params["cltv"]["candidates"] = ["bgnbd", "mbgnbd"]
    params["cltv"]["model_selection"] = "pnbd"
    assert problems(params) == [
        "parameter cltv.model_selection: 'pnbd' is not one of lowest_mae, lowest_rmse, bgnbd, "
        "mbgnbd (a purchase model must be one of cltv.candidates)"
    ]


def test_the_check_imports_no_model_code(project_root):
    """The check runs before Spark starts, so it must be quick: it needs the parameters'
    vocabulary, not the models behind it (scipy, scikit-learn, MLflow's model datasets)."""
    script = f"""
import sys
from pathlib import Path

import yaml

import cltv.parameters

params = {{}}
for path in sorted(Path({str(project_root / "conf" / "base")!r}).glob("parameters*.yml")):
    params.update(yaml.safe_load(path.read_text()))
cltv.parameters.validate_parameters(params)
heavy = ("scipy", "sklearn", "xgboost", "cltv.models", "cltv.pipelines.cltv.nodes",
         "cltv.datasets.mlflow_cltv_model_dataset")
print(sorted(name for name in heavy if name in sys.modules))
"""
    found = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_the_vocabulary_names_the_models_the_pipelines_have():
    from cltv.models.value_model import PURCHASE_MODELS
    from cltv.pipelines.data_processing.nodes import DAYS_PER_UNIT

    assert parameters_module.PURCHASE_MODELS == tuple(PURCHASE_MODELS)
    assert parameters_module.TIME_UNITS == tuple(DAYS_PER_UNIT)
    assert parameters_module.CHURN_CANDIDATES == {
        "driver": ("logistic_regression", "xgboost"),
        "spark_ml": ("logistic_regression", "gradient_boosted_trees"),
    }
    assert parameters_module.SPLITS == ("train", "validation", "test")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"time_unit": "M"}, "parameter time_unit: 'M' is not one of D, W"),
        ({"holdout_days": -5}, "parameter holdout_days: -5 must be a whole number above 0"),
        ({"holdout_days": 2.5}, "parameter holdout_days: 2.5 must be a whole number above 0"),
        (
            {"observation_end": "2011-12-09", "calibration_end": "2011-12-31"},
            "parameter calibration_end: 2011-12-31 must be before observation_end (2011-12-09)",
        ),
        ({"observation_end": "2011-13-40"}, "parameter observation_end: '2011-13-40' is not"),
        ({"columns": {"invoce": "Invoice"}}, "parameter columns: unknown key(s) invoce"),
        ({"columns": {"invoice": ""}}, "parameter columns: no CSV column given for invoice"),
    ],
)
def test_each_bad_run_parameter_is_named(base_params, override, message):
    with pytest.raises(ParameterError) as error:
        validate_parameters({**base_params, **override})
    assert message in str(error.value)
    assert str(error.value).count("parameter ") == 1  # only the bad one is reported


@pytest.mark.parametrize(
    ("section", "path", "value", "name"),
    [
        ("cltv", ["valuation", "horizon_months"], -12, "cltv.valuation.horizon_months"),
        ("cltv", ["valuation", "discount_rate"], -0.1, "cltv.valuation.discount_rate"),
        ("cltv", ["valuation", "margin"], 0, "cltv.valuation.margin"),
        ("cltv", ["bgnbd", "penalizer"], -0.01, "cltv.bgnbd.penalizer"),
        ("cltv", ["candidates"], ["bgnbd", "pareto"], "cltv.candidates"),
        ("cltv", ["model_selection"], "best", "cltv.model_selection"),
        ("cltv", ["gamma_gamma", "penalizer"], "lots", "cltv.gamma_gamma.penalizer"),
        ("cleaning", ["max_quarantine_fraction"], 1.5, "cleaning.max_quarantine_fraction"),
        ("churn_modeling", ["split", "fractions", "test"], 0.5, "churn_modeling.split.fractions"),
        ("churn_modeling", ["btyd_features"], ["p_alive"], "churn_modeling.btyd_features"),
        ("cltv", ["pnbd", "penalizer"], -1.0, "cltv.pnbd.penalizer"),
        ("cltv", ["uncertainty", "interval"], 80, "cltv.uncertainty.interval"),
        ("cltv", ["uncertainty", "interval"], 1.0, "cltv.uncertainty.interval"),
        ("cltv", ["uncertainty", "draws"], 0, "cltv.uncertainty.draws"),
        ("cltv", ["uncertainty", "draws"], 2.5, "cltv.uncertainty.draws"),
        ("cltv", ["uncertainty", "seed"], -1, "cltv.uncertainty.seed"),
        ("reporting", ["targets", "rank_by"], "clv", "reporting.targets.rank_by"),
        ("reporting", ["drift", "bins"], 1, "reporting.drift.bins"),
        ("reporting", ["drift", "bins"], 7.5, "reporting.drift.bins"),
        ("reporting", ["drift", "psi_warning"], 0, "reporting.drift.psi_warning"),
        (
            "reporting",
            ["drift", "changed_share_warning"],
            "a",
            "reporting.drift.changed_share_warning",
        ),
        ("churn_modeling", ["promotion", "metric"], "f1", "churn_modeling.promotion.metric"),
        ("churn_modeling", ["class_weight"], "inverse", "churn_modeling.class_weight"),
        ("churn_modeling", ["promotion", "min_gain"], -0.1, "churn_modeling.promotion.min_gain"),
        ("cltv", ["promotion", "metric"], "pr_auc", "cltv.promotion.metric"),
        ("cltv", ["promotion", "min_gain"], -0.01, "cltv.promotion.min_gain"),
    ],
)
def test_bad_nested_parameters_are_named(base_params, section, path, value, name):
    params = yaml.safe_load(yaml.safe_dump(base_params))  # a deep copy
    target = params[section]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert [p.split(":")[0] for p in problems(params)] == [f"parameter {name}"]


def test_several_problems_are_reported_together(base_params):
    found = problems({**base_params, "time_unit": "x", "holdout_days": 0})
    assert [p.split(":")[0] for p in found] == ["parameter time_unit", "parameter holdout_days"]


def test_a_run_with_bad_parameters_stops_before_any_table_or_mlflow_run(
    spark, project_root, tmp_path, whole_run
):
    project = copy_project(project_root, tmp_path, mlflow_store=False)
    with pytest.raises(ParameterError, match="parameter time_unit: 'M'"):
        run_kedro(project, time_unit="M", holdout_days=90)
    assert not (project / "mlflow.db").exists()
    assert not [p for p in (project / "data").rglob("_delta_log")]


def test_bad_parameters_stop_the_command_before_spark_starts(project_root, tmp_path, whole_run):
    """``kedro run`` in a fresh process: one line naming the parameter, and not a line of
    Spark's (the driver's Java is chosen first thing when a session starts)."""
    project = copy_project(project_root, tmp_path, mlflow_store=False)
    finished = cli_run(project, "--params", "time_unit=M")
    log = finished.stdout + finished.stderr
    assert finished.returncode != 0
    assert "parameter time_unit: 'M' is not one of D, W" in log.strip().splitlines()[-1]
    assert "Spark: Java for the driver" not in log
    assert "log4j" not in log and "SparkContext" not in log
    assert not (project / "mlflow.db").exists()


def test_nested_overrides_change_one_key_and_keep_its_siblings(default_run, tmp_path):
    """``--params cltv.gamma_gamma.penalizer=...`` (the advice a failed fit prints) and a
    ``conf/local`` file setting ``cltv.bgnbd.penalizer`` each change that key only: the rest of
    ``cltv`` (valuation, the other model) stays as in ``conf/base``."""
    project = tmp_path / "project"
    shutil.copytree(default_run.project, project)
    (project / "conf" / "local" / "parameters_cltv.yml").write_text(
        yaml.safe_dump({"cltv": {"bgnbd": {"penalizer": 0.002}}})
    )
    run_cli_in_process(
        project,
        "--pipelines",
        "cltv",
        "--params",
        f"input_path={default_run.csv},cltv.gamma_gamma.penalizer=0.001",
    )
    fit = json.loads((project / "data" / "06_models" / "cltv_model_fit.json").read_text())
    assert fit["bgnbd"]["penalizer"] == 0.002
    assert fit["gamma_gamma"]["penalizer"] == 0.001
    values = DeltaTable(str(project / "data" / "07_model_output" / "customer_cltv")).to_pandas()
    assert (values["horizon_months"] == 12).all()  # cltv.valuation survived both
    assert set(values["value_tier"]) == {"top_1pct", "top_5pct", "top_20pct", "rest"}
