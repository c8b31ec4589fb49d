"""What the churn reasons cost: ``score_customers`` with and without them, written to Delta.

Run in a project folder after a full ``kedro run`` (``make bench`` leaves one per size, e.g.
``/tmp/cltv-bench/project_10000000``): it loads the registry's churn champion and that run's
current customers through the project's catalog, then times ``score_customers`` as the
pipeline runs it (the reasons computed in the scoring pandas UDF and their global view
observed on the write), against the same node taking the path of a model that cannot be taken
apart (scores only, reason columns null). The two alternate, ``--pairs`` times, in one
process and one SparkSession, so that the box's drift falls on both alike; the first pair
also pays the session's warm-up. Not part of ``make test``:

    cd /tmp/cltv-bench/project_10000000 && python -m tests.benchmarks.reasons_cost --pairs 3

(with the repository on ``PYTHONPATH``, or ``python /path/to/reasons_cost.py``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from unittest import mock

from kedro.framework.project import configure_project
from kedro.framework.session import KedroSession

from cltv.datasets import SparkDeltaTableDataset
from cltv.pipelines.churn_modeling import nodes
from cltv.pipelines.churn_modeling import reasons as reasons_of
from cltv.pipelines.scoring.nodes import unpack_champions


def _timed_score(inputs: dict, explain: bool, target: Path) -> float:
    """Seconds to score every current customer and write the table (the global view read
    too, when there is one)."""
    start = time.perf_counter()
    if explain:
        predictions, importance = nodes.score_customers(**inputs)
    else:
        # the node's own branch for a model without reasons, taken on purpose
        with mock.patch.object(reasons_of, "explains", return_value=False):
            predictions, importance = nodes.score_customers(**inputs)
    SparkDeltaTableDataset(filepath=str(target), save_args={"mode": "overwrite"}).save(predictions)
    summary = importance.get()
    elapsed = time.perf_counter() - start
    if explain and not summary["observed"]:
        raise SystemExit("the write did not report the observed contributions")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, nargs="?", default=Path.cwd())
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args(argv)
    # as `python -m cltv` does: settings from the installed package, the folder as the project
    configure_project("cltv")
    with KedroSession.create(project_path=args.project) as session:
        context = session.load_context()
        catalog = context.catalog
        params = context.params
        model, selection, *_, run_contract = unpack_champions(
            catalog.load("churn_champion"),
            catalog.load("cltv_champion"),
            *(params[key] for key in ("churn_modeling", "features", "holdout_days", "time_unit")),
        )
        inputs = {
            "churn_model": model,
            "current_features": catalog.load("customer_features_current"),
            "btyd_scores_current": catalog.load("btyd_churn_scores_current"),
            "selection": selection,
            "run_contract": run_contract,
            "analysis_period": catalog.load("analysis_period"),
            "reasons": params["churn_modeling"]["reasons"],
        }
        customers = inputs["current_features"].count()
        print(f"{customers:,} customers, champion {selection['selected']}")
        scratch = Path(tempfile.mkdtemp(prefix="reasons_cost_"))
        try:
            rows = []
            for pair in range(args.pairs):
                with_s = _timed_score(inputs, True, scratch / f"with_{pair}")
                without_s = _timed_score(inputs, False, scratch / f"without_{pair}")
                rows.append((with_s, without_s))
                print(
                    f"pair {pair + 1}: with reasons {with_s:.2f} s, without {without_s:.2f} s, "
                    f"difference {with_s - without_s:.2f} s",
                    flush=True,
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        warm = rows[1:] or rows
        added = sum(w - wo for w, wo in warm) / len(warm)
        print(f"the reasons add {added:.2f} s (mean over the pairs after the first)")


if __name__ == "__main__":
    main()
