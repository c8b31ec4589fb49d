"""The run's settings as typed models, checked when the Kedro context is created: before any
Spark work.

Each section of ``conf/base/parameters*.yml`` is a pydantic model here, with its types,
defaults (those of the YAML), allowed values and the rules between fields. A bad run is
reported as ``parameter <name>: <what is wrong>``, the name spelt as ``--params`` spells it,
every problem in one error, so a user fixes ``--params`` or the YAML once. The nodes keep
reading the plain parameters; these models are the one definition of what they may hold.

Every field carries its class (:data:`SETTING_CLASSES`), which says whether it is part of a
model: :func:`settings_classes` lists them and :func:`contract_settings` gives the churn
model's contract. ``kedro cltv settings-schema`` writes the JSON schema editors complete from.

The module needs the parameters' vocabulary, not the models behind it (scipy, scikit-learn,
MLflow's model flavors): the pipelines import the vocabulary from here.
"""

import difflib
import json
import re
from collections.abc import Mapping
from datetime import date
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from cltv.pipelines.data_processing.nodes import (
    DAYS_PER_UNIT,
    RETURN_MODES,
    column_mapping_problem,
    non_product_codes_problem,
)

# ------------------------------------------------------------------ classes of settings
SETTING_CLASSES = {
    "contract": "changes what a prediction means or what the model reads: part of the model",
    "comparable": "changes only how well a model predicts: models differing in it are ranked "
    "by their scores",
    "run": "how this run reads, reports or decides; part of no model",
}
# what settings_classes says of a field that declares no class (a test fails on it)
UNCLASSIFIED = "unclassified"


def _setting(setting_class: str, default: Any, **field: Any) -> Any:
    return Field(default, json_schema_extra={"setting": setting_class}, **field)


def _contract(default: Any, **field: Any) -> Any:
    return _setting("contract", default, **field)


def _comparable(default: Any, **field: Any) -> Any:
    return _setting("comparable", default, **field)


def _run(default: Any, **field: Any) -> Any:
    return _setting("run", default, **field)


# ------------------------------------------------------------------ vocabulary
# the purchase models (cltv.models.value_model.PURCHASE_MODELS holds their classes)
PurchaseModel = Literal["bgnbd", "mbgnbd", "pnbd"]
PURCHASE_MODELS = get_args(PurchaseModel)
# rules of cltv.model_selection besides naming a candidate: the lowest holdout error of counts
SELECTION_RULES = {"lowest_mae": "mae", "lowest_rmse": "rmse"}
ModelSelection = Literal[(*SELECTION_RULES, *PURCHASE_MODELS)]
# cltv.promotion.metric: "holdout_revenue_" + a key of cltv.metrics.value_rankings
CltvPromotionMetric = Literal[
    "holdout_revenue_top_20pct", "holdout_revenue_top_10pct", "holdout_revenue_gini"
]
PROMOTION_METRICS = get_args(CltvPromotionMetric)
ChurnPromotionMetric = Literal["pr_auc", "roc_auc"]
# BG/NBD's outputs offered to the churn model as features
BtydChurnFeature = Literal["btyd_p_alive", "btyd_expected_purchases"]
BTYD_CHURN_FEATURES = get_args(BtydChurnFeature)
# the churn inputs a retention team can act on (churn_modeling.reasons.actionable_levers):
# recency, frequency, spend and recent activity; not where a customer lives, how long ago they
# first bought, or what a model or a segment makes of them
ACTIONABLE_LEVERS = (
    "recency_days",
    "n_purchase_days",
    "n_invoices",
    "mean_days_between_purchases",
    "monetary_total",
    "monetary_mean",
    "purchases_last_*d",
    "revenue_last_*d",
    "revenue_trend_*d",
)
ChurnEngine = Literal["driver", "spark_ml"]
CHURN_ENGINES = get_args(ChurnEngine)
# balanced: each class weighs n / (2 n_class), as scikit-learn's class_weight does
ClassWeight = Literal["balanced", "none"]
CLASS_WEIGHTS = get_args(ClassWeight)
# cltv.metrics.choose_threshold
ThresholdRule = Literal["max_youden", "max_f1", "top_fraction", "fixed"]
THRESHOLD_RULES = get_args(ThresholdRule)
# how the retention target list can be ordered: by the expected value at risk, or by its lower
# bound (a customer whose value is uncertain does not outrank one whose value is solid)
TargetRanking = Literal["value_at_risk", "value_at_risk_lower"]
TARGET_RANKINGS = get_args(TargetRanking)
TimeUnit = Literal[tuple(DAYS_PER_UNIT)]
TIME_UNITS = get_args(TimeUnit)
ReturnMode = Literal[RETURN_MODES]


