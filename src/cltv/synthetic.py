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

Dirt is added on top of the process and never changes it: cancellations (``C`` invoices with
negative quantities), lines without a ``Customer ID``, zero or negative prices, and exact
duplicate lines. After cleaning, the purchase occasions (customer, day, revenue) are exactly the
distinct purchase days the process drew — two purchases drawn on one calendar day are one
occasion, as in the SPEC's definition.

Memory is flat in N: customers are drawn and written in fixed-size chunks, each from its own
seeded random stream, so the output is deterministic per seed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class GeneratorSettings:
    """Shape of the output around the process: period, basket sizes, dirt rates."""

    start: str = "2009-12-01"
    days: int = 739  # 2009-12-01 .. 2011-12-09 inclusive, as in Online Retail II
    mean_lines_per_invoice: float = 4.0
    n_products: int = 3000
    customers_per_chunk: int = 20_000
    dirt_rates: dict[str, float] = field(
        default_factory=lambda: {
            "missing_customer_id": 0.15,
            "cancellation": 0.02,
            "duplicate_line": 0.01,
            "non_positive_price": 0.005,
        }
    )


@dataclass
class Chunk:
    """One chunk of customers: their CSV lines and the occasions the process drew."""

    lines: pa.Table
    occasions: pa.Table  # customer_id, day (date32), revenue_pence
    n_customers: int
    # customer_id, purchase_rate_per_week, dropout_probability, dropout_day (null: alive at end)
    latent: pa.Table


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


def _draw_purchases(rng: np.random.Generator, n: int, params: ProcessParameters, days: int):
    """Purchases of ``n`` customers: (customer index, moment in days since the period start)."""
    first_moment = rng.uniform(0.0, days, size=n)
    rate_per_day = rng.gamma(params.r, 1.0 / params.alpha, size=n) / 7.0
    dropout = rng.beta(params.a, params.b, size=n)
    window = days - first_moment
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
    repeat_moment = first_moment[repeat_owner] + uniforms[kept] * window[repeat_owner]

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
    # Redraw until every invoice balances: each round turns the baskets that did not into
    # one-line invoices (which always balance), so the loop ends. Stopping after a second round
    # failed on 50M lines, where a basket could fail in both.
    while True:
        invoice = np.repeat(np.arange(n_invoices), n_lines)
        position = np.arange(invoice.size) - np.repeat(_group_starts(n_lines), n_lines)
        is_last = position == n_lines[invoice] - 1
        weight = rng.exponential(size=invoice.size)
        share = weight / np.bincount(invoice, weights=weight, minlength=n_invoices)[invoice]
        quantity = rng.choice(_QUANTITIES, p=_QUANTITY_WEIGHTS, size=invoice.size)
        quantity[is_last] = 1
        unit_pence = np.maximum(1, np.floor(share * value_pence[invoice] / quantity)).astype(
            np.int64
        )
        unit_pence[is_last] = 0
        others = np.bincount(invoice, weights=quantity * unit_pence, minlength=n_invoices)
        remainder = value_pence - others.astype(np.int64)
        if (remainder > 0).all():
            unit_pence[is_last] = remainder[invoice[is_last]]
            return invoice, position, quantity, unit_pence
        n_lines = np.where(remainder > 0, n_lines, 1)  # tiny baskets: one line carries it all


def _format_dates(start: np.datetime64, moment_days: np.ndarray) -> pa.Array:
    minutes = np.floor(moment_days * 1440.0).astype("timedelta64[m]")
    stamps = (start + minutes).astype("datetime64[s]")
    return pc.strftime(pa.array(stamps), format="%Y-%m-%d %H:%M:%S")


def _customer_id_text(customer_number: np.ndarray) -> pa.Array:
    # Online Retail II exports carry the id as a float ("13085.0"); cleaning normalises it.
    return pc.binary_join_element_wise(
        pa.array(customer_number).cast(pa.string()), pa.scalar(".0"), ""
    )


def _price_text(pence: np.ndarray) -> pa.Array:
    return pa.array(pence / 100.0).cast(pa.string())


def _make_table(columns: dict[str, pa.Array]) -> pa.Table:
    return pa.table({name: columns[name] for name in RAW_COLUMNS})


