"""``scoring``: score and value every customer with what training promoted, no refit.

    kedro run --pipelines scoring

From the clean transactions already in ``transactions_clean`` (e.g. after
``ingest_increment``): the current features and summary, then the models behind the registry
alias ``champion`` (:class:`cltv.datasets.MlflowChampionDataset`): ``cltv_churn`` writes
``churn_predictions`` and ``cltv_value`` (the fit, with its covariance for the intervals)
writes ``customer_cltv``, distributed, with the model's own code in a pandas UDF; the churn
reasons come from the champion as in training (and ``summarise_churn_reasons``, their global
view). Nothing is read from ``data/`` but the clean lines and the current tables.
``drift_report`` then compares the three customer tables with what they held before
(``drift_report.json``) and names the versions that scored them (``model_versions.json``).
"""

from kedro.pipeline import Node, Pipeline

from cltv.pipelines import churn_modeling, cltv, data_processing, reporting
from cltv.pipelines.churn_modeling.nodes import score_customers
from cltv.pipelines.scoring.nodes import unpack_champions

CURRENT = ("analysis_period", "customer_features_current", "customer_summary_current")
CLTV_NODES = ("btyd_churn_scores_current", "predict_customer_value")


def create_pipeline(**kwargs) -> Pipeline:
    # check_champion needs nothing but the registry, so it is ready first, and Kedro runs the
    # ready nodes in name order: a run without the champions stops before any Spark work
    # (test_scoring_without_a_champion_stops_with_one_line)
    current = (
        data_processing.create_pipeline().from_inputs("transactions_clean").to_outputs(*CURRENT)
    )
    return (
        Pipeline(
            [
                Node(
                    unpack_champions,
                    inputs=[
                        "churn_champion",
                        "cltv_champion",
                        "params:churn_modeling",
                        "params:features",
                        "params:holdout_days",
                        "params:time_unit",
                    ],
                    outputs=[
                        "champion_churn_model",
                        "champion_selection",
                        "champion_cltv_model",
                        "champion_cltv_fit",
                        "model_versions",
                        "churn_contract",
                    ],
                    name="check_champion",
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
                    name="score_with_champion",
                ),
            ]
        )
        + current
        + churn_modeling.create_pipeline().only_nodes("summarise_churn_reasons")
        + cltv.create_pipeline().only_nodes(*CLTV_NODES)
        + reporting.create_pipeline().only_nodes("compare_with_previous_run")
    )
