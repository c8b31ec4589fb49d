"""``churn_modeling``: label and split customers, fit and select a model, evaluate, score."""

from kedro.pipeline import Node, Pipeline

from cltv.pipelines.churn_modeling.contract import churn_contract
from cltv.pipelines.churn_modeling.nodes import (
    build_model_input,
    churn_mlflow_metrics,
    evaluate_churn_model,
    fit_churn_candidates,
    plot_churn_evaluation,
    promote_churn_model,
    record_model_promotion,
    score_customers,
    select_churn_model,
    settle_churn_promotion,
    summarise_churn_reasons,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                churn_contract,
                inputs=[
                    "params:churn_modeling",
                    "params:features",
                    "params:holdout_days",
                    "params:time_unit",
                ],
                outputs="churn_contract",
                name="churn_contract",
            ),
            Node(
                build_model_input,
                inputs=[
                    "customer_features",
                    "customer_summary",
                    "btyd_churn_scores",
                    "params:churn_modeling.split",
                ],
                outputs="churn_model_input",
                name="build_churn_model_input",
            ),
            Node(
                fit_churn_candidates,
                inputs=["churn_model_input", "params:churn_modeling"],
                outputs=["churn_candidates", "churn_candidate_fit_report"],
                name="fit_churn_candidates",
            ),
            Node(
                select_churn_model,
                inputs=[
                    "churn_candidates",
                    "churn_candidate_fit_report",
                    "churn_model_input",
                    "params:churn_modeling",
                    "churn_contract",
                ],
                outputs=["churn_model", "churn_model_selection"],
                name="select_churn_model",
            ),
            Node(
                evaluate_churn_model,
                inputs=[
                    "churn_model",
                    "churn_model_input",
                    "churn_model_selection",
                    "churn_candidate_fit_report",
                    "params:churn_modeling.evaluation",
                ],
                outputs=["churn_metrics", "churn_evaluation"],
                name="evaluate_churn_model",
            ),
            Node(
                churn_mlflow_metrics,
                inputs="churn_metrics",
                outputs="churn_mlflow_metrics",
                name="log_churn_metrics",
            ),
            Node(
                plot_churn_evaluation,
                inputs="churn_evaluation",
                outputs="churn_plots",
                name="plot_churn_evaluation",
            ),
            Node(
                promote_churn_model,
                inputs=[
                    "churn_model",
                    "churn_metrics",
                    "churn_model_input",
                    "churn_model_selection",
                    "params:churn_modeling.promotion",
                ],
                outputs=["churn_model_promotion", "champion_churn_model", "champion_selection"],
                name="promote_churn_model",
            ),
            Node(
                score_customers,
                inputs=[
                    "champion_churn_model",
                    "customer_features_current",
                    "btyd_churn_scores_current",
                    "champion_selection",
                    "churn_contract",
                    "analysis_period",
                    "params:churn_modeling.reasons",
                ],
                outputs=["churn_predictions", "churn_reason_observation"],
                name="score_customers",
            ),
            Node(
                summarise_churn_reasons,
                inputs="churn_reason_observation",
                outputs=[
                    "churn_reason_importance",
                    "churn_reason_mlflow_metrics",
                    "churn_reason_plots",
                ],
                name="summarise_churn_reasons",
            ),
            # once churn_predictions is written (churn_reason_importance is observed on it)
            Node(
                settle_churn_promotion,
                inputs=["churn_model_promotion", "churn_reason_importance"],
                outputs="promotion_mlflow_metrics",
                name="settle_churn_promotion",
            ),
            Node(
                record_model_promotion,
                inputs=["churn_model_promotion", "cltv_model_promotion"],
                outputs=["model_promotion", "model_versions"],
                name="record_model_promotion",
            ),
        ]
    )
