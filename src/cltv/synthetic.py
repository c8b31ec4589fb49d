"""Synthetic Online Retail II invoice lines drawn from a known BG/NBD + Gamma-Gamma process.

``python -m cltv.synthetic --rows N --out PATH [--seed S]`` writes a CSV of N invoice lines
(within 1%) with the UCI Online Retail II columns, and the true parameters beside it in
``PATH.truth.json`` (the layout of ``data/06_models/cltv_model_params.json``).

The process, per customer (Fader, Hardie & Lee 2005, "Counting your customers the easy way"):

* the first purchase falls on a uniformly drawn moment of the observation period;
* while alive, repeat purchases arrive as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``
  (per week); after each repeat purchase the customer drops out with probability
  ``p ~ Beta(a, b)``;
* each purchase is worth ``z ~ Gamma(p_gg, nu)`` with ``nu ~ Gamma(q, gamma)`` per customer
  (the Gamma-Gamma spend model), in whole pence, split over a few invoice lines.

Dirt is added on top of the process and never changes it: cancelled lines (an extra line on a
real invoice, returned by a ``C`` invoice before the customer's next purchase), lines without a
``Customer ID``, zero or negative prices, and exact duplicate lines. After cleaning and the
netting of returns, the purchase occasions (customer, day, revenue) are exactly the distinct
purchase days the process drew — two purchases drawn on one calendar day are one occasion, as
in the SPEC's definition.

Opt-in regimes of real invoice exports, also on top of the process (the truth does not move):

* ``--returns``: partial returns (a line sold with extra units that come back later), whole
  orders returned, rare very large orders cancelled within minutes (some by customers who
  never buy anything else), and returns that match no earlier sale;
* ``--non-product``: postage on a share of invoices (some of it refunded), and fees, manual
  adjustments, samples and vouchers (``BANK CHARGES``, ``AMAZONFEE``, ``M``, ``gift_0001_20``...).

Process regimes that break the model's assumptions (opt-in; these change the process, and the
truth file says how):

* ``--no-dropout``: nobody drops out during the data (BG/NBD's a -> 0; the truth has a = 0 and
  b = null), as in an export too short to see anyone leave;
* ``--heavy-tail-spend``: spend with a heavy tail, Gamma-Gamma's q = 1.2 (close to 1, where
  the mean order value stops being finite), at the default process's mean order value;
* ``--seasonal-peak``: purchases twice as frequent from mid-September to mid-December every
  year, so the 90-day holdout at the end of the period is the peak season.

Every return is dated at or after the sale it reverses and before the customer's next invoice,
so netting (same customer and stock code, most recent sale first) reverses exactly that sale.
Each chunk knows how many lines cleaning must find in each quarantine reason.

Memory is flat in N: customers are drawn and written in fixed-size chunks, each from its own
seeded random stream, so the output is deterministic per seed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

RAW_COLUMNS = [
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
]
RAW_SCHEMA = pa.schema([(name, pa.string()) for name in RAW_COLUMNS])

COUNTRIES = {
    "United Kingdom": 0.90,
    "Germany": 0.02,
    "France": 0.02,
    "EIRE": 0.02,
    "Netherlands": 0.01,
    "Spain": 0.01,
    "Belgium": 0.005,
    "Switzerland": 0.005,
    "Portugal": 0.005,
    "Australia": 0.005,
}
_ADJECTIVES = ["WHITE", "RED", "VINTAGE", "PINK", "BLUE", "REGENCY", "JUMBO", "SMALL", "HEART"]
_MATERIALS = ["CERAMIC", "GLASS", "WOODEN", "METAL", "PAPER", "FELT", "ENAMEL", "LACE"]
_NOUNS = ["T-LIGHT HOLDER", "LANTERN", "BAG", "CAKE STAND", "MUG", "BUNTING", "TIN", "CLOCK"]
_QUANTITIES = np.array([1, 2, 3, 4, 6, 8, 12, 24])
_QUANTITY_WEIGHTS = np.array([0.25, 0.15, 0.08, 0.12, 0.15, 0.05, 0.15, 0.05])
_FIRST_INVOICE_NUMBER = 489434
_FIRST_CUSTOMER_ID = 12346
_FIRST_GIANT_ONLY_CUSTOMER_ID = 90_000_000
REGIMES = ("returns", "non_product", "no_dropout", "heavy_tail_spend", "seasonal_peak")
MINUTES_PER_DAY = 1440
# (stock code, description, unit price in pence or None for a drawn one) of non-product lines
_POSTAGE = [("POST", "POSTAGE", 1800), ("DOT", "DOTCOM POSTAGE", None), ("C2", "CARRIAGE", 5000)]
_POSTAGE_WEIGHTS = np.array([0.5, 0.3, 0.2])
_FEES = [
    ("M", "Manual", None),
    ("m", "Manual", None),
    ("BANK CHARGES", "Bank Charges", 1500),
    ("AMAZONFEE", "AMAZON FEE", None),
    ("S", "SAMPLES", None),
    ("CRUK", "CRUK Commission", None),
    ("PADS", "PADS TO MATCH ALL CUSHIONS", 1),
    ("gift_0001_20", "Dotcomgiftshop Gift Voucher £20.00", 1667),
    ("DCGSSBOY", "BOYS PARTY BAG", 329),
    ("ADJUST", "Adjustment by john on 26/01/2010 17", None),
]


@dataclass(frozen=True)
class ProcessParameters:
    """True parameters of the generating process (rates per week, spend in pounds)."""

    r: float = 0.75
    alpha: float = 6.0
    a: float = 0.8
    b: float = 2.5
    p: float = 6.0
    q: float = 3.8
    gamma: float = 150.0
    # purchase rates are multiplied by peak_factor on the days of the year in peak_days
    peak_factor: float = 1.0
    peak_days: tuple[int, int] = (258, 349)  # 15 September .. 15 December

    def with_regimes(self, regimes) -> ProcessParameters:
        """These parameters changed by the process regimes among ``regimes``."""
        changes: dict[str, float] = {}
        if "no_dropout" in regimes:
            changes["a"] = 0.0
        if "heavy_tail_spend" in regimes:
            mean_order_value = self.p * self.gamma / (self.q - 1.0)
            changes["q"] = 1.2
            changes["gamma"] = mean_order_value * (1.2 - 1.0) / self.p
        if "seasonal_peak" in regimes:
            changes["peak_factor"] = 2.0
        return replace(self, **changes)


@dataclass(frozen=True)
class GeneratorSettings:
    """Shape of the output around the process: period, basket sizes, dirt rates."""

    start: str = "2009-12-01"
    days: int = 739  # 2009-12-01 .. 2011-12-09 inclusive, as in Online Retail II
    mean_lines_per_invoice: float = 4.0
    n_products: int = 3000
    customers_per_chunk: int = 20_000
    # per process line; a cancellation adds two lines (the extra sale and its return)
    dirt_rates: dict[str, float] = field(
        default_factory=lambda: {
            "missing_customer_id": 0.15,
            "cancellation": 0.02,
            "duplicate_line": 0.01,
            "non_positive_price": 0.005,
        }
    )
    regimes: frozenset[str] = frozenset()  # any of REGIMES
    return_rates: dict[str, float] = field(
        default_factory=lambda: {
            "partial_return": 0.02,  # per line: extra units sold and returned
            "returned_order": 0.01,  # per invoice: a 1-3 line order returned whole
            "giant_order": 0.002,  # per customer: 10k-80k units cancelled within the hour
            "giant_only_customer": 0.001,  # per customer: a new customer whose one order is that
            "unmatched_return": 0.005,  # per line: a return dated before any sale to reverse
        }
    )
    non_product_rates: dict[str, float] = field(
        default_factory=lambda: {
            "postage": 0.08,  # per invoice: a POST / DOT / C2 line on the invoice
            "postage_refund": 0.1,  # per postage line: refunded by a C line
            "fee": 0.01,  # per invoice: a fee, adjustment, sample or voucher invoice
        }
    )

    def extra_lines_per_process_line(self) -> float:
        """Lines added on top of each process line, on average (sizes the output)."""
        per_invoice = 1.0 / self.mean_lines_per_invoice
        extra = sum(self.dirt_rates.values()) + self.dirt_rates.get("cancellation", 0.0)
        if "returns" in self.regimes:
            rates = self.return_rates
            extra += rates["partial_return"] + rates["unmatched_return"]
            extra += rates["returned_order"] * per_invoice * 4.0  # two lines each side
            customers_per_line = per_invoice / 3.0  # about three invoices per customer
            extra += 2 * (rates["giant_order"] + rates["giant_only_customer"]) * customers_per_line
        if "non_product" in self.regimes:
            rates = self.non_product_rates
            extra += per_invoice * (rates["postage"] * (1 + rates["postage_refund"]) + rates["fee"])
        return extra


@dataclass
class Chunk:
    """One chunk of customers: their CSV lines and the occasions the process drew."""

    lines: pa.Table
    occasions: pa.Table  # customer_id, day (date32), revenue_pence
    n_customers: int
    # customer_id, purchase_rate_per_week, dropout_probability, dropout_day (null: alive at end)
    latent: pa.Table
    # rows cleaning must find per quarantine reason, and "clean" for the clean table
    expected_reasons: dict[str, int] = field(default_factory=dict)


def _product_catalog(n_products: int) -> tuple[pa.Array, pa.Array]:
    index = np.arange(n_products)
    stock_codes = [
        f"{20000 + i}{'ABC'[i % 7] if i % 7 < 3 else ''}" for i in index
    ]  # some codes carry a variant letter, like 85123A
    descriptions = [
        f"{_ADJECTIVES[i % 9]} {_MATERIALS[(i // 9) % 8]} {_NOUNS[(i // 72) % 8]}"
        + (f" {i // 576}" if i >= 576 else "")
        for i in index
    ]
    return pa.array(stock_codes), pa.array(descriptions)


def _group_starts(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(sizes)[:-1]))


class _Season:
    """Operational time: days weighted by the purchase intensity of the season, so a Poisson
    process of constant rate in operational time has the seasonal rate in calendar time."""

    def __init__(self, params: ProcessParameters, start: str, days: int) -> None:
        self.flat = params.peak_factor == 1.0
        day_of_year = (
            np.datetime64(start, "D") + np.arange(days) - np.datetime64(start[:4] + "-01-01", "D")
        ).astype(np.int64) % 365 + 1
        low, high = params.peak_days
        intensity = np.where((day_of_year >= low) & (day_of_year <= high), params.peak_factor, 1.0)
        self.calendar = np.arange(days + 1, dtype=float)
        self.operational = np.concatenate(([0.0], np.cumsum(intensity)))

    def to_operational(self, moment: np.ndarray) -> np.ndarray:
        return moment if self.flat else np.interp(moment, self.calendar, self.operational)

    def to_calendar(self, moment: np.ndarray) -> np.ndarray:
        return moment if self.flat else np.interp(moment, self.operational, self.calendar)


def _draw_purchases(rng: np.random.Generator, n: int, params: ProcessParameters, season: _Season):
    """Purchases of ``n`` customers: (customer index, moment in days since the period start)."""
    days = season.calendar[-1]
    first_moment = rng.uniform(0.0, days, size=n)
    rate_per_day = rng.gamma(params.r, 1.0 / params.alpha, size=n) / 7.0
    if params.a == 0.0:  # the no-dropout regime: Beta(0, b) is the point mass at 0
        dropout = np.zeros(n)
    else:
        dropout = rng.beta(params.a, params.b, size=n)
    # windows in operational time (calendar days unless there is a season)
    first_operational = season.to_operational(first_moment)
    window = season.operational[-1] - first_operational
    # Repeat purchases of an immortal customer in the window are Poisson; given their count they
    # are uniform order statistics. Dropping out after the M-th repeat (M ~ Geometric(p)) keeps
    # the first M of them.
    poisson_count = rng.poisson(rate_per_day * window)
    lifetime_repeats = rng.geometric(np.clip(dropout, 1e-12, 1.0))
    repeat_count = np.minimum(poisson_count, lifetime_repeats)

    owner = np.repeat(np.arange(n), poisson_count)
    uniforms = rng.random(owner.size)
    order = np.argsort(owner + uniforms, kind="stable")  # sorts by owner, then by time
    owner, uniforms = owner[order], uniforms[order]
    rank = np.arange(owner.size) - np.repeat(_group_starts(poisson_count), poisson_count)
    kept = rank < repeat_count[owner]
    repeat_owner = owner[kept]
    repeat_moment = season.to_calendar(
        first_operational[repeat_owner] + uniforms[kept] * window[repeat_owner]
    )

    # the latent state a model can only estimate: rate, dropout and the moment of dropping out
    # (the lifetime-ending repeat purchase, when it falls inside the period)
    drops_out = lifetime_repeats <= poisson_count
    is_last_repeat = rank[kept] == repeat_count[repeat_owner] - 1
    ending = is_last_repeat & drops_out[repeat_owner]
    dropout_moment = np.full(n, np.inf)
    dropout_moment[repeat_owner[ending]] = repeat_moment[ending]
    latent = {
        "rate_per_week": rate_per_day * 7.0,
        "dropout": dropout,
        "dropout_moment": dropout_moment,
    }

    purchase_owner = np.concatenate((np.arange(n), repeat_owner))
    purchase_moment = np.concatenate((first_moment, repeat_moment))
    order = np.lexsort((purchase_moment, purchase_owner))
    return purchase_owner[order], purchase_moment[order], latent


def _draw_values_pence(rng, owner: np.ndarray, n: int, params: ProcessParameters) -> np.ndarray:
    spend_rate = rng.gamma(params.q, 1.0 / params.gamma, size=n)
    value = rng.gamma(params.p, 1.0 / spend_rate[owner])
    return np.maximum(1, np.rint(value * 100)).astype(np.int64)


def _split_into_lines(rng, value_pence: np.ndarray, settings: GeneratorSettings):
    """Invoice lines (invoice index, quantity, unit price in pence) summing to each value."""
    n_invoices = value_pence.size
    n_lines = 1 + rng.poisson(settings.mean_lines_per_invoice - 1.0, size=n_invoices)
    n_lines = np.minimum(n_lines, value_pence)  # at least a penny a line
    invoice = np.repeat(np.arange(n_invoices), n_lines)
    position = np.arange(invoice.size) - np.repeat(_group_starts(n_lines), n_lines)
    is_last = position == n_lines[invoice] - 1
    weight = rng.exponential(size=invoice.size)
    share = weight / np.bincount(invoice, weights=weight, minlength=n_invoices)[invoice]
    quantity = rng.choice(_QUANTITIES, p=_QUANTITY_WEIGHTS, size=invoice.size)
    quantity[is_last] = 1
    unit_pence = np.maximum(1, np.floor(share * value_pence[invoice] / quantity)).astype(np.int64)
    unit_pence[is_last] = 0
    others = np.bincount(invoice, weights=quantity * unit_pence, minlength=n_invoices)
    remainder = value_pence - others.astype(np.int64)
    # A basket whose other lines already reach its value (a few pence over many lines, at a
    # penny a unit) becomes one line carrying it all: its last line, quantity 1. Redrawing every
    # basket until all balanced took ~1,000 rounds on heavy-tailed spend, each round failing a
    # few new baskets among the redrawn ones.
    overdrawn = remainder <= 0
    unit_pence[is_last] = np.where(overdrawn, value_pence, remainder)[invoice[is_last]]
    kept = is_last | ~overdrawn[invoice]
    invoice, position, quantity, unit_pence = (
        invoice[kept],
        np.where(overdrawn[invoice[kept]], 0, position[kept]),
        quantity[kept],
        unit_pence[kept],
    )
    return invoice, position, quantity, unit_pence


def _customer_id_text(customer_number: np.ndarray) -> pa.Array:
    # Online Retail II exports carry the id as a float ("13085.0"); cleaning normalises it.
    return pc.binary_join_element_wise(
        pa.array(customer_number).cast(pa.string()), pa.scalar(".0"), ""
    )


def _price_text(pence: np.ndarray) -> pa.Array:
    return pa.array(pence / 100.0).cast(pa.string())


def _make_table(columns: dict[str, pa.Array]) -> pa.Table:
    return pa.table({name: columns[name] for name in RAW_COLUMNS})


class _AddedLines:
    """Lines added on top of the process, and the reason cleaning must give each of them."""

    def __init__(self, process_lines: int) -> None:
        self.tables: list[pa.Table] = []
        self.expected = {"clean": process_lines}

    def __call__(self, table: pa.Table, reason: str) -> None:
        self.tables.append(table)
        self.expected[reason] = self.expected.get(reason, 0) + table.num_rows


class _InvoiceNumbers:
    """Hands out invoice numbers in order, so every added invoice has a number of its own."""

    def __init__(self, first: int) -> None:
        self.next = first

    def take(self, n: int) -> np.ndarray:
        numbers = self.next + np.arange(n)
        self.next += n
        return numbers


@dataclass
class _Invoices:
    """The process's invoices of one chunk, in (customer, time) order, with their lines."""

    owner: np.ndarray  # customer index per invoice
    minute: np.ndarray  # minutes since the period start
    next_minute: np.ndarray  # the customer's next invoice, or the period end
    number: np.ndarray
    first_product: np.ndarray  # the product of each invoice's first line; the others stride 7
    line_invoice: np.ndarray
    line_product: np.ndarray
    line_count: np.ndarray
    customer_text: np.ndarray  # per customer
    country: np.ndarray  # per customer
    start: np.datetime64
    stock_codes: pa.Array
    descriptions: pa.Array
    n_products: int

    def windows(self) -> tuple[np.ndarray, np.ndarray]:
        """Two cuts of the time to the customer's next invoice, [minute, next): returns of the
        invoice's own lines fall before the first, whole returned orders between the two, giant
        orders after the second. Each sale and its return then have no sale of the same customer
        between them, so netting (most recent sale first) pairs them exactly."""
        gap = self.next_minute - self.minute
        first = self.minute + np.maximum(1, gap // 3)
        second = np.minimum(self.minute + np.maximum(2, 2 * gap // 3), self.next_minute)
        return first, second

    def lines(
        self,
        invoice_text,
        stock_code,
        description,
        quantity,
        minute,
        price_pence,
        owner,
        customer_text=None,
    ) -> pa.Table:
        """Invoice lines from per-line arrays (``owner`` indexes the chunk's customers)."""
        customers = self.customer_text[owner] if customer_text is None else customer_text
        return _make_table(
            {
                "Invoice": pa.array(invoice_text, pa.string()),
                "StockCode": pa.array(stock_code, pa.string()),
                "Description": pa.array(description, pa.string()),
                "Quantity": pa.array(quantity).cast(pa.string()),
                "InvoiceDate": _format_minutes(self.start, minute),
                "Price": _price_text(np.asarray(price_pence)),
                "Customer ID": pa.array(customers, pa.string()),
                "Country": pa.array(self.country[owner], pa.string()),
            }
        )

    def product_lines(self, invoice_text, product, quantity, minute, price_pence, owner, **kw):
        return self.lines(
            invoice_text,
            self.stock_codes.take(pa.array(product)),
            self.descriptions.take(pa.array(product)),
            quantity,
            minute,
            price_pence,
            owner,
            **kw,
        )


def _format_minutes(start: np.datetime64, minute: np.ndarray) -> pa.Array:
    stamps = (start + np.asarray(minute, dtype=np.int64).astype("timedelta64[m]")).astype(
        "datetime64[s]"
    )
    return pc.strftime(pa.array(stamps), format="%Y-%m-%d %H:%M:%S")


def _return_minute(rng, earliest: np.ndarray, before: np.ndarray, within_days: float):
    """A minute in [earliest, before), at most ``within_days`` after ``earliest``."""
    span = np.minimum(before - earliest, int(within_days * MINUTES_PER_DAY))
    return earliest + np.floor(rng.random(earliest.size) * span).astype(np.int64)


def _pick(rng, candidates: np.ndarray, count: int) -> np.ndarray:
    """``count`` distinct candidates (all of them when there are fewer), in a random order."""
    return rng.permutation(candidates)[: min(count, candidates.size)]


def _c_numbers(numbers: np.ndarray) -> np.ndarray:
    return np.char.add("C", numbers.astype(str))


def generate_chunks(
    rows: int,
    seed: int = 42,
    params: ProcessParameters | None = None,
    settings: GeneratorSettings | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of invoice lines until about ``rows`` lines (dirt included) are produced."""
    settings = settings or GeneratorSettings()
    unknown = set(settings.regimes) - set(REGIMES)
    if unknown:
        raise ValueError(f"unknown regime(s) {sorted(unknown)}; expected some of {REGIMES}")
    params = (params or ProcessParameters()).with_regimes(settings.regimes)
    season = _Season(params, settings.start, settings.days)
    start = np.datetime64(settings.start, "m")
    stock_codes, descriptions = _product_catalog(settings.n_products)
    country_names = pa.array(list(COUNTRIES))
    country_weights = np.array(list(COUNTRIES.values())) / sum(COUNTRIES.values())
    clean_target = rows / (1.0 + settings.extra_lines_per_process_line())
    clean_written, customers_written, chunk_index = 0, 0, 0
    numbers = _InvoiceNumbers(_FIRST_INVOICE_NUMBER)

    while clean_written < clean_target:
        rng = np.random.default_rng([seed, chunk_index])
        n = settings.customers_per_chunk
        owner, moment, latent = _draw_purchases(rng, n, params, season)
        value_pence = _draw_values_pence(rng, owner, n, params)
        invoice, position, quantity, unit_pence = _split_into_lines(rng, value_pence, settings)

        # stop at the customer whose lines reach the target
        lines_per_customer = np.bincount(owner[invoice], minlength=n)
        needed = clean_target - clean_written
        cumulative = np.cumsum(lines_per_customer)
        n_kept = min(n, int(np.searchsorted(cumulative, needed)) + 1)
        keep_invoice = owner < n_kept
        keep_line = keep_invoice[invoice]
        new_invoice_index = np.cumsum(keep_invoice) - 1
        owner, moment, value_pence = (
            owner[keep_invoice],
            moment[keep_invoice],
            value_pence[keep_invoice],
        )
        invoice = new_invoice_index[invoice[keep_line]]
        position, quantity, unit_pence = (
            position[keep_line],
            quantity[keep_line],
            unit_pence[keep_line],
        )

        customer_number = _FIRST_CUSTOMER_ID + customers_written + np.arange(n_kept)
        customer_country = rng.choice(
            country_names.to_numpy(zero_copy_only=False), p=country_weights, size=n_kept
        )
        invoice_number = numbers.take(owner.size)
        # distinct products within an invoice, so no two genuine lines are exact duplicates
        first_product = rng.integers(0, settings.n_products, size=owner.size)
        product = (first_product[invoice] + 7 * position) % settings.n_products

        minute = np.floor(moment * MINUTES_PER_DAY).astype(np.int64)
        same_customer_next = np.append(owner[1:] == owner[:-1], False)
        end_minute = settings.days * MINUTES_PER_DAY
        invoices = _Invoices(
            owner=owner,
            minute=minute,
            next_minute=np.where(same_customer_next, np.append(minute[1:], 0), end_minute),
            number=invoice_number,
            first_product=first_product,
            line_invoice=invoice,
            line_product=product,
            line_count=np.bincount(invoice, minlength=owner.size),
            customer_text=np.asarray(
                _customer_id_text(customer_number).to_numpy(zero_copy_only=False)
            ),
            country=np.asarray(customer_country),
            start=start,
            stock_codes=stock_codes,
            descriptions=descriptions,
            n_products=settings.n_products,
        )
        n_process = invoice.size
        add = _AddedLines(n_process)

        if "returns" in settings.regimes:
            quantity = _partial_returns(rng, invoices, quantity, unit_pence, settings, numbers, add)
        clean_table = invoices.product_lines(
            invoice_number[invoice].astype(str),
            product,
            quantity,
            minute[invoice],
            unit_pence,
            owner[invoice],
        )
        _cancelled_extra_lines(rng, invoices, settings, numbers, add)
        if "returns" in settings.regimes:
            _returned_orders(rng, invoices, settings, numbers, add)
            _unmatched_returns(rng, invoices, n_process, settings, numbers, add)
            ghosts = _FIRST_GIANT_ONLY_CUSTOMER_ID + 100_000 * chunk_index
            _giant_orders(rng, invoices, n_kept, ghosts, settings, numbers, add)
        if "non_product" in settings.regimes:
            _non_product_lines(rng, invoices, settings, numbers, add)
        for reason, table in _dirt(rng, clean_table, unit_pence, settings):
            add(table, reason)

        table = pa.concat_tables([clean_table, *add.tables])
        table = table.take(pa.array(rng.permutation(table.num_rows)))

        day = start.astype("datetime64[D]") + np.floor(moment).astype("timedelta64[D]")
        occasions = (
            pa.table(
                {
                    "customer_id": pa.array(customer_number[owner]).cast(pa.string()),
                    "day": pa.array(day),
                    "revenue_pence": pa.array(value_pence),
                }
            )
            .group_by(["customer_id", "day"])
            .aggregate([("revenue_pence", "sum")])
        )
        dropout_moment = latent["dropout_moment"][:n_kept]
        dropout_day = start.astype("datetime64[D]") + np.floor(
            np.where(np.isfinite(dropout_moment), dropout_moment, 0.0)
        ).astype("timedelta64[D]")
        latent_table = pa.table(
            {
                "customer_id": pa.array(customer_number).cast(pa.string()),
                "purchase_rate_per_week": pa.array(latent["rate_per_week"][:n_kept]),
                "dropout_probability": pa.array(latent["dropout"][:n_kept]),
                "dropout_day": pa.array(dropout_day, mask=~np.isfinite(dropout_moment)),
            }
        )
        yield Chunk(
            lines=table,
            occasions=occasions,
            n_customers=n_kept,
            latent=latent_table,
            expected_reasons=add.expected,
        )

        clean_written += n_process
        customers_written += n_kept
        chunk_index += 1


def _cancelled_extra_lines(rng, invoices: _Invoices, settings, numbers, add) -> None:
    """Cancellations: an extra product on a real invoice, returned whole by a ``C`` invoice
    (half reuse the invoice's number, as real exports do) before the customer's next invoice."""
    wanted = round(invoices.line_invoice.size * settings.dirt_rates.get("cancellation", 0.0))
    room = np.flatnonzero(invoices.next_minute > invoices.minute)
    picked = _pick(rng, room, wanted)
    n = picked.size
    # a product the invoice does not hold yet: the next one in its stride of 7
    product = (
        invoices.first_product[picked] + 7 * invoices.line_count[picked]
    ) % invoices.n_products
    quantity = rng.choice(_QUANTITIES, p=_QUANTITY_WEIGHTS, size=n)
    price = rng.integers(29, 996, size=n)
    owner = invoices.owner[picked]
    number = invoices.number[picked].astype(str)
    add(
        invoices.product_lines(number, product, quantity, invoices.minute[picked], price, owner),
        "clean",
    )
    returns_end, _ = invoices.windows()
    returned_at = _return_minute(rng, invoices.minute[picked], returns_end[picked], 14)
    own_number = rng.random(n) < 0.5
    c_number = np.where(own_number, np.char.add("C", number), _c_numbers(numbers.take(n)))
    add(
        invoices.product_lines(c_number, product, -quantity, returned_at, price, owner),
        "cancellation",
    )


def _partial_returns(rng, invoices: _Invoices, quantity, unit_pence, settings, numbers, add):
    """Some lines are sold with extra units that come back later: the sale line shows the
    larger quantity, a ``C`` line returns the extra. Returns the new line quantities."""
    line_invoice = invoices.line_invoice
    wanted = round(line_invoice.size * settings.return_rates["partial_return"])
    room = np.flatnonzero(invoices.next_minute[line_invoice] > invoices.minute[line_invoice])
    picked = _pick(rng, room, wanted)
    extra = 1 + np.floor(rng.random(picked.size) * quantity[picked]).astype(np.int64)
    quantity = quantity.copy()
    quantity[picked] += extra
    inv = line_invoice[picked]
    returns_end, _ = invoices.windows()
    returned_at = _return_minute(rng, invoices.minute[inv], returns_end[inv], 30)
    add(
        invoices.product_lines(
            _c_numbers(numbers.take(picked.size)),
            invoices.line_product[picked],
            -extra,
            returned_at,
            unit_pence[picked],
            invoices.owner[inv],
        ),
        "cancellation",
    )
    return quantity


def _returned_orders(rng, invoices: _Invoices, settings, numbers, add) -> None:
    """Whole orders of 1-3 lines placed between two real invoices and returned in full."""
    wanted = round(invoices.owner.size * settings.return_rates["returned_order"])
    room = np.flatnonzero(invoices.next_minute - invoices.minute >= 2)
    picked = _pick(rng, room, wanted)
    orders_start, giants_start = invoices.windows()
    placed = _return_minute(rng, orders_start[picked], giants_start[picked], 30)
    returned_at = _return_minute(rng, placed, giants_start[picked], 14)
    n_lines = rng.integers(1, 4, size=picked.size)
    order = np.repeat(np.arange(picked.size), n_lines)
    position = np.arange(order.size) - np.repeat(_group_starts(n_lines), n_lines)
    product = (rng.integers(0, invoices.n_products, size=picked.size)[order] + 7 * position) % (
        invoices.n_products
    )
    quantity = rng.choice(_QUANTITIES, p=_QUANTITY_WEIGHTS, size=order.size)
    price = rng.integers(29, 996, size=order.size)
    owner = invoices.owner[picked][order]
    number = numbers.take(picked.size).astype(str)[order]
    add(invoices.product_lines(number, product, quantity, placed[order], price, owner), "clean")
    add(
        invoices.product_lines(
            np.char.add("C", number), product, -quantity, returned_at[order], price, owner
        ),
        "cancellation",
    )


def _giant_orders(rng, invoices: _Invoices, n_customers, ghost_first, settings, numbers, add):
    """Orders of 10,000-80,000 units cancelled within the hour: after a real purchase of the
    customer, or as the only order of a customer who never buys anything else."""
    rates = settings.return_rates
    room = np.flatnonzero(invoices.next_minute - invoices.minute >= 3)
    picked = _pick(rng, room, round(n_customers * rates["giant_order"]))
    _, giants_start = invoices.windows()
    placed = _return_minute(rng, giants_start[picked], invoices.next_minute[picked], 60)
    returned_at = _return_minute(rng, placed, invoices.next_minute[picked], 1 / 24)
    owner = invoices.owner[picked]
    customer_text = invoices.customer_text[owner]

    n_ghosts = round(n_customers * rates["giant_only_customer"])
    ghost_owner = rng.integers(0, n_customers, size=n_ghosts)  # borrows a country
    ghost_placed = rng.integers(0, settings.days * MINUTES_PER_DAY - 120, size=n_ghosts)
    ghost_text = _customer_id_text(ghost_first + np.arange(n_ghosts)).to_numpy(zero_copy_only=False)
    owner = np.concatenate((owner, ghost_owner))
    placed = np.concatenate((placed, ghost_placed))
    returned_at = np.concatenate((returned_at, ghost_placed + rng.integers(0, 60, size=n_ghosts)))
    customer_text = np.concatenate((customer_text, np.asarray(ghost_text)))

    n = owner.size
    product = rng.integers(0, invoices.n_products, size=n)
    quantity = rng.integers(10_000, 80_001, size=n)
    price = rng.integers(50, 300, size=n)
    number = numbers.take(n).astype(str)
    add(
        invoices.product_lines(
            number, product, quantity, placed, price, owner, customer_text=customer_text
        ),
        "clean",
    )
    add(
        invoices.product_lines(
            np.char.add("C", number),
            product,
            -quantity,
            returned_at,
            price,
            owner,
            customer_text=customer_text,
        ),
        "cancellation",
    )


def _unmatched_returns(rng, invoices: _Invoices, n_lines, settings, numbers, add) -> None:
    """Returns dated before the customer's first purchase: nothing they could reverse."""
    first_invoice = np.flatnonzero(np.append(True, invoices.owner[1:] != invoices.owner[:-1]))
    room = first_invoice[invoices.minute[first_invoice] >= 1]
    picked = _pick(rng, room, round(n_lines * settings.return_rates["unmatched_return"]))
    first_minute = invoices.minute[picked]
    earliest = np.maximum(0, first_minute - 60 * MINUTES_PER_DAY)
    returned_at = _return_minute(rng, earliest, first_minute, 60)
    n = picked.size
    add(
        invoices.product_lines(
            _c_numbers(numbers.take(n)),
            rng.integers(0, invoices.n_products, size=n),
            -rng.integers(1, 13, size=n),
            returned_at,
            rng.integers(29, 996, size=n),
            invoices.owner[picked],
        ),
        "unmatched_cancellation",
    )


def _non_product_lines(rng, invoices: _Invoices, settings, numbers, add) -> None:
    """Postage on real invoices (some refunded before the next invoice), and fee, adjustment,
    sample and voucher invoices of their own."""
    rates = settings.non_product_rates
    n_invoices = invoices.owner.size
    picked = _pick(rng, np.arange(n_invoices), round(n_invoices * rates["postage"]))
    kind = rng.choice(len(_POSTAGE), p=_POSTAGE_WEIGHTS, size=picked.size)
    code = np.array([c for c, _, _ in _POSTAGE])[kind]
    fixed = np.array([p or 0 for _, _, p in _POSTAGE])[kind]
    price = np.where(fixed > 0, fixed, rng.integers(100, 70_000, size=picked.size))
    quantity = np.where(code == "POST", rng.integers(1, 4, size=picked.size), 1)
    owner = invoices.owner[picked]
    number = invoices.number[picked].astype(str)
    description = np.array([d for _, d, _ in _POSTAGE])[kind]
    minute = invoices.minute[picked]
    add(invoices.lines(number, code, description, quantity, minute, price, owner), "non_product")

    refundable = np.flatnonzero(invoices.next_minute[picked] > minute)
    refund = _pick(rng, refundable, round(picked.size * rates["postage_refund"]))
    returned_at = _return_minute(rng, minute[refund], invoices.next_minute[picked][refund], 7)
    add(
        invoices.lines(
            np.char.add("C", number[refund]),
            code[refund],
            description[refund],
            -np.ones(refund.size, dtype=np.int64),
            returned_at,
            price[refund],
            owner[refund],
        ),
        "cancellation",
    )

    picked = _pick(rng, np.arange(n_invoices), round(n_invoices * rates["fee"]))
    kind = rng.integers(0, len(_FEES), size=picked.size)
    fixed = np.array([p or 0 for _, _, p in _FEES])[kind]
    # fees and adjustments run from pennies to thousands of pounds
    drawn = np.rint(np.exp(rng.uniform(np.log(1), np.log(500_000), size=picked.size)))
    add(
        invoices.lines(
            numbers.take(picked.size).astype(str),
            np.array([c for c, _, _ in _FEES])[kind],
            np.array([d for _, d, _ in _FEES])[kind],
            np.ones(picked.size, dtype=np.int64),
            _return_minute(rng, invoices.minute[picked], invoices.next_minute[picked], 30),
            np.where(fixed > 0, fixed, drawn).astype(np.int64),
            invoices.owner[picked],
        ),
        "non_product",
    )


def _dirt(rng, clean: pa.Table, unit_pence, settings) -> list[tuple[str, pa.Table]]:
    """Dirty copies of process lines, each quarantined by cleaning, with its reason."""
    n_clean = clean.num_rows
    rates = settings.dirt_rates

    def pick(reason: str) -> np.ndarray:
        # distinct lines: two identical dirty copies would make the second a duplicate_line
        return _pick(rng, np.arange(n_clean), round(n_clean * rates.get(reason, 0.0)))

    # exact copies of genuine lines
    duplicates = clean.take(pa.array(pick("duplicate_line")))

    # guest purchases without a customer id
    picked = pick("missing_customer_id")
    guests = clean.take(pa.array(picked))
    guests = guests.set_column(6, "Customer ID", pa.array([""] * picked.size))

    # free samples and bad-debt adjustments: zero or negative prices
    picked = pick("non_positive_price")
    adjusted = clean.take(pa.array(picked))
    negative = rng.random(picked.size) < 0.3
    price = np.where(negative, -unit_pence[picked], 0) / 100.0
    adjusted = adjusted.set_column(5, "Price", pa.array(price).cast(pa.string()))
    return [
        ("duplicate_line", duplicates),
        ("missing_customer_id", guests),
        ("non_positive_price", adjusted),
    ]


def write_csv(
    rows: int,
    out: str | Path,
    seed: int = 42,
    params: ProcessParameters | None = None,
    latent: bool = False,
    regimes: tuple[str, ...] | frozenset[str] = (),
) -> dict:
    """Write the CSV and its ``.truth.json``; return the truth document.

    With ``latent``, also ``PATH.latent.parquet``: each customer's drawn purchase rate, dropout
    probability and dropout day — the oracle that churn predictions are compared against.
    ``regimes`` adds real-export regimes on top of the process (see the module docstring); the
    truth document then also holds ``expected_reasons``: the rows cleaning must put in each
    quarantine reason, and ``clean``.
    """
    settings = GeneratorSettings(regimes=frozenset(regimes))
    params = (params or ProcessParameters()).with_regimes(settings.regimes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_customers, n_repeat_customers, n_rows = 0, 0, 0
    expected: dict[str, int] = {}
    latent_writer = None
    with pacsv.CSVWriter(
        str(out), RAW_SCHEMA, write_options=pacsv.WriteOptions(quoting_style="none")
    ) as writer:
        for chunk in generate_chunks(rows, seed, params, settings):
            writer.write_table(chunk.lines.cast(RAW_SCHEMA))
            for reason, count in chunk.expected_reasons.items():
                expected[reason] = expected.get(reason, 0) + count
            if latent:
                latent_writer = latent_writer or pq.ParquetWriter(
                    f"{out}.latent.parquet", chunk.latent.schema
                )
                latent_writer.write_table(chunk.latent)
            n_rows += chunk.lines.num_rows
            n_customers += chunk.n_customers
            per_customer = pc.value_counts(chunk.occasions["customer_id"]).field("counts")
            n_repeat_customers += pc.sum(pc.greater(per_customer, 1)).as_py() or 0
    if latent_writer is not None:
        latent_writer.close()
    truth = {
        "time_unit": "W",
        "bgnbd": {
            "r": params.r,
            "alpha": params.alpha,
            "a": params.a,
            "b": None if params.a == 0.0 else params.b,  # undefined when nobody drops out
            "n_customers": n_customers,
        },
        "gamma_gamma": {
            "p": params.p,
            "q": params.q,
            "gamma": params.gamma,
            "n_customers": n_repeat_customers,
        },
        "seed": seed,
        "rows": n_rows,
    }
    if params.peak_factor != 1.0:
        truth["season"] = {"peak_factor": params.peak_factor, "peak_days": list(params.peak_days)}
    if settings.regimes:
        truth["regimes"] = sorted(settings.regimes)
        truth["expected_reasons"] = dict(sorted(expected.items()))
    Path(f"{out}.truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cltv.synthetic", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, required=True, help="number of invoice lines (±1%%)")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--latent",
        action="store_true",
        help="also write each customer's latent rate and dropout to PATH.latent.parquet",
    )
    parser.add_argument(
        "--returns",
        action="store_true",
        help="add partial and whole-order returns, giant orders cancelled within the hour, and "
        "returns with no sale to reverse",
    )
    parser.add_argument(
        "--non-product",
        action="store_true",
        help="add postage, fee, adjustment, sample and voucher lines",
    )
    parser.add_argument(
        "--no-dropout", action="store_true", help="nobody drops out during the data (a -> 0)"
    )
    parser.add_argument(
        "--heavy-tail-spend",
        action="store_true",
        help="heavy-tailed spend: Gamma-Gamma's q = 1.2, close to 1",
    )
    parser.add_argument(
        "--seasonal-peak",
        action="store_true",
        help="purchases twice as frequent from mid-September to mid-December (the holdout)",
    )
    args = parser.parse_args(argv)
    regimes = [name for name in REGIMES if getattr(args, name)]
    truth = write_csv(args.rows, args.out, args.seed, latent=args.latent, regimes=regimes)
    print(
        f"wrote {truth['rows']} lines for {truth['bgnbd']['n_customers']} customers to {args.out}"
    )


if __name__ == "__main__":
    main()
