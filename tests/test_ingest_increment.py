"""A later batch of lines is merged once into the tables, and what follows recomputes."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from deltalake import DeltaTable

from cltv.pipelines.ingest_increment.nodes import NETTING_COLUMNS
from cltv.synthetic import write_csv

from .conftest import copy_project, run_kedro

CLEAN = "data/02_intermediate/transactions_clean"
QUARANTINE = "data/02_intermediate/transactions_quarantine"
SUMMARY = "data/03_primary/customer_summary"


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


def test_batch_is_merged_once_and_downstream_tables_recompute(spark, project_root, tmp_path):
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
    run_kedro(incremental, "ingest_increment", input_path=str(files["batch"]), **to_summary)
    merged_clean, merged_quarantine = _lines(incremental, CLEAN), _lines(incremental, QUARANTINE)
    merged_summary = _summary(incremental)

    # the same lines as cleaning the whole file at once
    full = copy_project(project_root, tmp_path / "full")
    run_kedro(full, "data_processing", input_path=str(files["full"]), **to_summary)
    assert before < _lines(incremental, CLEAN, as_read=True)
    assert merged_clean == _lines(full, CLEAN)
    # the full file also quarantines as duplicate_line the copies that the batch skipped
    assert not merged_quarantine - _lines(full, QUARANTINE)
    pd.testing.assert_frame_equal(merged_summary, _summary(full))

    # re-adding the batch changes no table; the versions before stay readable
    run_kedro(incremental, "ingest_increment", input_path=str(files["batch"]), **to_summary)
    assert _lines(incremental, CLEAN) == merged_clean
    assert _lines(incremental, QUARANTINE) == merged_quarantine
    pd.testing.assert_frame_equal(_summary(incremental), merged_summary)
    first = DeltaTable(str(incremental / CLEAN), version=0).to_pandas()
    assert len(first) == sum(before.values())
