"""Do the CLV intervals cover the truth? A coverage study on ``cltv.synthetic`` data.

For each seed: draw the process of ``rows`` invoice lines with the same true parameters, take
each customer's purchase occasions (what cleaning recovers from the lines, checked elsewhere),
summarise them with lifetimes (the oracle's summary, in weeks), fit each purchase model and
Gamma-Gamma, and value every customer with :func:`cltv.pipelines.cltv.nodes.customer_values`
(``cltv.uncertainty``: 200 draws, central 80%). The customer's *true* expected CLV is the same
valuation at the true parameters of the truth file. A seed's coverage is the share of
customers whose true CLV lies inside their interval; the intervals are about the parameters'
estimation error, which all customers of a data set share, so one seed's coverage is near 0
or 1 when the estimate is far off and the figure to compare with 80% is the mean over seeds.

The other purchase models are misspecified on that data, so ``--simulated`` draws each
model's own process instead (:func:`simulated_summary`, with Gamma-Gamma spend) and checks it
against its own truth.

``python -m tests.cltv_coverage --seeds 50 --rows 100000`` prints the mean, per model, and
writes every seed's figures as JSON (``--out``); ``--simulated --rows 5000`` the same on each
model's own process, 5,000 customers per data set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data

from cltv.models import GammaGammaModel
from cltv.models.uncertainty import parameter_draws, spend_draws
from cltv.pipelines.cltv.nodes import PURCHASE_MODELS, customer_values
from cltv.synthetic import GeneratorSettings, ProcessParameters, generate_chunks

VALUATION = {"horizon_months": 12, "discount_rate": 0.01, "margin": 1.0, "value_tiers": []}
UNCERTAINTY = {"interval": 0.8, "draws": 200, "seed": 18}  # conf/base's cltv.uncertainty
NAIVE = {"mean_repeat_order_value": 0.0, "expected_lifespan_months": None}  # not studied


def generated_summary(rows: int, seed: int, regimes: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per customer, in weeks at the last purchase day: frequency, recency, T, monetary value
    (mean repeat occasion revenue, pounds), from the occasions the process drew."""
    settings = GeneratorSettings(regimes=frozenset(regimes))
    occasions = pd.concat(
        chunk.occasions.to_pandas() for chunk in generate_chunks(rows, seed, settings=settings)
    )
    occasions["day"] = pd.to_datetime(occasions["day"])
    occasions["revenue"] = occasions["revenue_pence_sum"] / 100.0
    summary = summary_data_from_transaction_data(
        occasions,
        "customer_id",
        "day",
        monetary_value_col="revenue",
        observation_period_end=occasions["day"].max(),
        freq="D",
    )
    summary[["recency", "T"]] /= 7.0
    return summary.reset_index()


def true_fit(regimes: tuple[str, ...] = ()) -> dict:
    """The truth as a fit: the generating BG/NBD and Gamma-Gamma, exactly (no covariance)."""
    params = ProcessParameters().with_regimes(frozenset(regimes))
    spend = {"p": params.p, "q": params.q, "gamma": params.gamma}
    return {
        "time_unit": "W",
        "purchase_model": "bgnbd",
        "bgnbd": {
            "r": params.r,
            "alpha": params.alpha,
            "a": params.a,
            "b": None if params.a == 0.0 else params.b,
        },
        "gamma_gamma": {**spend, "population_mean": params.p * params.gamma / (params.q - 1.0)},
    }


# the simulated processes' true parameters: purchases (each model's), spend (Gamma-Gamma)
SIMULATED_TRUTH = {"r": 0.5, "alpha": 8.0, "a": 0.8, "b": 2.5, "s": 0.6, "beta": 12.0}
SIMULATED_SPEND = {"p": 6.0, "q": 3.8, "gamma": 15.0}


