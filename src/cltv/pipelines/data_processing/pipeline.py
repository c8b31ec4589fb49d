"""``data_processing``: clean, quarantine and net returns; the purchase days, then the
per-customer tables from them."""

from kedro.pipeline import Node, Pipeline

from cltv.pipelines.data_processing.nodes import (
    build_current_customer_features,
    build_current_customer_summary,
    build_customer_features,
    build_customer_history,
    build_customer_summary,
    check_holdout,
    label_transactions,
    mark_duplicate_lines,
    match_returns,
    quarantine_metrics,
    resolve_analysis_period,
    split_clean_and_quarantine,
    standardise_columns,
    summarise_purchase_days,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                standardise_columns,
                inputs=["raw_transactions", "params:columns", "params:input_path"],
                outputs="standardised_transactions",
                name="standardise_columns",
            ),
            Node(
                label_transactions,
                inputs=[
                    "standardised_transactions",
                    "params:cleaning.timestamp_formats",
                    "params:cleaning.latest_valid_date",
                    "params:cleaning.non_product_stock_codes",
                ],
                outputs="labelled_lines",
                name="label_transactions",
            ),
            Node(
                mark_duplicate_lines,
                inputs="labelled_lines",
                outputs=["labelled_transactions", "line_counts"],
                name="mark_duplicate_lines",
            ),
            Node(
                match_returns,
                inputs=["labelled_transactions", "params:cleaning.returns"],
                outputs="return_matches",
                name="match_returns",
            ),
            Node(
                split_clean_and_quarantine,
                inputs=[
                    "labelled_transactions",
                    "return_matches",
                    "line_counts",
                    "params:cleaning.returns",
                    "params:cleaning.max_quarantine_fraction",
                    "params:input_path",
                ],
                outputs=["transactions_clean", "transactions_quarantine", "quarantine_report"],
                name="split_clean_and_quarantine",
            ),
            Node(
                summarise_purchase_days,
                inputs="transactions_clean",
                outputs="purchase_days",
                name="summarise_purchase_days",
            ),
            Node(
                resolve_analysis_period,
                inputs=[
                    "purchase_days",
                    "params:observation_end",
                    "params:calibration_end",
                    "params:holdout_days",
                ],
                outputs="analysis_period",
                name="resolve_analysis_period",
            ),
            Node(
                # the training tables wait for the check, so a holdout no model can learn
                # from stops the run before either fit, with nothing of it written
                build_customer_summary,
                inputs=["purchase_days", "training_period", "params:time_unit"],
                outputs="customer_summary",
                name="build_customer_summary",
            ),
            Node(
                build_current_customer_summary,
                inputs=["purchase_days", "analysis_period", "params:time_unit"],
                outputs="customer_summary_current",
                name="build_current_customer_summary",
            ),
            Node(
                build_customer_history,
                inputs=["purchase_days", "analysis_period", "params:features"],
                outputs="customer_history",
                name="build_customer_history",
            ),
            Node(
                check_holdout,
                inputs=["customer_history", "analysis_period"],
                outputs="training_period",
                name="check_holdout",
            ),
            Node(
                build_customer_features,
                inputs=["customer_history", "training_period", "params:features"],
                outputs="customer_features",
                name="build_customer_features",
            ),
            Node(
                build_current_customer_features,
                inputs=["customer_history", "analysis_period", "params:features"],
                outputs="customer_features_current",
                name="build_current_customer_features",
            ),
            Node(
                quarantine_metrics,
                inputs="quarantine_report",
                outputs="quarantine_mlflow_metrics",
                name="log_quarantine_metrics",
            ),
        ]
    )