class ParameterError(ValueError):
    """One or more parameters are invalid; the message names each of them."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def _iso_date(value: Any) -> Any:
    # YAML gives a date for 2011-12-09, --params a string; pydantic alone would also take a
    # number as seconds since 1970
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)) if isinstance(value, str) else _not_a_date(value)
    except ValueError:
        return _not_a_date(value)


def _not_a_date(value: Any) -> Any:
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")


OptionalDate = Annotated[date | None, BeforeValidator(_iso_date)]
Probability = Annotated[float, Field(ge=0, le=1)]


class _Section(BaseModel):
    # a key no model reads is a typo (churn_modeling.treshold): reported, not ignored; defaults
    # are checked too, so that a rule between fields sees a value the run left at its default
    model_config = ConfigDict(extra="forbid", validate_default=True)


# ------------------------------------------------------------------ data processing
class Columns(_Section):
    """Our column name: the CSV's column name (defaults: UCI Online Retail II)."""

    invoice: str = _run("Invoice")
    stock_code: str = _run("StockCode")
    description: str = _run("Description")
    quantity: str = _run("Quantity")
    invoice_date: str = _run("InvoiceDate")
    price: str = _run("Price")
    customer_id: str = _run("Customer ID")
    country: str = _run("Country")

    @model_validator(mode="before")
    @classmethod
    def _known_and_given(cls, columns: Any) -> Any:
        problem = column_mapping_problem(dict(columns)) if isinstance(columns, Mapping) else None
        if problem:
            raise ValueError(problem)
        return columns


class Returns(_Section):
    mode: ReturnMode = _run("net", description="net | ignore (returns set apart, sales whole)")
    max_days: float | None = _run(
        None, gt=0, description="a sale more than this many days before a return is not matched"
    )


class Cleaning(_Section):
    # how the lines are read and cleaned: the same model reads whatever the cleaning left
    timestamp_formats: list[str] = _run(
        [
            "yyyy-MM-dd HH:mm:ss",
            "yyyy-MM-dd HH:mm",
            "yyyy-MM-dd'T'HH:mm:ss",
            "yyyy-MM-dd",
            "M/d/yyyy H:mm",
            "M/d/yyyy H:mm:ss",
        ],
        min_length=1,
        description="Spark datetime patterns, tried in order",
    )
    latest_valid_date: OptionalDate = _run(
        None, description="later lines are future_date; null: today (UTC)"
    )
    max_quarantine_fraction: Probability = _run(
        0.5, description="stop the run when a larger share of rows is quarantined"
    )
    returns: Returns = Returns()
    non_product_stock_codes: list[str] = _run(
        [
            "POST",
            "DOT",
            "C2",
            "M",
            "D",
            "S",
            "B",
            "PADS",
            "CRUK",
            "BANK CHARGES",
            "AMAZONFEE",
            "ADJUST",
            "ADJUST2",
            "SP1002",
            "re:^gift_0001_",
            "re:^DCGS",
            r"re:^TEST\d*$",
        ],
        description="exact codes or re:<regular expression>, quarantined as non_product",
    )

    @field_validator("non_product_stock_codes", mode="before")
    @classmethod
    def _codes(cls, codes: Any) -> Any:
        problem = non_product_codes_problem(codes)
        if problem:
            raise ValueError(problem)
        return codes


RfmScore = Annotated[int, Field(ge=1, le=5)]


