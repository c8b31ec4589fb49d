"""Nodes of ``data_processing``: small pure functions of Spark DataFrames and parameters, kept by
concern in ``parsing`` (columns, parsed lines, their own reasons), ``returns`` (netting),
``split`` (copies, the clean and quarantine tables, the counts) and ``customers`` (purchase
days and the per-customer tables). This module is where pipelines and callers import them."""

from cltv.pipelines.data_processing.customers import (
    DAYS_PER_UNIT,
    add_rfm_segments,
    build_current_customer_features,
    build_current_customer_summary,
    build_customer_features,
    build_customer_history,
    build_customer_summary,
    compute_rfm_features,
    days_per_unit,
    purchase_occasions,
    resolve_analysis_period,
    summarise_purchase_days,
)
from cltv.pipelines.data_processing.parsing import (
    CONTENT_KEY,
    MAX_ABS_AMOUNT,
    OPTIONAL_COLUMNS,
    RAW_TEXT_COLUMNS,
    REGEX_PREFIX,
    REQUIRED_COLUMNS,
    InputDataError,
    column_mapping_problem,
    is_non_product,
    label_transactions,
    non_product_codes_problem,
    parsed_line_values,
    standardise_columns,
)
from cltv.pipelines.data_processing.returns import (
    RETURN_MODES,
    match_returns,
    with_netted_quantities,
)
from cltv.pipelines.data_processing.split import (
    mark_duplicate_lines,
    quarantine_metrics,
    split_clean_and_quarantine,
)

__all__ = [
    "CONTENT_KEY",
    "DAYS_PER_UNIT",
    "MAX_ABS_AMOUNT",
    "OPTIONAL_COLUMNS",
    "RAW_TEXT_COLUMNS",
    "REGEX_PREFIX",
    "REQUIRED_COLUMNS",
    "RETURN_MODES",
    "InputDataError",
    "add_rfm_segments",
    "build_current_customer_features",
    "build_current_customer_summary",
    "build_customer_features",
    "build_customer_history",
    "build_customer_summary",
    "column_mapping_problem",
    "compute_rfm_features",
    "days_per_unit",
    "is_non_product",
    "label_transactions",
    "mark_duplicate_lines",
    "match_returns",
    "non_product_codes_problem",
    "parsed_line_values",
    "purchase_occasions",
    "quarantine_metrics",
    "resolve_analysis_period",
    "split_clean_and_quarantine",
    "standardise_columns",
    "summarise_purchase_days",
    "with_netted_quantities",
]