def simulated_customers(model: str, n: int, seed: int, horizon: float = 0.0):
    """Histories and holdout counts (over ``horizon`` weeks) drawn from ``model`` itself at
    :data:`SIMULATED_TRUTH`, each customer observed for T ~ U(20, 60) weeks after the first
    purchase: (x, t_x, T, holdout, truth)."""
    rng = np.random.default_rng(seed)
    big_t = rng.uniform(20, 60, n)
    x, t_x, holdout = np.zeros(n), np.zeros(n), np.zeros(n)
    truth = SIMULATED_TRUTH
    rate = rng.gamma(truth["r"], 1 / truth["alpha"], n)
    if model == "pnbd":
        lifetime = rng.exponential(1 / rng.gamma(truth["s"], 1 / truth["beta"], n))
    else:
        dropout = rng.beta(truth["a"], truth["b"], n)
    for i in range(n):
        time, end = 0.0, big_t[i] + horizon
        alive = not (model == "mbgnbd" and rng.random() < dropout[i])
        while alive:
            time += rng.exponential(1 / rate[i])
            if time > end or (model == "pnbd" and time > lifetime[i]):
                break
            if time <= big_t[i]:
                x[i], t_x[i] = x[i] + 1, time
            else:
                holdout[i] += 1
            alive = model == "pnbd" or rng.random() >= dropout[i]
    return x, t_x, big_t, holdout, truth


def simulated_summary(model: str, n: int, seed: int) -> pd.DataFrame:
    """:func:`simulated_customers` with Gamma-Gamma spend: each repeat customer's mean of x
    order values, Gamma(p, nu) each with nu ~ Gamma(q, gamma)."""
    x, t_x, big_t, _, _ = simulated_customers(model, n, seed)
    rng = np.random.default_rng([seed, 1])
    spend = SIMULATED_SPEND
    nu = rng.gamma(spend["q"], 1 / spend["gamma"], n)
    # the sum of x Gamma(p, nu) values is Gamma(p x, nu)
    mean_value = np.where(
        x > 0, rng.gamma(spend["p"] * np.maximum(x, 1), 1 / nu) / np.maximum(x, 1), 0.0
    )
    return pd.DataFrame(
        {
            "customer_id": np.arange(n).astype(str),
            "frequency": x.astype(int),
            "recency": t_x,
            "T": big_t,
            "monetary_value": mean_value,
        }
    )


def simulated_fit(model: str) -> dict:
    """The simulated process's truth as a fit of ``model``."""
    names = PURCHASE_MODELS[model].param_names
    spend = SIMULATED_SPEND
    return {
        "time_unit": "W",
        "purchase_model": model,
        model: {name: SIMULATED_TRUTH[name] for name in names},
        "gamma_gamma": {**spend, "population_mean": spend["p"] * spend["gamma"] / (spend["q"] - 1)},
    }


def fitted(summary: pd.DataFrame, model: str) -> dict:
    """The pipeline's fit of ``model`` and Gamma-Gamma (weighted by distinct rows, as there)."""
    histories = summary.groupby(["frequency", "recency", "T"]).size().reset_index(name="count")
    purchases = PURCHASE_MODELS[model]().fit(
        histories["frequency"], histories["recency"], histories["T"], histories["count"]
    )
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    spends = repeat.groupby(["frequency", "monetary_value"]).size().reset_index(name="count")
    spend = GammaGammaModel().fit(spends["frequency"], spends["monetary_value"], spends["count"])
    # through JSON, as the pipeline reads cltv_model_fit.json back
    return json.loads(
        json.dumps(
            {
                "time_unit": "W",
                "purchase_model": model,
                model: purchases.summary(),
                "gamma_gamma": spend.summary(),
            }
        )
    )


VALUE_COLUMNS = ("clv", "expected_purchases", "p_alive", "expected_average_order_value")


def _inside(values: pd.DataFrame, truth: pd.DataFrame, model: str) -> dict[str, float]:
    return {
        f"{model}_{column}": float(
            (
                (values[f"{column}_lower"] <= truth[column])
                & (truth[column] <= values[f"{column}_upper"])
            ).mean()
        )
        for column in VALUE_COLUMNS
    }