class RfmSegment(_Section):
    # the items of features.rfm_segments: one value, classed as the list is
    name: str = _contract(..., min_length=1)
    recency: list[RfmScore] = _contract(..., min_length=1, description="R quintile scores")
    frequency: list[RfmScore] = _contract(..., min_length=1, description="F quintile scores")


class Features(_Section):
    # the definitions of the churn model's inputs: another window is another column
    windows_days: list[Annotated[int, Field(gt=0)]] = _contract(
        [30, 90, 180],
        min_length=1,
        description="recent-activity windows; the largest also gives the trend",
    )
    rfm_segments: list[RfmSegment] = _contract(
        [
            RfmSegment(name="Champions", recency=[5], frequency=[4, 5]),
            RfmSegment(name="Loyal Customers", recency=[3, 4], frequency=[4, 5]),
            RfmSegment(name="Potential Loyalists", recency=[4, 5], frequency=[2, 3]),
            RfmSegment(name="New Customers", recency=[5], frequency=[1]),
            RfmSegment(name="Promising", recency=[4], frequency=[1]),
            RfmSegment(name="Need Attention", recency=[3], frequency=[3]),
            RfmSegment(name="About To Sleep", recency=[3], frequency=[1, 2]),
            RfmSegment(name="Cannot Lose Them", recency=[1, 2], frequency=[5]),
            RfmSegment(name="At Risk", recency=[1, 2], frequency=[3, 4]),
            RfmSegment(name="Hibernating", recency=[1, 2], frequency=[1, 2]),
        ],
        min_length=1,
        description="named segments on the recency x frequency score grid, first match wins",
    )


# ------------------------------------------------------------------ churn modeling
class ChurnFeatures(_Section):
    numeric: list[str] = _contract(
        [
            "recency_days",
            "tenure_days",
            "n_purchase_days",
            "is_repeat_customer",
            "monetary_total",
            "monetary_mean",
            "n_invoices",
            "avg_lines_per_invoice",
            "avg_items_per_invoice",
            "distinct_products",
            "mean_days_between_purchases",
            "purchases_last_30d",
            "revenue_last_30d",
            "purchases_last_90d",
            "revenue_last_90d",
            "purchases_last_180d",
            "revenue_last_180d",
            "revenue_trend_180d",
        ],
        description="columns of customer_features the models see",
    )
    categorical: list[str] = _contract(
        ["country", "rfm_segment"], description="one-hot encoded columns of customer_features"
    )


