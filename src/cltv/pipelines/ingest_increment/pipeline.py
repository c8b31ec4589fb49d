"""``ingest_increment``: clean a batch of new lines, merge it into the transaction tables, and
recompute everything downstream from the merged tables.

    kedro run --pipelines ingest_increment --params input_path=/abs/new_lines.csv

The batch goes through the same cleaning nodes as ``data_processing`` (its quarantine share
and report are the batch's own); only lines not already in ``transactions_clean`` /
``transactions_quarantine`` are added, so re-adding a batch changes nothing. Returns are then
netted again over the merged lines: a batch's return may reverse a sale already in the table.
"""

from kedro.pipeline import Node, Pipeline, pipeline

from cltv.pipelines import churn_modeling, cltv, data_processing, reporting
from cltv.pipelines.ingest_increment.nodes import merge_new_lines, renet_returns

CLEANING_NODES = (
    "standardise_columns",
    "label_transactions",
    "mark_duplicate_lines",
    "match_returns",
    "split_clean_and_quarantine",
    "log_quarantine_metrics",
)


def create_pipeline(**kwargs) -> Pipeline:
    processing = data_processing.create_pipeline()
    cleaning = processing.only_nodes(*CLEANING_NODES)
    batch_cleaning = pipeline(
        cleaning,
        inputs={"raw_transactions": "raw_increment"},
        outputs={
            "transactions_clean": "increment_clean",
            "transactions_quarantine": "increment_quarantine",
            "quarantine_report": "increment_quarantine_report",
            "quarantine_mlflow_metrics": "quarantine_mlflow_metrics",
        },
        namespace="increment",
        parameters={p for n in cleaning.nodes for p in n.inputs if p.startswith("params:")},
    )
    merge = Pipeline(
        [
            Node(
                merge_new_lines,
                inputs=["transactions_clean_before_increment", "increment_clean"],
                outputs="merged_clean_lines",
                name="merge_clean_lines",
            ),
            Node(
                merge_new_lines,
                inputs=["transactions_quarantine_before_increment", "increment_quarantine"],
                outputs="merged_quarantined_lines",
                name="merge_quarantined_lines",
            ),
            Node(
                renet_returns,
                inputs=[
                    "merged_clean_lines",
                    "merged_quarantined_lines",
                    "params:cleaning.timestamp_formats",
                    "params:cleaning.returns",
                ],
                outputs=["transactions_clean", "transactions_quarantine"],
                name="renet_returns",
            ),
        ]
    )
    downstream = (
        (processing - cleaning)
        + churn_modeling.create_pipeline()
        + cltv.create_pipeline()
        + reporting.create_pipeline()
    )
    return batch_cleaning + merge + downstream