def seed_coverage(
    seed: int, rows: int, models: tuple[str, ...], regimes: tuple[str, ...] = ()
) -> dict:
    """One ``cltv.synthetic`` data set (BG/NBD's process): per model, the share of customers
    whose true CLV is inside their interval, and the same for expected purchases, P(alive)
    and order value. For the other models the truth is still BG/NBD's: a misspecified
    model's figure measures its bias as much as its intervals."""
    summary = generated_summary(rows, seed, regimes)
    truth = customer_values(summary, true_fit(regimes), NAIVE, VALUATION, UNCERTAINTY)
    result: dict = {"seed": seed, "customers": len(summary)}
    for model in models:
        values = customer_values(summary, fitted(summary, model), NAIVE, VALUATION, UNCERTAINTY)
        result.update(_inside(values, truth, model))
    return result


def simulated_seed_coverage(seed: int, customers: int, models: tuple[str, ...]) -> dict:
    """Each model on data drawn from its own process (:func:`simulated_summary`): the
    coverage of its true values by its intervals."""
    result: dict = {"seed": seed, "customers": customers}
    for model in models:
        summary = simulated_summary(model, customers, seed)
        truth = customer_values(summary, simulated_fit(model), NAIVE, VALUATION, UNCERTAINTY)
        values = customer_values(summary, fitted(summary, model), NAIVE, VALUATION, UNCERTAINTY)
        result.update(_inside(values, truth, model))
    return result


def study(seeds: int, rows: int, models: tuple[str, ...], regimes=(), simulated=False) -> dict:
    """Mean coverage over ``seeds`` data sets: ``cltv.synthetic`` of ``rows`` lines, or each
    model's own process (``simulated``, ``rows`` customers)."""
    if simulated:
        per_seed = [simulated_seed_coverage(seed, rows, models) for seed in range(seeds)]
    else:
        per_seed = [seed_coverage(seed, rows, models, regimes) for seed in range(seeds)]
    keys = [k for k in per_seed[0] if k not in ("seed", "customers")]
    return {
        "seeds": seeds,
        "rows": rows,
        "data": "each model's own process" if simulated else "cltv.synthetic (BG/NBD)",
        "regimes": list(regimes),
        "mean_customers": float(np.mean([r["customers"] for r in per_seed])),
        "mean_coverage": {k: float(np.mean([r[k] for r in per_seed])) for k in keys},
        "per_seed": per_seed,
    }


def value_every_draw(customers: pd.DataFrame, fit: dict, valuation: dict) -> dict[str, np.ndarray]:
    """The brute force the linearisation replaces: every draw's parameters valued exactly,
    (customers, draws) per value column; the node's draws (:data:`UNCERTAINTY`'s seeds)."""
    name = fit["purchase_model"]
    model = PURCHASE_MODELS[name]
    draws = parameter_draws(model, fit[name], UNCERTAINTY["draws"], UNCERTAINTY["seed"])
    spends = spend_draws(fit["gamma_gamma"], UNCERTAINTY["draws"], UNCERTAINTY["seed"] + 1)
    exact = []
    for d, draw in enumerate(draws):
        gamma_gamma = {
            "p": spends["p"][d],
            "q": spends["q"][d],
            "gamma": spends["gamma"][d],
            "population_mean": spends["population_mean"][d],
        }
        one = {**fit, name: {k: v for k, v in draw.items() if k != "covariance"}}
        one["gamma_gamma"] = gamma_gamma
        exact.append(customer_values(customers, one, NAIVE, valuation, UNCERTAINTY))
    columns = ("p_alive", "expected_purchases", "expected_average_order_value", "clv")
    return {c: np.column_stack([values[c] for values in exact]) for c in columns}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.cltv_coverage", description=__doc__)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--models", default="bgnbd,mbgnbd,pnbd")
    parser.add_argument("--regimes", default="")
    parser.add_argument(
        "--simulated",
        action="store_true",
        help="each model on data from its own process; --rows is then customers per data set",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = study(
        args.seeds,
        args.rows,
        tuple(args.models.split(",")),
        tuple(r for r in args.regimes.split(",") if r),
        simulated=args.simulated,
    )
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_seed"}, indent=2))


if __name__ == "__main__":
    main()
