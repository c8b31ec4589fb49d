"""Returns netted against the sales they reverse."""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from cltv.pipelines.data_processing.parsing import InputDataError

RETURN_MODES = ("net", "ignore")


def match_returns(labelled: DataFrame, returns: dict[str, Any]) -> DataFrame:
    """Net each return against the sales it reverses: ``line_id``, ``netted_quantity``.

    A return (a line labelled ``cancellation``, or ``unmatched_cancellation`` by an earlier
    netting) is matched to the same customer's sales of the same stock code at or before its
    time, most recent first, up to its quantity — the rule a till applies when a customer
    brings goods back, and the one that keeps a phantom order cancelled minutes later from
    counting as a purchase. With ``returns.max_days``, a sale more
    than that many days before the return is not matched. Sales are the clean lines and the
    ``non_product`` lines (a refund of postage nets against postage).

    Per (customer, stock code) this is a stack: a sale pushes its units, a return pops units
    from the top, down to the most recent sale it may not reach. It runs in Spark as a
    higher-order ``aggregate`` over the time-ordered lines of each (customer, stock code) that
    has a return; every other line is left alone. Rows: the lines that netted something — for
    a sale, the units returned; for a return, the units matched (``netted_quantity``), with
    what the quarantine report says of them: the line's units and unit price, whether it is a
    return and whether it is a clean sale (``_units``, ``_price``, ``_is_return``,
    ``_is_clean_sale``). With ``returns.mode: ignore`` nothing is matched (no rows).
    """
    mode = returns.get("mode", "net")
    if mode not in RETURN_MODES:
        raise InputDataError(f"parameter cleaning.returns.mode: {mode!r} is not one of net, ignore")
    sale = F.col("reason").isNull() | (F.col("reason") == "non_product")
    is_return = F.col("reason").isin("cancellation", "unmatched_cancellation")
    lines = labelled.filter((sale | is_return) & F.col("stock_code").isNotNull()).select(
        "customer_key",
        F.trim("stock_code").alias("stock_key"),
        F.col("invoice_ts").cast("long").alias("ts"),
        is_return.cast("int").alias("is_return"),
        F.trim("invoice").alias("invoice"),
        "line_id",
        F.abs("quantity_value").alias("qty"),
        F.col("price_value").alias("price"),
        F.col("reason").isNull().alias("is_clean"),
    )
    if mode == "ignore":
        return lines.filter(F.lit(False)).select(
            "line_id",
            F.col("qty").alias("netted_quantity"),
            F.col("qty").alias("_units"),
            F.col("price").alias("_price"),
            F.col("is_return").alias("_is_return"),
            F.col("is_clean").alias("_is_clean_sale"),
        )
    keys = ["customer_key", "stock_key"]
    with_returns = lines.filter(F.col("is_return") == 1).select(*keys).distinct()
    groups = (
        # returns are a few percent of the lines: broadcasting their keys spares a shuffle of all
        lines.join(F.broadcast(with_returns), keys, "left_semi")
        .groupBy(*keys)
        # sales before returns at the same second: a sale is "at or before" its return
        .agg(F.sort_array(F.collect_list(F.struct(*LINE_EVENT_FIELDS))).alias("events"))
    )
    netted = groups.select(F.explode(_net_events(F.col("events"), returns.get("max_days"))))
    # only lines something happened to: a line absent here netted nothing
    return (
        netted.select("col.*")
        .filter(F.col("netted_quantity") > 0)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )


# sorted as structs: by time, sales before returns, then invoice and line (the fields after the
# unique line id only ride along)
LINE_EVENT_FIELDS = ("ts", "is_return", "invoice", "line_id", "qty", "price", "is_clean")
_STACK = (
    "array<struct<ts:bigint,line_id:bigint,qty:bigint,price:double,is_clean:boolean,"
    "lo:bigint,hi:bigint>>"
)
_NETTED = (
    "array<struct<line_id:bigint,netted_quantity:bigint,_units:bigint,_price:double,"
    "_is_return:int,_is_clean_sale:boolean>>"
)


