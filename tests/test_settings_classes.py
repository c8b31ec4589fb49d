"""Every setting says whether it is part of a model (contract), only changes how well a model
predicts (comparable), or belongs to the run alone (run); the churn contract is read from it;
editors get the settings' JSON schema."""

from __future__ import annotations

import json
from typing import get_args, get_origin

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from cltv.cli import cli
from cltv.parameters import (
    SETTING_CLASSES,
    ParameterError,
    Settings,
    contract_settings,
    settings_classes,
)

# the sections the classification must cover (issue 46): the models' settings and the shared
# dates and units
CLASSIFIED_SECTIONS = (
    "churn_modeling",
    "cltv",
    "features",
    "observation_end",
    "calibration_end",
    "holdout_days",
    "time_unit",
)


@pytest.fixture(scope="module")
def base_params(project_root) -> dict:
    params: dict = {}
    for path in sorted((project_root / "conf" / "base").glob("parameters*.yml")):
        params.update(yaml.safe_load(path.read_text()))
    return params


def _fields(model: type[BaseModel], prefix: str = ""):
    """Every field under ``model`` as (dotted name, class or None), into nested sections and
    into the items of lists of sections."""
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, f"{dotted}.")
            continue
        yield dotted, (field.json_schema_extra or {}).get("setting")
        if get_origin(annotation) is list:
            (item,) = get_args(annotation)
            if isinstance(item, type) and issubclass(item, BaseModel):
                yield from _fields(item, f"{dotted}[].")


def test_every_setting_is_classified():
    """A new setting without a class (or with one not in SETTING_CLASSES) fails here, named."""
    found = dict(_fields(Settings))
    assert {name.split(".")[0].split("[")[0] for name in found} >= set(CLASSIFIED_SECTIONS)
    unclassified = sorted(name for name, kind in found.items() if kind not in SETTING_CLASSES)
    assert not unclassified, (
        f"settings without a class ({', '.join(SETTING_CLASSES)}): {', '.join(unclassified)}"
    )
    assert settings_classes() == found


def test_the_items_of_a_list_share_its_class():
    """A list of sections (risk bands, RFM segments, value tiers) is one value."""
    classes = settings_classes()
    for name, kind in classes.items():
        if "[]." in name:
            assert kind == classes[name.split("[]")[0]], name


def test_the_classification():
    classes = settings_classes()
    contract = sorted(name for name, kind in classes.items() if kind == "contract")
    assert contract == sorted(
        [
            "time_unit",
            "holdout_days",
            "features.windows_days",
            "features.rfm_segments",
            "features.rfm_segments[].name",
            "features.rfm_segments[].recency",
            "features.rfm_segments[].frequency",
            "churn_modeling.features.numeric",
            "churn_modeling.features.categorical",
            "churn_modeling.btyd_features",
            "churn_modeling.class_weight",
            "churn_modeling.threshold.rule",
            "churn_modeling.threshold.value",
            "churn_modeling.risk_bands",
            "churn_modeling.risk_bands[].name",
            "churn_modeling.risk_bands[].min_probability",
            "cltv.uncertainty.interval",
            "cltv.valuation.horizon_months",
            "cltv.valuation.discount_rate",
            "cltv.valuation.margin",
            "cltv.valuation.value_tiers",
            "cltv.valuation.value_tiers[].name",
            "cltv.valuation.value_tiers[].share",
        ]
    )
    for name in (
        "observation_end",
        "calibration_end",
        "churn_modeling.engine",
        "churn_modeling.split.seed",
        "churn_modeling.split.fractions.train",
        "churn_modeling.max_train_customers",
        "churn_modeling.candidates.driver.xgboost.max_depth",
        "churn_modeling.candidates.spark_ml.gradient_boosted_trees.validation_tol",
        "cltv.candidates",
        "cltv.model_selection",
        "cltv.gamma_gamma.penalizer",
        "cltv.uncertainty.draws",
        "cltv.uncertainty.seed",
    ):
        assert classes[name] == "comparable", name
    for name in (
        "input_path",
        "columns.customer_id",
        "cleaning.returns.mode",
        "churn_modeling.evaluation.curve_points",
        "churn_modeling.reasons.churn_reasons",
        "churn_modeling.promotion.min_gain",
        "cltv.promotion.metric",
        "reporting.drift.bins",
    ):
        assert classes[name] == "run", name