class SplitFractions(_Section):
    train: float = _comparable(0.6, gt=0)
    validation: float = _comparable(0.2, gt=0)
    test: float = _comparable(0.2, gt=0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitFractions":
        total = self.train + self.validation + self.test
        if abs(total - 1) > 1e-9:
            raise ValueError(f"{self.model_dump()} must sum to 1 (they sum to {total:g})")
        return self


SPLITS = tuple(SplitFractions.model_fields)


class Split(_Section):
    # which customers train the model, not what it predicts
    seed: int = _comparable(42)
    fractions: SplitFractions = SplitFractions()


class DriverLogisticRegression(_Section):
    reg_param: float = _comparable(0.01, ge=0, description="overall regularisation strength")
    elastic_net_param: float = _comparable(0.5, ge=0, le=1, description="0 = L2, 1 = L1")
    max_iter: int = _comparable(1000, gt=0)


class SparkLogisticRegression(DriverLogisticRegression):
    max_iter: int = _comparable(100, gt=0)


class XGBoost(_Section):
    max_iter: int = _comparable(300, gt=0, description="trees at most")
    early_stopping_rounds: int | None = _comparable(
        20, gt=0, description="stop when validation log loss has not improved for this many"
    )
    max_depth: int = _comparable(4, gt=0)
    step_size: float = _comparable(0.1, gt=0)
    subsampling_rate: float = _comparable(0.8, gt=0, le=1)
    seed: int = _comparable(42)
    n_jobs: int | None = _comparable(None, description="threads; null = all cores")


class GradientBoostedTrees(_Section):
    max_iter: int = _comparable(40, gt=0)
    max_depth: int = _comparable(4, gt=0)
    step_size: float = _comparable(0.1, gt=0, le=1)
    subsampling_rate: float = _comparable(0.8, gt=0, le=1)
    validation_tol: float | None = _comparable(
        0.001, gt=0, description="relative validation-loss gain to go on; null: all max_iter"
    )
    seed: int = _comparable(42)


class DriverCandidates(_Section):
    logistic_regression: DriverLogisticRegression = DriverLogisticRegression()
    xgboost: XGBoost = XGBoost()


class SparkMlCandidates(_Section):
    logistic_regression: SparkLogisticRegression = SparkLogisticRegression()
    gradient_boosted_trees: GradientBoostedTrees = GradientBoostedTrees()


class ChurnCandidates(_Section):
    driver: DriverCandidates = DriverCandidates()
    spark_ml: SparkMlCandidates = SparkMlCandidates()


# churn_modeling.engine and the candidates each knows
CHURN_CANDIDATES = {
    engine: tuple(ChurnCandidates.model_fields[engine].annotation.model_fields)
    for engine in CHURN_ENGINES
}


class Threshold(_Section):
    rule: ThresholdRule = _contract(
        "max_youden", description="max_youden | max_f1 | top_fraction | fixed"
    )
    value: float | None = _contract(
        None, description="top_fraction: share of customers flagged; fixed: the probability"
    )

    @field_validator("value")
    @classmethod
    def _value_for_rule(cls, value: float | None, info: ValidationInfo) -> float | None:
        rule = info.data.get("rule")
        if rule == "fixed" and (value is None or not 0 <= value <= 1):
            raise ValueError(f"rule fixed needs a probability between 0 and 1, not {value!r}")
        if rule == "top_fraction" and (value is None or not 0 < value <= 1):
            raise ValueError(
                f"rule top_fraction needs the share flagged, above 0 and at most 1, not {value!r}"
            )
        return value


class Evaluation(_Section):
    # what the run reports about the model, not the model
    top_fraction: float = _run(0.1, gt=0, le=1, description="lift and capture rate in the top")
    calibration_bins: int = _run(10, ge=2)
    curve_points: int = _run(200, ge=2, description="ROC / PR points kept for plots")


class RiskBand(_Section):
    name: str = _contract(..., min_length=1)
    min_probability: Probability = _contract(...)


class Reasons(_Section):
    # how many reasons the tables show, and which inputs may be a lever: the explanation of a
    # prediction, not the prediction
    churn_reasons: int = _run(3, gt=0)
    retention_levers: int = _run(1, gt=0)
    actionable_levers: list[Annotated[str, Field(min_length=1)]] = _run(
        list(ACTIONABLE_LEVERS),
        description="the inputs a retention team can act on, as shell patterns "
        "(revenue_last_*d); retention_levers are chosen among them alone",
    )


class ChurnPromotion(_Section):
    # how the run decides between two models, part of neither
    registered_model: str = _run("cltv_churn", min_length=1)
    alias: str = _run("champion", min_length=1)
    metric: ChurnPromotionMetric = _run("pr_auc")
    min_gain: float = _run(0.005, ge=0)


class ChurnModeling(_Section):
    features: ChurnFeatures = ChurnFeatures()
    btyd_features: list[BtydChurnFeature] = _contract(
        list(BTYD_CHURN_FEATURES),
        description="BG/NBD outputs offered as extra features ([] = not offered)",
    )
    split: Split = Split()
    # changes every probability (not the ranking), which the threshold and risk bands read
    class_weight: ClassWeight = _contract("none")
    engine: ChurnEngine = _comparable("driver")
    max_train_customers: int = _comparable(
        500000, ge=100, description="driver engine: a seeded sample of this size above it"
    )
    candidates: ChurnCandidates = ChurnCandidates()
    threshold: Threshold = Threshold()
    evaluation: Evaluation = Evaluation()
    risk_bands: list[RiskBand] = _contract(
        [
            RiskBand(name="high", min_probability=0.7),
            RiskBand(name="medium", min_probability=0.4),
            RiskBand(name="low", min_probability=0.0),
        ],
        min_length=1,
        description="the first band whose lower bound the probability reaches",
    )
    reasons: Reasons = Reasons()
    promotion: ChurnPromotion = ChurnPromotion()


# ------------------------------------------------------------------ cltv
class Penalizer(_Section):
    penalizer: float = _comparable(0.0, ge=0, description="ridge on the log-parameters")


class Uncertainty(_Section):
    interval: float = _contract(0.8, gt=0, lt=1, description="central share of the draws")
    # how precisely the interval is estimated, not which interval
    draws: int = _comparable(200, gt=0)
    seed: int = _comparable(18, ge=0)


class ValueTier(_Section):
    name: str = _contract(..., min_length=1)
    share: float = _contract(..., gt=0, le=1)


class Valuation(_Section):
    horizon_months: int = _contract(12, gt=0)
    discount_rate: float = _contract(0.01, ge=0, description="per month")
    margin: float = _contract(1.0, gt=0, description="profit share of revenue")
    value_tiers: list[ValueTier] = _contract(
        [
            ValueTier(name="top_1pct", share=0.01),
            ValueTier(name="top_5pct", share=0.05),
            ValueTier(name="top_20pct", share=0.20),
        ],
        description="tiers by CLV rank, largest first; everyone else is rest",
    )


class CltvPromotion(_Section):
    registered_model: str = _run("cltv_value", min_length=1)
    alias: str = _run("champion", min_length=1)
    metric: CltvPromotionMetric = _run("holdout_revenue_top_20pct")
    min_gain: float = _run(0.005, ge=0)


class Cltv(_Section):
    candidates: list[PurchaseModel] = _comparable(list(PURCHASE_MODELS), min_length=1)
    model_selection: ModelSelection = _comparable(
        "lowest_mae", description="lowest_mae | lowest_rmse | a candidate's name to force it"
    )
    bgnbd: Penalizer = Penalizer()
    mbgnbd: Penalizer = Penalizer()
    pnbd: Penalizer = Penalizer()
    gamma_gamma: Penalizer = Penalizer()
    uncertainty: Uncertainty = Uncertainty()
    valuation: Valuation = Valuation()
    promotion: CltvPromotion = CltvPromotion()

    @field_validator("model_selection")
    @classmethod
    def _rule_or_candidate(cls, selection: str, info: ValidationInfo) -> str:
        candidates = info.data.get("candidates")
        if candidates is not None and selection not in (*SELECTION_RULES, *candidates):
            raise ValueError(
                f"{selection!r} is not one of {', '.join([*SELECTION_RULES, *candidates])}"
                " (a purchase model must be one of cltv.candidates)"
            )
        return selection


# ------------------------------------------------------------------ reporting
class Targets(_Section):
    min_churn_probability: Probability = _run(0.4)
    limit: int = _run(200, gt=0)
    rank_by: TargetRanking = _run("value_at_risk")


class Drift(_Section):
    bins: int = _run(10, ge=2, description="numeric columns are cut at the previous deciles")
    psi_warning: float = _run(0.25, gt=0)
    changed_share_warning: float = _run(0.2, gt=0)


class Reporting(_Section):
    cohort_months: int = _run(12, gt=0)
    top_countries: int = _run(10, gt=0)
    targets: Targets = Targets()
    drift: Drift = Drift()


# ------------------------------------------------------------------ the run
class Settings(BaseModel):
    """All the parameters of a run (``conf/*/parameters*.yml`` merged with ``--params``)."""

    # keys besides these sections are not ours to judge (Kedro's, a plugin's)
    model_config = ConfigDict(extra="ignore", validate_default=True)

    input_path: str = _run(
        "data/01_raw/online_retail_ii_sample.csv", description="raw CSV of invoice lines"
    )
    time_unit: TimeUnit = _contract("W", description="D (days) or W (weeks = days / 7)")
    holdout_days: int = _contract(90, gt=0, description="the churn label's horizon")
    # the data windows: where the data ends, not what a model reads
    observation_end: OptionalDate = _comparable(
        None, description="last day of data used; null: the last transaction date"
    )
    calibration_end: OptionalDate = _comparable(
        None, description="last day of the calibration period; null: observation_end - holdout"
    )
    columns: Columns = Columns()
    cleaning: Cleaning = Cleaning()
    features: Features = Features()
    churn_modeling: ChurnModeling = ChurnModeling()
    cltv: Cltv = Cltv()
    reporting: Reporting = Reporting()

    @field_validator("calibration_end")
    @classmethod
    def _before_observation_end(cls, end: date | None, info: ValidationInfo) -> date | None:
        observation_end = info.data.get("observation_end")  # absent when it is bad itself
        if end is not None and observation_end is not None and end >= observation_end:
            raise ValueError(f"{end} must be before observation_end ({observation_end})")
        return end


# ------------------------------------------------------------------ checking
def validate_parameters(params: Mapping[str, Any]) -> None:
    """Raise :class:`ParameterError` naming every invalid parameter."""
    _settings(params)


def problems(params: Mapping[str, Any]) -> list[str]:
    """Everything wrong with ``params`` (the merged parameters of a run), as messages."""
    try:
        _settings(params)
    except ParameterError as error:
        return error.problems
    return []


def _settings(params: Mapping[str, Any]) -> Settings:
    try:
        return Settings.model_validate(dict(params))
    except ValidationError as error:
        found = [_problem(one) for one in error.errors(include_url=False)]
        raise ParameterError(*found) from None


def _problem(error: Mapping[str, Any]) -> str:
    """``parameter <dotted name>: <what is wrong>`` of one of pydantic's errors."""
    loc = tuple(error["loc"])
    # --params cannot name a list's item: the list is named, the item said in the message
    index = next((i for i, part in enumerate(loc) if isinstance(part, int)), len(loc))
    name = ".".join(map(str, loc[:index])) or "parameters"
    what = _what_is_wrong(error, loc)
    if len(loc) > index + 1:
        what = f"item {loc[index] + 1}, {'.'.join(map(str, loc[index + 1 :]))}: {what}"
    return f"parameter {name}: {what}"


_NUMBER_ERRORS = {
    "int_type",
    "int_parsing",
    "int_from_float",
    "float_type",
    "float_parsing",
    "finite_number",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
}


# what pydantic's other errors mean, said to the user ({value}: what was given)
_PLAIN_PROBLEMS = {
    "missing": "is missing",
    "too_short": "must not be empty",
    "list_type": "{value!r} must be a list",
    "model_type": "{value!r} must be a mapping of settings",
    "model_attributes_type": "{value!r} must be a mapping of settings",
    "dict_type": "{value!r} must be a mapping",
    "string_type": "{value!r} must be text",
    "bool_type": "{value!r} must be true or false",
    "bool_parsing": "{value!r} must be true or false",
}


def _what_is_wrong(error: Mapping[str, Any], loc: tuple) -> str:
    kind, value, context = error["type"], error.get("input"), error.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):  # our validators' own words
        return str(context.get("error", error["msg"]))
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        return f"{value!r} is not one of {', '.join(allowed)}"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in _NUMBER_ERRORS:
        return _number_problem(kind, value, loc, context)
    plain = _PLAIN_PROBLEMS.get(kind)
    return plain.format(value=value) if plain else f"{value!r}: {error['msg']}"


