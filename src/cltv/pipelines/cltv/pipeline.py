"""``cltv``: fit every candidate purchase model on the calibration period and validate them on
the holdout; refit the chosen one on everything up to observation_end and value every
customer.

The customer tables hold the champion's numbers after the decision (``promote_cltv_model``):
this run's model when it takes the alias, else the version that keeps it."""

from kedro.pipeline import Node, Pipeline

from cltv.pipelines.cltv.nodes import (
    btyd_churn_scores,
    cltv_mlflow_metrics,
    cltv_value_model,
    fit_chosen_model,
    fit_cltv_models,
    model_parameters,
    plot_cltv_validation,
    predict_customer_value,
    promote_cltv_model,
    settle_cltv_promotion,
    validate_on_holdout,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                fit_cltv_models,
                inputs=["customer_summary", "params:cltv", "params:time_unit"],
                outputs="cltv_calibration_fit",
                name="fit_cltv_models_on_calibration",
            ),
            Node(
                validate_on_holdout,
                inputs=[
                    "customer_summary",
                    "cltv_calibration_fit",
                    "analysis_period",
                    "params:cltv.model_selection",
                    "params:cltv.uncertainty",
                ],
                # the naive baseline reads the same customers' holdout: one pass for both
                outputs=["cltv_validation", "cltv_naive_baseline"],
                name="validate_cltv_on_holdout",
            ),
            Node(
                plot_cltv_validation,
                inputs="cltv_validation",
                outputs="cltv_plots",
                name="plot_cltv_validation",
            ),
            Node(
                fit_chosen_model,
                inputs=[
                    "customer_summary_current",
                    "params:cltv",
                    "params:time_unit",
                    "cltv_validation",
                ],
                outputs="cltv_model_fit",
                name="fit_cltv_models",
            ),
            Node(
                model_parameters,
                inputs="cltv_model_fit",
                outputs="cltv_model_params",
                name="cltv_model_parameters",
            ),
            Node(
                cltv_value_model,
                inputs=[
                    "cltv_model_fit",
                    "cltv_naive_baseline",
                    "params:cltv.valuation",
                    "params:cltv.uncertainty",
                ],
                outputs="cltv_value_model",
                name="register_cltv_value_model",
            ),
            Node(
                promote_cltv_model,
                inputs=[
                    "cltv_value_model",
                    "customer_summary",
                    "cltv_calibration_fit",
                    "analysis_period",
                    "params:cltv.promotion",
                ],
                outputs=[
                    "cltv_model_promotion",
                    "champion_cltv_model",
                    "champion_cltv_fit",
                ],
                name="promote_cltv_model",
            ),
            Node(
                predict_customer_value,
                inputs=[
                    "customer_summary_current",
                    "champion_cltv_model",
                    "params:cltv.valuation.value_tiers",
                    "analysis_period",
                ],
                outputs=["customer_cltv", "cltv_total_value"],
                name="predict_customer_value",
            ),
            # once customer_cltv is written (cltv_total_value is saved after it)
            Node(
                settle_cltv_promotion,
                inputs=["cltv_model_promotion", "cltv_total_value"],
                outputs="cltv_promotion_mlflow_metrics",
                name="settle_cltv_promotion",
            ),
            Node(
                btyd_churn_scores,
                inputs=["customer_summary", "cltv_calibration_fit", "analysis_period"],
                outputs="btyd_churn_scores",
                name="btyd_churn_scores",
            ),
            Node(
                btyd_churn_scores,
                inputs=["customer_summary_current", "champion_cltv_fit", "analysis_period"],
                outputs="btyd_churn_scores_current",
                name="btyd_churn_scores_current",
            ),
            Node(
                cltv_mlflow_metrics,
                inputs=["cltv_model_fit", "cltv_validation"],
                outputs="cltv_mlflow_metrics",
                name="log_cltv_metrics",
            ),
        ]
    )
