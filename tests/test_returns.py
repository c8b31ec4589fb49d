"""Returns netted against the sales they reverse, and non-product lines set apart.

Hand-computed cases through the real cleaning nodes (label -> match_returns -> split), a
property test against a plain-Python stack written from the rule in the README, and the
parameter checks.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cltv.parameters import problems
from cltv.pipelines.data_processing.nodes import purchase_occasions, summarise_purchase_days

from .test_cleaning import HEADER, NET, clean_csv


def _line(invoice, code, qty, when, price=2.0, customer="17850"):
    """One raw line; ``when`` is a day of December 2010 or a full timestamp."""
    stamp = when if isinstance(when, str) else f"2010-12-{when:02d} 10:00:00"
    return f"{invoice},{code},ITEM {code},{qty},{stamp},{price},{customer}.0,United Kingdom"


def _clean(tmp_path, lines, returns=NET, non_product=None):
    path = tmp_path / "input.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    clean, quarantine, report = clean_csv(
        path, latest="2012-01-01", max_fraction=1.0, returns=returns, non_product=non_product
    )
    clean_rows, quarantined_rows = clean.collect(), quarantine.collect()
    assert len(clean_rows) + len(quarantined_rows) == len(lines) == report["rows"]
    sales = {
        r["invoice"]: (r["quantity"], r["returned_quantity"], r["revenue"]) for r in clean_rows
    }
    set_apart = {r["invoice"]: (r["reason"], r["matched_quantity"]) for r in quarantined_rows}
    return sales, set_apart, report, clean


def test_partial_return_nets_part_of_the_sale(spark, tmp_path):
    sales, returns, report, _ = _clean(
        tmp_path, [_line("1", "85123A", 6, 1, 2.5), _line("C2", "85123A", -2, 3, 2.5)]
    )
    assert sales == {"1": (6, 2, 10.0)}  # 4 units kept at 2.50
    assert returns == {"C2": ("cancellation", 2)}
    assert report["returns"]["netted_revenue"] == 5.0
    assert report["returns"]["sale_lines_netted"] == 1
    assert report["returns"]["sale_lines_fully_returned"] == 0


def test_fully_returned_order_is_no_purchase_occasion(spark, tmp_path):
    # a small purchase, then a huge order cancelled twelve minutes later
    sales, returns, report, clean = _clean(
        tmp_path,
        [
            _line("1", "85123A", 2, "2010-05-02 10:00:00", 1.45),
            _line("2", "22423", 80995, "2010-12-09 09:15:00", 2.08),
            _line("C3", "22423", -80995, "2010-12-09 09:27:00", 2.08),
        ],
    )
    assert sales["2"] == (80995, 80995, 0.0)
    assert returns == {"C3": ("cancellation", 80995)}
    assert report["returns"]["sale_lines_fully_returned"] == 1
    occasions = purchase_occasions(summarise_purchase_days(clean), "2100-01-01").collect()
    assert [(str(r["day"]), r["revenue"]) for r in occasions] == [("2010-05-02", 2.9)]


def test_one_return_spread_over_two_sales_most_recent_first(spark, tmp_path):
    sales, returns, _, _ = _clean(
        tmp_path,
        [_line("1", "85123A", 4, 1), _line("2", "85123A", 3, 2), _line("C3", "85123A", -5, 3)],
    )
    # the 3 units of the later sale first, then 2 of the earlier one
    assert sales == {"1": (4, 2, 4.0), "2": (3, 3, 0.0)}
    assert returns == {"C3": ("cancellation", 5)}


def test_returns_follow_a_stack_over_time(spark, tmp_path):
    sales, returns, _, _ = _clean(
        tmp_path,
        [
            _line("1", "85123A", 3, 1),  # A: 3
            _line("C2", "85123A", -2, 2),  # takes 2 of sale 1 -> 1 left
            _line("3", "85123A", 4, 3),  # stack: 1 (sale 1), 4 (sale 3)
            _line("C4", "85123A", -3, 4),  # takes 3 of sale 3 -> 1 left
            _line("C5", "85123A", -3, 5),  # takes 1 of sale 3, then 1 of sale 1: 2 of 3
            _line("C6", "85123A", -1, 6),  # nothing left to take
        ],
    )
    assert sales == {"1": (3, 3, 0.0), "3": (4, 4, 0.0)}
    assert returns == {
        "C2": ("cancellation", 2),
        "C4": ("cancellation", 3),
        "C5": ("cancellation", 2),
        "C6": ("unmatched_cancellation", 0),
    }


def test_return_larger_than_the_sales_matches_what_was_sold(spark, tmp_path):
    sales, returns, report, _ = _clean(
        tmp_path, [_line("1", "85123A", 2, 1), _line("C2", "85123A", -5, 2)]
    )
    assert sales == {"1": (2, 2, 0.0)}
    assert returns == {"C2": ("cancellation", 2)}
    assert report["returns"]["matched_quantity"] == 2


@pytest.mark.parametrize(
    "return_line",
    [
        _line("C2", "85123A", -2, "2010-12-01 09:59:00"),  # a minute before the sale
        _line("C2", "85123A", -2, 3, customer="99999"),  # another customer
        _line("C2", "22423", -2, 3),  # another product
    ],
    ids=["before_the_sale", "other_customer", "other_product"],
)
def test_return_with_nothing_to_reverse_is_unmatched(spark, tmp_path, return_line):
    sales, returns, report, _ = _clean(tmp_path, [_line("1", "85123A", 6, 1), return_line])
    assert sales == {"1": (6, 0, 12.0)}
    assert returns == {"C2": ("unmatched_cancellation", 0)}
    assert report["by_reason"] == {"unmatched_cancellation": 1}
    assert report["returns"]["unmatched_lines"] == 1


def test_a_return_at_the_second_of_its_sale_matches_it(spark, tmp_path):
    sales, returns, _, _ = _clean(
        tmp_path, [_line("1", "85123A", 6, 1), _line("C1", "85123A", -6, 1)]
    )
    assert sales == {"1": (6, 6, 0.0)} and returns == {"C1": ("cancellation", 6)}


def test_negative_quantity_without_c_invoice_is_a_return(spark, tmp_path):
    sales, returns, _, _ = _clean(
        tmp_path, [_line("1", "85123A", 6, 1), _line("2", "85123A", -1, 2)]
    )
    assert sales == {"1": (6, 1, 10.0)} and returns == {"2": ("cancellation", 1)}


def test_max_days_leaves_older_sales_alone(spark, tmp_path):
    lines = [
        _line("1", "85123A", 5, "2010-11-01 10:00:00"),
        _line("2", "85123A", 2, "2010-12-05 10:00:00"),
        _line("C3", "85123A", -4, "2010-12-10 10:00:00"),
    ]
    # 30 days: sale 2 (5 days old) may be reversed, sale 1 (39 days old) may not
    sales, returns, _, _ = _clean(tmp_path, lines, {"mode": "net", "max_days": 30})
    assert sales == {"1": (5, 0, 10.0), "2": (2, 2, 0.0)}
    assert returns == {"C3": ("cancellation", 2)}
    sales, returns, _, _ = _clean(tmp_path, lines, {"mode": "net", "max_days": 40})
    assert sales == {"1": (5, 2, 6.0), "2": (2, 2, 0.0)}
    assert returns == {"C3": ("cancellation", 4)}
    sales, returns, _, _ = _clean(tmp_path, lines[:1] + lines[2:], {"mode": "net", "max_days": 30})
    assert returns == {"C3": ("unmatched_cancellation", 0)}


def test_ignore_mode_sets_returns_apart_and_keeps_sales_whole(spark, tmp_path):
    sales, returns, report, _ = _clean(
        tmp_path,
        [_line("1", "85123A", 6, 1), _line("C2", "85123A", -6, 2), _line("C3", "22423", -1, 2)],
        returns={"mode": "ignore", "max_days": None},
    )
    assert sales == {"1": (6, 0, 12.0)}
    assert returns == {"C2": ("cancellation", None), "C3": ("cancellation", None)}
    assert report["returns"]["matched_lines"] == 0
    assert report["returns"]["netted_revenue"] == 0.0


def test_a_duplicated_return_line_is_netted_once(spark, tmp_path):
    sales, _, report, _ = _clean(
        tmp_path,
        [_line("1", "85123A", 6, 1), _line("C2", "85123A", -2, 2), _line("C2", "85123A", -2, 2)],
    )
    assert sales == {"1": (6, 2, 8.0)}
    assert report["by_reason"] == {"cancellation": 1, "duplicate_line": 1}


# ---------------------------------------------------------------- non-product lines
def test_non_product_codes_exact_any_case_and_regular_expressions(spark, tmp_path):
    sales, set_apart, report, _ = _clean(
        tmp_path,
        [
            _line("1", "85123A", 1, 1),
            _line("2", "POST", 2, 1, 18.0),
            _line("3", "post", 1, 1, 18.0),
            _line("4", "gift_0001_10", 1, 1, 8.33),
            _line("5", "BANK CHARGES", 1, 1, 15.0),
            _line("6", "POSTCARD", 1, 1, 0.5),  # a product whose code starts with POST
            _line("7", "DCGSSGIRL", 1, 1, 3.29),
        ],
    )
    assert sorted(sales) == ["1", "6"]
    assert {k: v[0] for k, v in set_apart.items()} == dict.fromkeys("23457", "non_product")
    assert report["by_reason"] == {"non_product": 5}


def test_a_c_line_for_postage_is_a_refund_of_postage_not_a_product(spark, tmp_path):
    sales, set_apart, report, _ = _clean(
        tmp_path,
        [
            _line("1", "85123A", 4, 1),
            _line("1", "POST", 1, 1, 18.0),
            _line("C1", "POST", -1, 2, 18.0),  # refund of the postage: matched against it
            _line("C9", "DOT", -1, 2, 40.0),  # refund of postage never charged
        ],
    )
    assert sales == {"1": (4, 0, 8.0)}  # the product sale is untouched
    assert set_apart["C1"] == ("cancellation", 1)
    assert set_apart["C9"] == ("unmatched_cancellation", 0)
    # no product revenue was netted: the postage line is not a sale we analyse
    assert report["returns"]["netted_revenue"] == 0.0
    assert report["returns"]["matched_quantity"] == 1


def test_empty_non_product_list_turns_the_rule_off(spark, tmp_path):
    sales, set_apart, _, _ = _clean(
        tmp_path, [_line("1", "POST", 1, 1, 18.0), _line("2", "M", 1, 1, 3.0)], non_product=[]
    )
    assert sorted(sales) == ["1", "2"] and set_apart == {}


# ---------------------------------------------------------------- property: a plain stack
def _reference_netting(events, max_days):
    """The rule, written plainly: per (customer, code), in time order (sales before returns at
    the same moment), a return takes units from the most recent sales it may reach."""
    returned, matched = Counter(), {}
    stacks: dict[tuple, list] = {}
    for index, (customer, code, day, qty) in sorted(
        enumerate(events), key=lambda item: (item[1][2], item[1][3] < 0, item[0])
    ):
        stack = stacks.setdefault((customer, code), [])
        if qty > 0:
            stack.append([day, index, qty])
            continue
        wanted = -qty
        for entry in reversed(stack):
            if max_days is not None and day - entry[0] > max_days:
                break
            take = min(wanted, entry[2])
            entry[2] -= take
            returned[entry[1]] += take
            wanted -= take
        matched[index] = -qty - wanted
    return returned, matched


_event = st.tuples(
    st.sampled_from(["1", "2"]),
    st.sampled_from(["85123A", "22423"]),
    st.integers(1, 28),
    st.integers(-6, 6).filter(bool),
)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    histories=st.lists(st.lists(_event, min_size=1, max_size=25), min_size=1, max_size=4),
    max_days=st.sampled_from([None, 3, 10]),
)
def test_netting_matches_a_plain_stack(spark, tmp_path_factory, histories, max_days):
    # several histories in one file, each with customers of its own: returns net within a
    # customer, so one file nets them as separate files would, for one cleaning run's cost
    events = [
        (f"{number}{customer}", code, day, qty)
        for number, history in enumerate(histories, start=1)
        for customer, code, day, qty in history
    ]
    # every line its own invoice and price, so no two lines are exact copies; one sale per
    # (customer, code, day) at most keeps "most recent" unambiguous for the reference
    # (invoice numbers padded: lines at one moment are ordered by invoice, as text)
    lines, sold_on = [], set()
    for index, (customer, code, day, qty) in enumerate(events):
        if qty > 0:
            if (customer, code, day) in sold_on:
                continue
            sold_on.add((customer, code, day))
        invoice = f"C{index:03d}" if qty < 0 else f"{index:03d}"
        lines.append((invoice, customer, code, day, qty, 1.0 + index))
    raw = [_line(inv, code, qty, day, price, cust) for inv, cust, code, day, qty, price in lines]
    returns = {"mode": "net", "max_days": max_days}
    sales, set_apart, report, _ = _clean(tmp_path_factory.mktemp("p"), raw, returns)

    returned, matched = _reference_netting([(c, k, d, q) for _, c, k, d, q, _ in lines], max_days)
    for index, (invoice, _, _, _, qty, price) in enumerate(lines):
        if qty > 0:
            got_qty, got_returned, revenue = sales[invoice]
            assert (got_qty, got_returned) == (qty, returned[index])
            assert revenue == pytest.approx((qty - returned[index]) * price)
        else:
            reason = "cancellation" if matched[index] else "unmatched_cancellation"
            assert set_apart[invoice] == (reason, matched[index])
    # what the sales lost is what the returns matched, and revenue is sales minus that
    sold = sum(q * p for _, _, _, _, q, p in lines if q > 0)
    assert sum(r for _, r, _ in sales.values()) == sum(m for _, m in set_apart.values())
    assert sum(v for _, _, v in sales.values()) == pytest.approx(
        sold - report["returns"]["netted_revenue"]
    )


# ---------------------------------------------------------------- parameters
BASE = {
    "time_unit": "W",
    "holdout_days": 90,
    "cleaning": {"max_quarantine_fraction": 0.5},
}


@pytest.mark.parametrize(
    ("cleaning", "message"),
    [
        ({"returns": {"mode": "subtract"}}, "parameter cleaning.returns.mode: 'subtract'"),
        ({"returns": {"max_days": -3}}, "parameter cleaning.returns.max_days: -3"),
        ({"non_product_stock_codes": ["re:[POST"]}, "'re:[POST' is not a regular expression"),
        ({"non_product_stock_codes": "POST"}, "parameter cleaning.non_product_stock_codes"),
    ],
)
def test_bad_return_and_non_product_parameters_are_named(cleaning, message):
    params = {**BASE, "cleaning": {**BASE["cleaning"], **cleaning}}
    assert any(message in found for found in problems(params)), problems(params)


def test_the_project_defaults_pass_the_checks():
    from .test_cleaning import PROJECT_CLEANING

    params = {**BASE, "cleaning": PROJECT_CLEANING}
    assert problems(params) == []
