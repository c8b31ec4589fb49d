"""A later batch of lines is merged once into the tables, and what follows recomputes."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
from deltalake import DeltaTable

from cltv.pipelines.ingest_increment.nodes import NETTING_COLUMNS
from cltv.synthetic import write_csv

from .conftest import copy_project, run_kedro
from .test_cleaning import PROJECT_CLEANING, clean_csv

CLEAN = "data/02_intermediate/transactions_clean"
QUARANTINE = "data/02_intermediate/transactions_quarantine"
SUMMARY = "data/03_primary/customer_summary"
PREDICTIONS = "data/07_model_output/churn_predictions"
CLTV = "data/07_model_output/customer_cltv"


def _lines(project, table, as_read=False) -> Counter:
    """The table's rows; ``as_read``: only the columns a line was read with, not what netting
    its returns derived (a batch's return changes a sale already in the table)."""
    frame = DeltaTable(str(project / table)).to_pandas()
    if as_read:
        frame = frame.drop(columns=[c for c in NETTING_COLUMNS if c in frame.columns])
    return Counter(map(tuple, frame.astype(str).itertuples(index=False)))


def _summary(project) -> pd.DataFrame:
    frame = DeltaTable(str(project / SUMMARY)).to_pandas()
    return frame.sort_values("customer_id").reset_index(drop=True)


def test_batch_is_merged_once_and_downstream_tables_recompute(
    spark, project_root, tmp_path, whole_run
):
    generated = tmp_path / "all.csv"
    write_csv(6000, generated, seed=21)
    header, *rows = generated.read_text().splitlines()
    base, batch = rows[:4000], rows[4000:] + rows[:50]  # the batch repeats 50 known lines
    files = {}
    for name, lines in {"base": base, "batch": batch, "full": rows}.items():
        files[name] = tmp_path / f"{name}.csv"
        files[name].write_text("\n".join([header, *lines]) + "\n")
    to_summary = {"to_outputs": ["customer_summary"]}

    incremental = copy_project(project_root, tmp_path / "incremental")
    run_kedro(incremental, "data_processing", input_path=str(files["base"]), **to_summary)
    before = _lines(incremental, CLEAN, as_read=True)
    # the whole ingest_increment pipeline: the merge, then churn, CLV and reporting
    run_kedro(incremental, "ingest_increment", input_path=str(files["batch"]))
    merged_clean, merged_quarantine = _lines(incremental, CLEAN), _lines(incremental, QUARANTINE)
    merged_summary = _summary(incremental)

    # the same lines as cleaning the whole file at once
    full = copy_project(project_root, tmp_path / "full")
    run_kedro(full, "data_processing", input_path=str(files["full"]), **to_summary)
    assert before < _lines(incremental, CLEAN, as_read=True)
    assert merged_clean == _lines(full, CLEAN)
    # the quarantine both ways: the full file's, less the later copies of base lines, which
    # the full file quarantines as duplicate_line and the batch skipped as known lines
    full_quarantine = _lines(full, QUARANTINE)
    assert not merged_quarantine - full_quarantine
    extra = full_quarantine - merged_quarantine
    reason = list(DeltaTable(str(full / QUARANTINE)).to_pandas().columns).index("reason")
    assert {line[reason] for line in extra} <= {"duplicate_line"}
    base_lines = set(base)
    copies_of_base = sum(line in base_lines for line in rows[4000:])
    assert sum(extra.values()) == copies_of_base
    pd.testing.assert_frame_equal(merged_summary, _summary(full))

    # the batch's quarantine report is the batch's own: as the cleaning nodes of
    # data_processing give it for the batch file alone, with the project's parameters
    report = json.loads(
        (incremental / "data/08_reporting/increment_quarantine_report.json").read_text()
    )
    _, _, report_alone = clean_csv(
        files["batch"],
        latest=PROJECT_CLEANING["latest_valid_date"],
        max_fraction=PROJECT_CLEANING["max_quarantine_fraction"],
        formats=PROJECT_CLEANING["timestamp_formats"],
        returns=PROJECT_CLEANING["returns"],
    )
    assert report["rows"] == len(batch) and report == json.loads(json.dumps(report_alone))

    # and everything after the merge was recomputed from the merged lines
    sold = DeltaTable(str(incremental / CLEAN)).to_pandas()
    customers = set(sold.loc[sold["quantity"] > sold["returned_quantity"], "customer_id"])
    base_customers = set(DeltaTable(str(incremental / CLEAN), version=0).to_pandas()["customer_id"])
    assert customers > base_customers  # the batch brought new customers
    for table in (PREDICTIONS, CLTV):
        assert set(DeltaTable(str(incremental / table)).to_pandas()["customer_id"]) == customers
    kpis = json.loads((incremental / "data/08_reporting/kpis.json").read_text())
    assert kpis["customers"] == len(customers)

    # re-adding the batch changes no table; the versions before stay readable
    run_kedro(incremental, "ingest_increment", input_path=str(files["batch"]), **to_summary)
    assert _lines(incremental, CLEAN) == merged_clean
    assert _lines(incremental, QUARANTINE) == merged_quarantine
    pd.testing.assert_frame_equal(_summary(incremental), merged_summary)
    first = DeltaTable(str(incremental / CLEAN), version=0).to_pandas()
    assert len(first) == sum(before.values())
