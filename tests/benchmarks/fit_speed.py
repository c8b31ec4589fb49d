"""Fit speed: our purchase models (BG/NBD, MBG/NBD, Pareto/NBD) and Gamma-Gamma against lifetimes
on the same customers.

Customers come from ``cltv.synthetic``'s process (its purchase occasions, seed 7; no CSV and no
Spark, so only the fitters are timed), summarised over the whole period in weeks as the
pipeline does. Our fitters get what the pipeline gives them, the distinct rows with their
counts; lifetimes gets one row per customer, as its users call it. Each side is fitted once
warm (imports and first calls done), then ours timed over ``--repeat`` fits and lifetimes over
one (its Pareto/NBD takes minutes); the table gives the best time and the ratio. lifetimes'
default tolerance (1e-7) stops before its answer is precise to 1e-6, so it is also fitted once
with the tightest ``tol`` of 1e-12, 1e-10, 1e-9 and 1e-8 at which it reports convergence (timed
too) for the largest relative difference of the parameters, the agreement that matters. Not
part of ``make test``:

    python -m tests.benchmarks.fit_speed --customers 500000 2000000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import numpy as np
import pandas as pd

from cltv.models import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from cltv.synthetic import GeneratorSettings, generate_chunks


def customer_summaries(n_customers: int, seed: int = 7) -> pd.DataFrame:
    """frequency, recency, T (weeks, to the period's last day) and monetary_value (mean repeat
    spend, pounds) of the first ``n_customers`` customers the generator draws."""
    settings = GeneratorSettings()
    frames, n = [], 0
    # ask for far more lines than needed and stop at the customer count
    for chunk in generate_chunks(n_customers * 100, seed, settings=settings):
        occasions = chunk.occasions.to_pandas().sort_values(["customer_id", "day"])
        frames.append(occasions)
        n += chunk.n_customers
        if n >= n_customers:
            break
    occasions = pd.concat(frames, ignore_index=True)
    end = np.datetime64(settings.start, "D") + settings.days - 1
    day = occasions["day"].to_numpy("datetime64[D]")
    occasions["day_number"] = (day - np.datetime64(settings.start, "D")).astype(np.int64)
    occasions["revenue"] = occasions["revenue_pence_sum"] / 100.0
    first = occasions.groupby("customer_id", sort=False)["day_number"].transform("min")
    repeat = occasions["day_number"] > first
    grouped = occasions.assign(repeat_revenue=occasions["revenue"].where(repeat)).groupby(
        "customer_id", sort=False
    )
    summary = pd.DataFrame(
        {
            "frequency": grouped.size() - 1,
            "first": grouped["day_number"].min(),
            "last": grouped["day_number"].max(),
            "monetary_value": grouped["repeat_revenue"].mean().fillna(0.0),
        }
    )
    end_number = int((end - np.datetime64(settings.start, "D")).astype(np.int64))
    summary["recency"] = (summary["last"] - summary["first"]) / 7.0
    summary["T"] = (end_number - summary["first"]) / 7.0
    return summary.head(n_customers)[["frequency", "recency", "T", "monetary_value"]]


def _best(fit, repeat: int) -> tuple[float, object]:
    fitted = fit()  # warm: first calls, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fitted = fit()
        times.append(time.perf_counter() - start)
    return min(times), fitted


def _precise(fit) -> tuple[float, object, float]:
    from lifetimes.utils import ConvergenceError

    for tolerance in (1e-12, 1e-10, 1e-9, 1e-8):
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints the failed result
                elapsed, fitted = _best(lambda tolerance=tolerance: fit(tolerance), 1)
        except ConvergenceError:
            continue
        return elapsed, fitted, tolerance
    raise RuntimeError("lifetimes did not converge at any tolerance")


def _largest_difference(ours: dict, theirs: dict) -> float:
    return max(abs(ours[k] / theirs[k] - 1.0) for k in theirs)


def measure(summary: pd.DataFrame, repeat: int) -> list[dict]:
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter

    histories = summary.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
    repeaters = summary[summary["frequency"] > 0]
    spends = repeaters.groupby(["frequency", "monetary_value"]).size().reset_index(name="n")
    rows = []
    columns = (summary["frequency"], summary["recency"], summary["T"])
    for label, ours_class, theirs_class in (
        ("BG/NBD", BetaGeoModel, BetaGeoFitter),
        ("MBG/NBD", ModifiedBetaGeoModel, ModifiedBetaGeoFitter),
        ("Pareto/NBD", ParetoNBDModel, ParetoNBDFitter),
    ):
        ours_time, ours = _best(
            lambda ours_class=ours_class: ours_class().fit(
                histories["frequency"], histories["recency"], histories["T"], histories["n"]
            ),
            repeat,
        )
        theirs_time, _ = _best(lambda theirs_class=theirs_class: theirs_class().fit(*columns), 1)
        precise_time, theirs, tolerance = _precise(
            lambda tol, theirs_class=theirs_class: theirs_class().fit(*columns, tol=tol)
        )
        rows.append(
            {
                "model": label,
                "customers": len(summary),
                "our_rows": len(histories),
                "ours_s": ours_time,
                "lifetimes_s": theirs_time,
                "lifetimes_precise_s": precise_time,
                "lifetimes_tolerance": tolerance,
                "largest_param_difference": _largest_difference(
                    ours.params_, dict(theirs.params_.items())
                ),
                "params": ours.params_,
            }
        )

    ours_time, ours = _best(
        lambda: GammaGammaModel().fit(spends["frequency"], spends["monetary_value"], spends["n"]),
        repeat,
    )
    theirs_time, _ = _best(
        lambda: GammaGammaFitter().fit(
            repeaters["frequency"], repeaters["monetary_value"], q_constraint=True
        ),
        repeat,
    )
    precise_time, theirs, tolerance = _precise(
        lambda tol: GammaGammaFitter().fit(
            repeaters["frequency"], repeaters["monetary_value"], q_constraint=True, tol=tol
        )
    )
    their_params = {
        "p": theirs.params_["p"],
        "q": theirs.params_["q"],
        "gamma": theirs.params_["v"],
    }
    rows.append(
        {
            "model": "Gamma-Gamma",
            "customers": len(repeaters),
            "our_rows": len(spends),
            "ours_s": ours_time,
            "lifetimes_s": theirs_time,
            "lifetimes_precise_s": precise_time,
            "lifetimes_tolerance": tolerance,
            "largest_param_difference": _largest_difference(ours.params_, their_params),
            "params": ours.params_,
        }
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.fit_speed")
    parser.add_argument("--customers", type=int, nargs="+", default=[500_000, 2_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(
        "| model | customers | our rows | ours (s) | lifetimes (s) | speed-up "
        "| lifetimes, tight tol (s) | speed-up | max rel. diff |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.customers:
        summary = customer_summaries(n)
        for row in measure(summary, args.repeat):
            print(
                f"| {row['model']} | {row['customers']:,} | {row['our_rows']:,} | "
                f"{row['ours_s']:.3f} | {row['lifetimes_s']:.2f} | "
                f"{row['lifetimes_s'] / row['ours_s']:.1f}× | "
                f"{row['lifetimes_precise_s']:.2f} (tol {row['lifetimes_tolerance']:g}) | "
                f"{row['lifetimes_precise_s'] / row['ours_s']:.1f}× | "
                f"{row['largest_param_difference']:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
