"""The alternative a user would write: one pandas + lifetimes + scikit-learn script.

The same cleaning rules and definitions as the project (SPEC), written plainly, in memory.
Run: python tests/benchmarks/reference_pandas.py INPUT.csv OUTPUT_DIR
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HOLDOUT_DAYS = 90
HORIZON_MONTHS = 12
DISCOUNT_RATE = 0.01
NON_PRODUCT_CODES = ["POST", "DOT", "C2", "M", "D", "S", "B", "PADS", "CRUK", "BANK CHARGES"]
NON_PRODUCT_CODES += ["AMAZONFEE", "ADJUST", "ADJUST2", "SP1002"]
NON_PRODUCT_PATTERN = r"^gift_0001_|^DCGS|^TEST\d*$"

input_path, output_dir = sys.argv[1], Path(sys.argv[2])
output_dir.mkdir(parents=True, exist_ok=True)

# ---- read and clean (the project's quarantine rules, as a pandas user would write them)
lines = pd.read_csv(input_path, dtype={"Invoice": str, "StockCode": str})
lines["InvoiceDate"] = pd.to_datetime(lines["InvoiceDate"], format="%Y-%m-%d %H:%M:%S")
rows = len(lines)
lines = lines.dropna(subset=["Customer ID"]).drop_duplicates()
is_return = lines["Invoice"].str.upper().str.startswith("C") | (lines["Quantity"] < 0)
code = lines["StockCode"].str.strip()
non_product = code.str.upper().isin(NON_PRODUCT_CODES) | code.str.contains(
    NON_PRODUCT_PATTERN, case=False, regex=True
)
sale = ~is_return & ~non_product & (lines["Quantity"] > 0) & (lines["Price"] > 0)
lines = lines[sale | is_return].assign(is_return=is_return, StockCode=code)

# returns netted against the same customer's sales of the stock code at or before them, most
# recent first: per (customer, code) the units on hand are a reflected running sum, and a sale
# keeps the units that the lowest later level never reached
lines = lines.sort_values(["Customer ID", "StockCode", "InvoiceDate", "is_return"], kind="stable")
units = lines["Quantity"].abs()
keys = [lines["Customer ID"], lines["StockCode"]]
running = units.where(~lines["is_return"], -units).groupby(keys).cumsum()
level = running - np.minimum(0, running.groupby(keys).cummin())
lowest_after = level.iloc[::-1].groupby([k.iloc[::-1] for k in keys]).cummin().iloc[::-1]
kept = (lowest_after - (level - units)).clip(lower=0, upper=units)
clean = lines[~lines["is_return"]].assign(Quantity=kept[~lines["is_return"]])
clean = pd.DataFrame(
    {
        "customer_id": clean["Customer ID"].astype("int64").astype(str),
        "invoice_date": clean["InvoiceDate"],
        "revenue": clean["Quantity"] * clean["Price"],
        "country": clean["Country"],
    }
)
clean.to_parquet(output_dir / "transactions_clean.parquet")
del lines

# ---- purchase occasions: one (customer, day) with positive revenue
clean["day"] = clean["invoice_date"].dt.normalize()
occasions = clean.groupby(["customer_id", "day"], as_index=False)["revenue"].sum()
occasions = occasions[occasions["revenue"] > 0]
observation_end = occasions["day"].max()
calibration_end = observation_end - pd.Timedelta(days=HOLDOUT_DAYS)

# ---- BG/NBD + Gamma-Gamma, validated on the holdout
summary = calibration_and_holdout_data(
    occasions,
    "customer_id",
    "day",
    calibration_period_end=calibration_end,
    observation_period_end=observation_end,
    freq="W",
    monetary_value_col="revenue",
)
calibration_fit = BetaGeoFitter().fit(
    summary["frequency_cal"], summary["recency_cal"], summary["T_cal"]
)
predicted = calibration_fit.conditional_expected_number_of_purchases_up_to_time(
    summary["duration_holdout"], summary["frequency_cal"], summary["recency_cal"], summary["T_cal"]
)
naive_rate = summary["frequency_cal"] / summary["T_cal"].where(summary["T_cal"] > 0)
naive = (naive_rate.fillna(0) * summary["duration_holdout"]).to_numpy()
actual = summary["frequency_holdout"].to_numpy()
validation = {
    "mae_bgnbd": float(np.mean(np.abs(predicted.to_numpy() - actual))),
    "mae_naive": float(np.mean(np.abs(naive - actual))),
}

current = summary_data_from_transaction_data(
    occasions,
    "customer_id",
    "day",
    observation_period_end=observation_end,
    freq="W",
    monetary_value_col="revenue",
)
bgf = BetaGeoFitter().fit(current["frequency"], current["recency"], current["T"])
repeat = current[(current["frequency"] > 0) & (current["monetary_value"] > 0)]
ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
current["p_alive"] = bgf.conditional_probability_alive(
    current["frequency"], current["recency"], current["T"]
)
current["clv"] = ggf.customer_lifetime_value(
    bgf,
    current["frequency"],
    current["recency"],
    current["T"],
    current["monetary_value"],
    time=HORIZON_MONTHS,
    discount_rate=DISCOUNT_RATE,
    freq="W",
)
current.to_parquet(output_dir / "customer_cltv.parquet")

# ---- churn: RFM features of the calibration period, logistic regression
features = summary[["frequency_cal", "recency_cal", "T_cal", "monetary_value_cal"]]
churned = (summary["frequency_holdout"] == 0).astype(int)
x_train, x_test, y_train, y_test = train_test_split(
    features, churned, test_size=0.2, stratify=churned, random_state=42
)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x_train, y_train)
scores = model.predict_proba(x_test)[:, 1]
churn_metrics = {
    "roc_auc": float(roc_auc_score(y_test, scores)),
    "pr_auc": float(average_precision_score(y_test, scores)),
}
current_features = current[["frequency", "recency", "T", "monetary_value"]].set_axis(
    features.columns, axis=1
)
pd.DataFrame(
    {"churn_probability": model.predict_proba(current_features)[:, 1]}, index=current.index
).to_parquet(output_dir / "churn_predictions.parquet")

report = {
    "rows": rows,
    "clean_rows": len(clean),
    "customers": len(current),
    "bgnbd": dict(bgf.params_),
    "gamma_gamma": dict(ggf.params_),
    "validation": validation,
    "churn": churn_metrics,
}
(output_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
print(json.dumps(report, default=float))