def _unknown_key(loc: tuple) -> str:
    known = list(_model_at(loc[:-1]).model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return "unknown setting; " + (
        f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
    )


def _number_problem(kind: str, value: Any, loc: tuple, context: Mapping) -> str:
    found, field = _walk(loc)
    bounds = {
        key: getattr(rule, key)
        for rule in (field.metadata if field else [])
        for key in ("gt", "ge", "lt", "le")
        if getattr(rule, key, None) is not None
    } or {key: context[key] for key in ("gt", "ge", "lt", "le") if key in context}
    if get_origin(found) is Annotated:
        found = get_args(found)[0]
    a_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind.startswith("int") or found is int:
        phrase = "a whole number"
    else:  # a number out of bounds is told its bounds alone
        phrase = "" if a_number and bounds else "a number"
    if phrase and bounds:
        phrase += ", " if set(bounds) == {"ge"} else " "
    phrase += _bounds_phrase(bounds)
    if field is not None and _allows(field.annotation, NoneType):
        phrase += ", or null"
    return f"{value!r} must be {phrase}"


def _bounds_phrase(bounds: Mapping[str, Any]) -> str:
    if "ge" in bounds and "le" in bounds:
        return f"between {bounds['ge']} and {bounds['le']}"
    lower = f"above {bounds['gt']}" if "gt" in bounds else None
    lower = f"{bounds['ge']} or above" if "ge" in bounds else lower
    upper = f"below {bounds['lt']}" if "lt" in bounds else None
    upper = f"at most {bounds['le']}" if "le" in bounds else upper
    return " and ".join(part for part in (lower, upper) if part)


def _allows(annotation: Any, kind: type) -> bool:
    if annotation is kind:
        return True
    return get_origin(annotation) in (Union, UnionType) and kind in get_args(annotation)


def _walk(loc: tuple) -> tuple[Any, FieldInfo | None]:
    """The type found at ``loc`` from :class:`Settings`, and the field that declares it."""
    current: Any = Settings
    field = None
    for part in loc:
        current = _without_none(current)
        if isinstance(part, int) and get_origin(current) is list:
            current, field = get_args(current)[0], None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None, None
            current = field.annotation
        else:
            return None, None
    return _without_none(current), field


def _model_at(loc: tuple) -> type[BaseModel]:
    return _walk(loc)[0]


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        left = [arg for arg in get_args(annotation) if arg is not NoneType]
        return left[0] if len(left) == 1 else annotation
    return annotation


# ------------------------------------------------------------------ classes
def settings_classes() -> dict[str, str]:
    """Every setting's dotted name (as ``--params`` spells it) and its class, a key of
    :data:`SETTING_CLASSES` (:data:`UNCLASSIFIED` for a field that declares none).

    A field holding a section (``churn_modeling.threshold``) is not a setting: its fields are.
    A list of sections (``churn_modeling.risk_bands``) is one setting, and its items' fields
    are listed too as ``<list>[].<field>`` (``churn_modeling.risk_bands[].min_probability``):
    they belong to the list's value and so share its class.
    """
    return dict(_classes(Settings, ""))


def _classes(model: type[BaseModel], prefix: str):
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = _without_none(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _classes(annotation, f"{dotted}.")
            continue
        yield dotted, (field.json_schema_extra or {}).get("setting", UNCLASSIFIED)
        if get_origin(annotation) is list:
            (item,) = get_args(annotation)
            if isinstance(item, type) and issubclass(item, BaseModel):
                yield from _classes(item, f"{dotted}[].")


# the parts of a run's settings the churn model is trained and scored under
CHURN_CONTRACT_SECTIONS = ("churn_modeling", "features", "holdout_days", "time_unit")


def contract_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The churn model's contract: ``{dotted name: value}`` of every ``contract`` setting of
    ``churn_modeling``, ``features``, ``holdout_days`` and ``time_unit``.

    ``params`` are the run's merged parameters (``context.params``: every top-level section);
    a setting they leave out has its default. Values are JSON-serialisable: dates as ISO
    strings, lists as lists, and a list of sections (``churn_modeling.risk_bands``,
    ``features.rfm_segments``) as one list of dicts. Two models trained under different
    contracts predict different things, so their scores are not compared. Raises
    :class:`ParameterError` when ``params`` are invalid.
    """
    values = _settings(params).model_dump(mode="json")
    contract = {}
    for name, setting_class in settings_classes().items():
        if setting_class != "contract" or "[]" in name:
            continue
        if name.split(".")[0] not in CHURN_CONTRACT_SECTIONS:
            continue
        value: Any = values
        for key in name.split("."):
            value = value[key]
        contract[name] = value
    return contract


def settings_schema() -> str:
    """The JSON schema of the run's parameters, for editors (``kedro cltv settings-schema``,
    committed as ``conf/parameters.schema.json``): each field's type, default, allowed values
    and, as ``setting``, its class."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Settings.model_json_schema(),
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