def generate_chunks(
    rows: int,
    seed: int = 42,
    params: ProcessParameters | None = None,
    settings: GeneratorSettings | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of invoice lines until about ``rows`` lines (dirt included) are produced."""
    params = params or ProcessParameters()
    settings = settings or GeneratorSettings()
    start = np.datetime64(settings.start, "m")
    stock_codes, descriptions = _product_catalog(settings.n_products)
    country_names = pa.array(list(COUNTRIES))
    country_weights = np.array(list(COUNTRIES.values())) / sum(COUNTRIES.values())
    dirt_total = sum(settings.dirt_rates.values())
    clean_target = rows / (1.0 + dirt_total)
    clean_written, customers_written, invoices_written, chunk_index = 0, 0, 0, 0

    while clean_written < clean_target:
        rng = np.random.default_rng([seed, chunk_index])
        n = settings.customers_per_chunk
        owner, moment, latent = _draw_purchases(rng, n, params, settings.days)
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
        invoice_number = _FIRST_INVOICE_NUMBER + invoices_written + np.arange(owner.size)
        # distinct products within an invoice, so no two genuine lines are exact duplicates
        first_product = rng.integers(0, settings.n_products, size=owner.size)
        product = (first_product[invoice] + 7 * position) % settings.n_products

        line_owner = owner[invoice]
        clean = {
            "Invoice": pa.array(invoice_number[invoice]).cast(pa.string()),
            "StockCode": stock_codes.take(pa.array(product)),
            "Description": descriptions.take(pa.array(product)),
            "Quantity": pa.array(quantity).cast(pa.string()),
            "InvoiceDate": _format_dates(start, moment).take(pa.array(invoice)),
            "Price": _price_text(unit_pence),
            "Customer ID": _customer_id_text(customer_number[line_owner]),
            "Country": pa.array(customer_country[line_owner]),
        }
        clean_table = _make_table(clean)
        n_clean = clean_table.num_rows
        dirt = _dirt(
            rng,
            clean_table,
            moment[invoice],
            unit_pence,
            settings,
            start,
            invoices_written + owner.size,
        )
        table = pa.concat_tables([clean_table, *dirt])
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
        yield Chunk(lines=table, occasions=occasions, n_customers=n_kept, latent=latent_table)

        clean_written += n_clean
        customers_written += n_kept
        invoices_written += owner.size + int(np.ceil(n_clean * dirt_total)) + 1
        chunk_index += 1


def _dirt(
    rng, clean: pa.Table, line_moment, unit_pence, settings, start, next_invoice
) -> list[pa.Table]:
    """Dirty lines added on top of the clean ones; each is quarantined by cleaning."""
    n_clean = clean.num_rows
    rates = settings.dirt_rates
    tables = []

    def count(reason: str) -> int:
        return round(n_clean * rates.get(reason, 0.0))

    # exact copies of genuine lines
    tables.append(clean.take(pa.array(rng.integers(0, n_clean, size=count("duplicate_line")))))

    # cancellations: the same line reversed a few days later, as a C-invoice (half of them
    # reuse the original invoice number, half have none to match)
    picked = rng.integers(0, n_clean, size=count("cancellation"))
    cancelled = clean.take(pa.array(picked))
    later = np.minimum(
        line_moment[picked] + rng.uniform(0, 14, size=picked.size), settings.days - 1e-3
    )
    original = pc.cast(cancelled["Invoice"], pa.string())
    unmatched = pa.array(next_invoice + np.arange(picked.size)).cast(pa.string())
    use_original = pa.array(rng.random(picked.size) < 0.5)
    cancel_number = pc.if_else(use_original, original, unmatched)
    cancelled = cancelled.set_column(
        0, "Invoice", pc.binary_join_element_wise("C", cancel_number, "")
    )
    cancelled = cancelled.set_column(
        3, "Quantity", pc.binary_join_element_wise("-", cancelled["Quantity"], "")
    )
    cancelled = cancelled.set_column(4, "InvoiceDate", _format_dates(start, later))
    tables.append(cancelled)

    # guest purchases without a customer id
    picked = rng.integers(0, n_clean, size=count("missing_customer_id"))
    guests = clean.take(pa.array(picked))
    guests = guests.set_column(6, "Customer ID", pa.array([""] * picked.size))
    tables.append(guests)

    # free samples and bad-debt adjustments: zero or negative prices
    picked = rng.integers(0, n_clean, size=count("non_positive_price"))
    adjusted = clean.take(pa.array(picked))
    negative = rng.random(picked.size) < 0.3
    price = np.where(negative, -unit_pence[picked], 0) / 100.0
    adjusted = adjusted.set_column(5, "Price", pa.array(price).cast(pa.string()))
    tables.append(adjusted)
    return tables


def write_csv(
    rows: int,
    out: str | Path,
    seed: int = 42,
    params: ProcessParameters | None = None,
    latent: bool = False,
) -> dict:
    """Write the CSV and its ``.truth.json``; return the truth document.

    With ``latent``, also ``PATH.latent.parquet``: each customer's drawn purchase rate, dropout
    probability and dropout day — the oracle that churn predictions are compared against.
    """
    params = params or ProcessParameters()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_customers, n_repeat_customers, n_rows = 0, 0, 0
    latent_writer = None
    with pacsv.CSVWriter(
        str(out), RAW_SCHEMA, write_options=pacsv.WriteOptions(quoting_style="none")
    ) as writer:
        for chunk in generate_chunks(rows, seed, params):
            writer.write_table(chunk.lines.cast(RAW_SCHEMA))
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
            "b": params.b,
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
    args = parser.parse_args(argv)
    truth = write_csv(args.rows, args.out, args.seed, latent=args.latent)
    print(
        f"wrote {truth['rows']} lines for {truth['bgnbd']['n_customers']} customers to {args.out}"
    )


if __name__ == "__main__":
    main()
