"""Binary-classification metrics with scikit-learn's definitions, how well a score ranks
customers by value (:func:`value_rankings`, in Spark), and a Spark aggregation over whole
tables (:func:`population_stability`).

The churn metrics run on the driver over one collected pandas table of scored customers (the
held-out split: a few thousand rows on the sample, ~100k at 10M lines), so a whole evaluation
is one Spark job, the one that scores and collects. All of them start from one small table,
:func:`score_table`: one row per distinct score with the true and false positives of flagging
every case that scores at least that much.

Definitions: ``roc_auc`` is the area under the ROC curve with ties counted half (the
Mann-Whitney statistic, ``sklearn.metrics.roc_auc_score``); ``pr_auc`` is average precision
(``sklearn.metrics.average_precision_score``: the precision at each distinct score weighted by
the recall it adds); ``log_loss`` clips probabilities to ``[1e-15, 1 - 1e-15]``; ``brier`` is
the mean squared error of the probability. Lift and capture rate in the top fraction count a
tie group straddling the cut in proportion (the expectation over random tie-breaking).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

LOG_LOSS_EPSILON = 1e-15


def score_table(
    predictions: pd.DataFrame, label: str = "label", score: str = "score"
) -> pd.DataFrame:
    """One row per distinct ``score``, highest first: ``pos``/``neg`` at that score and the
    cumulative ``tp``/``fp`` of the rule "flag when score >= this score" (integers)."""
    positive = predictions[label].to_numpy(dtype="int64")
    by_score = (
        pd.DataFrame({"score": predictions[score].to_numpy(dtype="float64"), "pos": positive})
        .assign(neg=1 - positive)
        .groupby("score", sort=True)
        .sum()
        .iloc[::-1]
        .reset_index()
    )
    by_score["tp"] = by_score["pos"].cumsum()
    by_score["fp"] = by_score["neg"].cumsum()
    return by_score


def _totals(table: pd.DataFrame) -> tuple[int, int]:
    return int(table["pos"].sum()), int(table["neg"].sum())


def ranking_metrics(table: pd.DataFrame, top_fraction: float = 0.1) -> dict[str, Any]:
    """ROC-AUC, average precision, and lift / capture rate in the top ``top_fraction``."""
    n_pos, n_neg = _totals(table)
    n = n_pos + n_neg
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"ranking metrics need both classes; got {n_pos} positive, {n_neg} negative"
        )
    pos, neg, tp, fp = (table[c].to_numpy(dtype="int64") for c in ("pos", "neg", "tp", "fp"))
    # each negative at a score beats the positives above it and ties with half of its own
    auc2PN = int((neg * (2 * tp - pos)).sum())
    ap_P = float((pos * tp / (tp + fp)).sum())
    n_top = math.ceil(top_fraction * n)
    through = tp + fp
    # the tie group holding the cut: what comes before it, and its share inside the cut
    at = int(np.flatnonzero((through - pos - neg < n_top) & (through >= n_top))[0])
    group_pos, group_n = int(pos[at]), int(pos[at] + neg[at])
    before = int(through[at]) - group_n
    captured = int(tp[at]) - group_pos + (n_top - before) * group_pos / group_n
    positive_rate = n_pos / n
    return {
        "roc_auc": auc2PN / (2.0 * n_pos * n_neg),
        "pr_auc": ap_P / n_pos,
        "n": n,
        "n_positive": n_pos,
        "positive_rate": positive_rate,
        "top_fraction": top_fraction,
        "n_top": n_top,
        "capture_rate_top": captured / n_pos,
        "lift_top": (captured / n_top) / positive_rate,
    }


def value_rankings(
    frame: DataFrame,
    scores: dict[str, str],
    actual: str,
    top_fractions: tuple[float, ...] = (0.1, 0.2),
) -> tuple[dict[str, dict[str, float | None]], int]:
    """How well each score column of ``frame`` (``scores``: a name for each) ranks its rows
    (customers) by the ``actual`` value column (e.g. holdout revenue); and the number of rows.

    ``top_<k>pct``: the share of all actual value held by the top k% of customers by score
    (k% of n, fractions of a customer counted in proportion). None when nobody has value.
    ``gini``: 2 x the area under that cumulative-share curve (customers on x, value on y, both
    in [0, 1]) - 1: 0 for a ranking no better than chance, 1 when a vanishing share of
    customers by score hold all the value. Customers tied on score are taken in random order,
    in expectation: a tie group's value comes in proportion to how much of it is inside the
    cut, and the curve runs straight across it.

    One Spark query for all the scores, nothing per customer on the driver: the customers
    grouped by (score name, score), each name's groups in descending order of score with their
    running counts and values, summed to the area and the cuts. A missing actual value counts
    as 0.
    """
    stacked = frame.select(
        F.inline(
            F.array(
                *(
                    F.struct(
                        F.lit(name).alias("ranking"), F.col(column).cast("double").alias("score")
                    )
                    for name, column in scores.items()
                )
            )
        ),
        F.coalesce(F.col(actual).cast("double"), F.lit(0.0)).alias("actual"),
    )
    n, value = F.col("n"), F.col("value")
    # one shuffle, by score name: the tie groups, each name's curve and its sums all follow
    # that partitioning (a job per shuffle; grouped first by (name, score), they took three)
    groups = (
        stacked.repartition("ranking")
        .groupBy("ranking", "score")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("actual").alias("value"))
    )
    ranking = Window.partitionBy("ranking")
    highest_first = ranking.orderBy(F.desc("score")).rowsBetween(
        Window.unboundedPreceding, Window.currentRow
    )
    curve = groups.select(
        "ranking",
        n,
        value,
        F.sum(n).over(highest_first).alias("n_through"),
        F.sum(value).over(highest_first).alias("value_through"),
        F.sum(n).over(ranking).alias("n_all"),
    )
    before = F.col("n_through") - n
    cuts = []
    for fraction in top_fractions:
        n_top = F.lit(fraction) * F.col("n_all")
        # the tie group holding the cut: what comes before it, and its share inside the cut
        inside = (before < n_top) & (F.col("n_through") >= n_top)
        captured = F.col("value_through") - value + (n_top - before) / n * value
        cuts.append(F.max(F.when(inside, captured)).alias(_top_key(fraction)))
    rows = {
        row["ranking"]: row
        for row in curve.groupBy("ranking")
        .agg(
            F.sum(n).alias("n"),
            F.sum(value).alias("total"),
            # trapezoids under the curve, one per tie group
            F.sum(n * (2 * F.col("value_through") - value)).alias("area"),
            *cuts,
        )
        .collect()
    }
    n_rows = max((row["n"] for row in rows.values()), default=0)
    return {name: _ranking(rows.get(name), top_fractions) for name in scores}, n_rows


def _top_key(fraction: float) -> str:
    return f"top_{round(fraction * 100)}pct"


def _ranking(row, top_fractions: tuple[float, ...]) -> dict[str, float | None]:
    if row is None or row["total"] <= 0:  # nobody bought: nothing to rank
        return {"gini": None, **{_top_key(fraction): None for fraction in top_fractions}}
    n, total = row["n"], row["total"]
    return {
        "gini": 2.0 * row["area"] / (2.0 * n * total) - 1.0,
        **{_top_key(f): row[_top_key(f)] / total for f in top_fractions},
    }


def probability_metrics(
    predictions: pd.DataFrame, label: str = "label", score: str = "score"
) -> dict[str, float]:
    """Log loss and Brier score of predicted probabilities."""
    probability = predictions[score].to_numpy(dtype="float64")
    y = predictions[label].to_numpy(dtype="float64")
    p = np.clip(probability, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    return {
        "log_loss": float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))),
        "brier": float(np.mean((probability - y) ** 2)),
    }


def choose_threshold(table: pd.DataFrame, rule: str, value: float | None = None) -> float:
    """The probability at or above which a case is flagged, by ``rule``:

    * ``max_youden`` — the score maximising Youden's J = TPR − FPR (balanced accuracy), which
      does not drift to "flag everyone" when the positive class is the majority;
    * ``max_f1`` — the score maximising F1 (ties: the higher score);
    * ``top_fraction`` — the score at which the top ``value`` share of cases is reached;
    * ``fixed`` — ``value`` itself.
    """
    if rule == "fixed":
        return float(value)
    tp, fp = table["tp"].to_numpy(dtype="int64"), table["fp"].to_numpy(dtype="int64")
    if rule in ("max_f1", "max_youden"):
        n_pos, n_neg = _totals(table)
        objective = 2 * tp / (tp + fp + n_pos) if rule == "max_f1" else tp / n_pos - fp / n_neg
        # the table runs from the highest score down: the first maximum is the highest score
        return float(table["score"].iloc[int(np.argmax(objective))])
    if rule == "top_fraction":
        n_top = math.ceil(float(value) * sum(_totals(table)))
        return float(table["score"].to_numpy()[tp + fp >= n_top].max())
    raise ValueError(
        f"threshold rule '{rule}' is unknown; use max_youden, max_f1, top_fraction or fixed"
    )


def confusion_matrix(
    predictions: pd.DataFrame, threshold: float, label: str = "label", score: str = "score"
) -> dict[str, int]:
    """Counts of the rule "flag when score >= threshold" against the labels."""
    flagged = predictions[score].to_numpy() >= threshold
    positive = predictions[label].to_numpy() == 1
    return {
        "tp": int((flagged & positive).sum()),
        "fp": int((flagged & ~positive).sum()),
        "tn": int((~flagged & ~positive).sum()),
        "fn": int((~flagged & positive).sum()),
    }


def curves(table: pd.DataFrame, max_points: int = 200) -> dict[str, list[dict[str, float]]]:
    """ROC and precision-recall points, thinned to about ``max_points`` for plotting."""
    n_pos, n_neg = _totals(table)
    n_scores = len(table)
    step = max(1, math.ceil(n_scores / max_points))
    position = np.arange(n_scores)
    kept = table[(position % step == 0) | (position == n_scores - 1)]
    roc = [{"fpr": 0.0, "tpr": 0.0, "threshold": None}]
    pr = []
    for row in kept[["score", "tp", "fp"]].itertuples(index=False):
        score, tp, fp = float(row.score), int(row.tp), int(row.fp)
        roc.append({"fpr": fp / n_neg, "tpr": tp / n_pos, "threshold": score})
        pr.append({"recall": tp / n_pos, "precision": tp / (tp + fp), "threshold": score})
    return {"roc": roc, "precision_recall": pr}


def reliability_table(
    predictions: pd.DataFrame, bins: int = 10, label: str = "label", score: str = "score"
) -> list[dict[str, float]]:
    """Calibration curve: per equal-width probability bin, mean prediction and observed rate."""
    probability = predictions[score].to_numpy(dtype="float64")
    per_bin = (
        pd.DataFrame(
            {
                "bin": np.minimum(np.floor(probability * bins), bins - 1).astype("int64"),
                "predicted": probability,
                "observed": predictions[label].to_numpy(dtype="float64"),
            }
        )
        .groupby("bin", sort=True)
        .agg(
            mean_predicted=("predicted", "mean"),
            observed_rate=("observed", "mean"),
            n=("predicted", "size"),
        )
    )
    return [
        {
            "bin_lower": index / bins,
            "bin_upper": (index + 1) / bins,
            "mean_predicted": float(row.mean_predicted),
            "observed_rate": float(row.observed_rate),
            "n": int(row.n),
        }
        for index, row in zip(per_bin.index.tolist(), per_bin.itertuples(), strict=True)
    ]


def as_mlflow_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, dict[str, float]]:
    """Numeric leaves of a nested dict in kedro-mlflow's metrics format, keys joined by dots."""
    flat: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(as_mlflow_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = {"value": float(value), "step": 0}
    return flat


# ------------------------------------------------------------------ drift between two tables
PSI_FLOOR = 1e-4  # an empty bin counts as 0.01% of the rows: PSI stays finite
_NULL_BIN = "\u2205"  # the bin of missing values (a string no category is expected to be)


def population_stability(
    current: DataFrame, previous: DataFrame, columns: list[str], bins: int = 10
) -> dict[str, float]:
    """The population stability index of each column, ``current`` against ``previous``.

    Numeric columns are cut at ``previous``'s quantiles 1/bins … (bins−1)/bins (distinct
    edges only, so a column with few values gets fewer bins; a value equal to an edge falls in
    the bin above it); other columns have one bin per value. Missing values are a bin of their
    own. With ``c`` and ``p`` each bin's share of the current and previous rows, floored at
    :data:`PSI_FLOOR`::

        PSI = Σ (c − p) · ln(c / p)

    0 when the distributions agree bin by bin; by the usual reading, below 0.1 is stable,
    0.1–0.25 a moderate shift and above 0.25 a large one. Two Spark jobs per table: the
    quantiles, then one pass counting every column's bins.
    """
    numeric = [name for name in columns if _is_numeric(previous, name)]
    probabilities = [i / bins for i in range(1, bins)]
    quantiles = previous.approxQuantile(numeric, probabilities, 0.001) if numeric else []
    edges = {name: sorted(set(values)) for name, values in zip(numeric, quantiles, strict=True)}
    shares_now = _bin_shares(current, columns, edges)
    shares_before = _bin_shares(previous, columns, edges)
    return {name: _psi(shares_now.get(name, {}), shares_before.get(name, {})) for name in columns}


def _is_numeric(frame: DataFrame, name: str) -> bool:
    return isinstance(frame.schema[name].dataType, NumericType)


def _bin_shares(
    frame: DataFrame, columns: list[str], edges: dict[str, list[float]]
) -> dict[str, dict[str, float]]:
    """Per column, each bin's share of ``frame``'s rows."""
    labelled = []
    for name in columns:
        column = F.col(f"`{name}`")
        if name in edges:
            label = sum((column >= edge).cast("int") for edge in edges[name]) + F.lit(0)
        else:
            label = column
        label = F.when(column.isNull(), F.lit(_NULL_BIN)).otherwise(label.cast("string"))
        labelled.append(F.struct(F.lit(name).alias("column"), label.alias("bin")))
    counts = (
        frame.select(F.explode(F.array(*labelled)).alias("cell"))
        .groupBy("cell.column", "cell.bin")
        .count()
        .collect()
    )
    shares: dict[str, dict[str, float]] = {}
    for row in counts:
        shares.setdefault(row["column"], {})[row["bin"]] = row["count"]
    for name, per_bin in shares.items():
        rows = sum(per_bin.values())
        shares[name] = {label: count / rows for label, count in per_bin.items()}
    return shares


def _psi(now: dict[str, float], before: dict[str, float]) -> float:
    total = 0.0
    for label in set(now) | set(before):
        c, p = max(now.get(label, 0.0), PSI_FLOOR), max(before.get(label, 0.0), PSI_FLOOR)
        total += (c - p) * math.log(c / p)
    return total