CHURN_CONTRACT = [
    "time_unit",
    "holdout_days",
    "features.windows_days",
    "features.rfm_segments",
    "churn_modeling.features.numeric",
    "churn_modeling.features.categorical",
    "churn_modeling.btyd_features",
    "churn_modeling.class_weight",
    "churn_modeling.threshold.rule",
    "churn_modeling.threshold.value",
    "churn_modeling.risk_bands",
]


def test_the_churn_contract_of_the_committed_parameters(base_params):
    contract = contract_settings(base_params)
    assert sorted(contract) == sorted(CHURN_CONTRACT)
    assert json.loads(json.dumps(contract)) == contract  # JSON as it is
    assert contract["holdout_days"] == 90
    assert contract["features.windows_days"] == [30, 90, 180]
    assert contract["churn_modeling.threshold.rule"] == "max_youden"
    assert contract["churn_modeling.threshold.value"] is None
    assert contract["churn_modeling.risk_bands"] == [
        {"name": "high", "min_probability": 0.7},
        {"name": "medium", "min_probability": 0.4},
        {"name": "low", "min_probability": 0.0},
    ]
    assert contract["features.rfm_segments"][0] == {
        "name": "Champions",
        "recency": [5],
        "frequency": [4, 5],
    }


def test_the_churn_contract_follows_contract_settings_only(base_params):
    before = contract_settings(base_params)
    params = yaml.safe_load(yaml.safe_dump(base_params))
    params["churn_modeling"]["candidates"]["driver"]["xgboost"]["max_depth"] = 6
    params["cltv"]["valuation"]["margin"] = 0.3  # the CLV model's contract, not the churn one's
    params["observation_end"] = "2011-09-30"
    assert contract_settings(params) == before
    params["churn_modeling"]["threshold"] = {"rule": "fixed", "value": 0.9}
    after = contract_settings(params)
    assert {k: (before[k], after[k]) for k in after if after[k] != before[k]} == {
        "churn_modeling.threshold.rule": ("max_youden", "fixed"),
        "churn_modeling.threshold.value": (None, 0.9),
    }


def test_the_churn_contract_of_bad_parameters_is_an_error(base_params):
    with pytest.raises(ParameterError, match="parameter holdout_days: 0 must be"):
        contract_settings({**base_params, "holdout_days": 0})


def test_the_committed_schema_is_what_the_command_writes(project_root):
    """``kedro cltv settings-schema``: the committed copy cannot go stale."""
    printed = CliRunner().invoke(cli, ["cltv", "settings-schema"])
    assert printed.exit_code == 0, printed.output
    committed = (project_root / "conf" / "parameters.schema.json").read_text()
    assert printed.output == committed, (
        "run `kedro cltv settings-schema --out conf/parameters.schema.json`"
    )


def test_the_schema_checks_the_parameter_files_as_an_editor_would(project_root):
    schema = json.loads((project_root / "conf" / "parameters.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((project_root / "conf" / "base").glob("parameters*.yml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path.name
    typo = {"churn_modeling": {"treshold": {"rule": "fixed"}}}
    assert [error.message for error in validator.iter_errors(typo)] == [
        "Additional properties are not allowed ('treshold' was unexpected)"
    ]
    properties = schema["$defs"]["Threshold"]["properties"]
    assert properties["rule"]["enum"] == ["max_youden", "max_f1", "top_fraction", "fixed"]
    assert properties["rule"]["setting"] == "contract"
