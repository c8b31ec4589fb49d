"""A holdout no model can learn from stops a training run before either fit, in one line with
the dates, the churned and not churned customers, and what to change (``check_holdout``)."""

from __future__ import annotations

import pytest

from cltv.cli import failure_summary
from cltv.hooks import NODE_NOTE
from cltv.pipelines import (
    churn_modeling,
    cltv,
    data_processing,
    ingest_increment,
    reporting,
    scoring,
)
from cltv.pipelines.data_processing.nodes import (
    InputDataError,
    build_customer_history,
    build_customer_summary,
    check_holdout,
    resolve_analysis_period,
)

from .test_customer_summary import _clean_frame

# purchases from 2011-01-03 to 2011-02-10: a buys in January and again on 2011-02-10, b once
# in January (and a day in February whose line was returned in full: no purchase occasion),
# c first on 2011-02-05
LINES = [
    ("a", "2011-01-03 10:00:00", 1, 10.0),
    ("a", "2011-01-20 10:00:00", 1, 5.0),
    ("b", "2011-01-10 10:00:00", 3, 1.0),
    ("b", "2011-02-01 10:00:00", 1, 0.0),
    ("c", "2011-02-05 10:00:00", 1, 9.0),
    ("a", "2011-02-10 10:00:00", 1, 8.0),
]
DATA = "purchases from 2011-01-03 to 2011-02-10"


@pytest.fixture(scope="module")
def purchase_days(spark):
    return _clean_frame(spark, LINES).cache()


def _check(purchase_days, observation_end, calibration_end):
    period = resolve_analysis_period(purchase_days, observation_end, calibration_end, 90)
    history = build_customer_history(purchase_days, period, {"windows_days": [30]})
    return period, check_holdout(history, period)


def _stops(purchase_days, observation_end, calibration_end) -> str:
    with pytest.raises(InputDataError) as stopped:
        _check(purchase_days, observation_end, calibration_end)
    message = str(stopped.value)
    assert "\n" not in message
    return message


def test_a_holdout_with_both_classes_passes_and_agrees_with_the_summary(purchase_days):
    period, checked = _check(purchase_days, None, "2011-01-31")
    assert checked == period
    assert period["observation_end"] == "2011-02-10"
    # the label the fits read: a bought again on 2011-02-10, b did not (c came later)
    summary = build_customer_summary(purchase_days, checked, "D").toPandas()
    assert dict(zip(summary["customer_id"], summary["churned"], strict=True)) == {"a": 0, "b": 1}


def test_observation_end_past_the_data_stops(purchase_days):
    # both classes are there (a came back on 2011-02-10, b did not): the dates alone stop it,
    # since a customer would count as churned for the weeks with no data
    assert _stops(purchase_days, "2011-03-31", "2011-01-31") == (
        "the holdout cannot train the models: observation_end 2011-03-31 is after the last "
        f"purchase in the data; {DATA}, calibration_end 2011-01-31, observation_end "
        "2011-03-31; churned customers: 1, not churned: 1; set observation_end on or before "
        "2011-02-10, or leave it null"
    )


def test_an_empty_holdout_stops(purchase_days):
    # (2011-01-25, 2011-02-04]: b's returned line is no purchase, c comes a day later
    assert _stops(purchase_days, "2011-02-04", "2011-01-25") == (
        "the holdout cannot train the models: nobody bought in the holdout, after "
        f"calibration_end up to observation_end; {DATA}, calibration_end 2011-01-25, "
        "observation_end 2011-02-04; churned customers: 2, not churned: 0; move the holdout "
        "to a period with purchases, or leave both dates null"
    )


def test_everybody_churned_stops(purchase_days):
    # (2011-01-25, 2011-02-09] holds c's first purchase, but neither a nor b came back in it
    assert _stops(purchase_days, "2011-02-09", "2011-01-25") == (
        "the holdout cannot train the models: every customer of the calibration period "
        f"churned; {DATA}, calibration_end 2011-01-25, observation_end 2011-02-09; churned "
        "customers: 2, not churned: 0; lengthen the holdout (holdout_days, or an earlier "
        "calibration_end)"
    )


def test_nobody_churned_stops(purchase_days):
    # a alone bought by 2011-01-05, and came back
    assert _stops(purchase_days, None, "2011-01-05") == (
        "the holdout cannot train the models: no customer of the calibration period churned; "
        f"{DATA}, calibration_end 2011-01-05, observation_end 2011-02-10; churned customers: "
        "0, not churned: 1; shorten the holdout (holdout_days, or a later calibration_end)"
    )


def test_no_customer_by_calibration_end_stops(purchase_days):
    # the default calibration_end, 90 days before 2011-02-10, is before the first purchase
    assert _stops(purchase_days, None, None) == (
        "the holdout cannot train the models: no customer bought on or before "
        f"calibration_end; {DATA}, calibration_end 2010-11-12, observation_end 2011-02-10; "
        "churned customers: 0, not churned: 0; set calibration_end on or after 2011-01-03, "
        "or a shorter holdout_days"
    )


def test_the_run_ends_with_the_check_s_own_line(purchase_days):
    """What `kedro run` prints last: the node's name and this message, no exception type."""
    with pytest.raises(InputDataError) as stopped:
        _check(purchase_days, "2011-03-31", "2011-01-31")
    stopped.value.add_note(f"{NODE_NOTE}check_holdout")
    assert failure_summary(stopped.value, None) == f"node check_holdout failed: {stopped.value}"


def test_training_checks_before_either_fit_and_scoring_does_not():
    default = (
        data_processing.create_pipeline()
        + cltv.create_pipeline()
        + churn_modeling.create_pipeline()
        + reporting.create_pipeline()
    )
    for training in (default, ingest_increment.create_pipeline()):
        after_check = {node.name for node in training.from_nodes("check_holdout").nodes}
        assert {"fit_cltv_models_on_calibration", "fit_churn_candidates"} <= after_check
        # the training tables are built from the checked period: both fits read the summary
        assert {"build_customer_summary", "build_customer_features"} <= after_check
    assert "check_holdout" not in {node.name for node in scoring.create_pipeline().nodes}