def _net_events(events: Column, max_days: float | None) -> Column:
    """Run the return stack over one group's time-ordered events (see :func:`match_returns`).

    The stack holds every sale as the interval of levels [lo, hi) its units occupy; ``level``
    is the top. A return of q units may pop down to ``floor`` (the top of the sales older than
    ``max_days``, which lie below the younger ones), so it matches m = min(q, level - floor)
    and every interval is cut at level - m. Each event costs one pass over the stack.
    """
    oldest_allowed = None if max_days is None else round(float(max_days) * 86400)

    def step(state: Column, event: Column) -> Column:
        level, stack = state["level"], state["stack"]
        pushed = F.struct(
            (level + event["qty"]).alias("level"),
            F.concat(
                stack,
                F.array(
                    F.struct(
                        event["ts"].alias("ts"),
                        event["line_id"].alias("line_id"),
                        event["qty"].alias("qty"),
                        event["price"].alias("price"),
                        event["is_clean"].alias("is_clean"),
                        level.alias("lo"),
                        (level + event["qty"]).alias("hi"),
                    )
                ),
            ).alias("stack"),
            state["netted"].alias("netted"),
        )
        if oldest_allowed is None:
            floor = F.lit(0).cast("bigint")
        else:
            too_old = F.filter(stack, lambda s: s["ts"] < event["ts"] - oldest_allowed)
            floor = F.aggregate(
                too_old, F.lit(0).cast("bigint"), lambda a, s: F.greatest(a, s["hi"])
            )
        matched = F.least(event["qty"], level - floor)
        top = level - matched
        popped = F.struct(
            top.alias("level"),
            F.transform(
                stack,
                lambda s: F.struct(
                    s["ts"].alias("ts"),
                    s["line_id"].alias("line_id"),
                    s["qty"].alias("qty"),
                    s["price"].alias("price"),
                    s["is_clean"].alias("is_clean"),
                    F.least(s["lo"], top).alias("lo"),
                    F.least(s["hi"], top).alias("hi"),
                ),
            ).alias("stack"),
            F.concat(
                state["netted"],
                F.array(
                    F.struct(
                        event["line_id"].alias("line_id"),
                        matched.alias("netted_quantity"),
                        event["qty"].alias("_units"),
                        event["price"].alias("_price"),
                        F.lit(1).alias("_is_return"),
                        F.lit(False).alias("_is_clean_sale"),
                    )
                ),
            ).alias("netted"),
        )
        return F.when(event["is_return"] == 1, popped).otherwise(pushed)

    start = F.struct(
        F.lit(0).cast("bigint").alias("level"),
        F.array().cast(_STACK).alias("stack"),
        F.array().cast(_NETTED).alias("netted"),
    )

    def finish(state: Column) -> Column:
        returned = F.transform(
            state["stack"],
            lambda s: F.struct(
                s["line_id"].alias("line_id"),
                (s["qty"] - (s["hi"] - s["lo"])).alias("netted_quantity"),
                s["qty"].alias("_units"),
                s["price"].alias("_price"),
                F.lit(0).alias("_is_return"),
                s["is_clean"].alias("_is_clean_sale"),
            ),
        )
        return F.concat(returned, state["netted"])

    return F.aggregate(events, start, step, finish)


def with_netted_quantities(lines: DataFrame, return_matches: DataFrame, netting: bool) -> DataFrame:
    """``lines`` (with ``line_id`` and ``reason``) given what netting did to them: a sale's
    ``returned_quantity``, a return's ``matched_quantity``, and ``unmatched_cancellation`` for
    a return that matched nothing."""
    netted = F.coalesce(F.col("netted_quantity"), F.lit(0))
    is_return = F.col("reason").isin("cancellation", "unmatched_cancellation")
    # the matches are the few lines returns touched (long keys): a broadcast lookup, no shuffle
    joined = lines.join(F.broadcast(return_matches), "line_id", "left")
    if netting:
        matched = F.when(netted > 0, "cancellation").otherwise("unmatched_cancellation")
    else:
        matched = F.lit("cancellation")
    return joined.select(
        *[c for c in lines.columns if c != "reason"],
        F.when(is_return, matched).otherwise(F.col("reason")).alias("reason"),
        F.when(F.col("reason").isNull(), netted).cast("bigint").alias("returned_quantity"),
        F.when(is_return & F.lit(netting), netted).cast("bigint").alias("matched_quantity"),
    )
