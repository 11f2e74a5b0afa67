"""The purchase models' reference answers, computed by the PyPI package `lifetimes` on the CDNOW
sample it ships (2,357 customers' CD purchases, 1997-01 to 1998-06): used by tests/predict.rs.

Prints one JSON object: the path of the package's transaction file, and for the 39-week
calibration period (purchases up to 1997-09-30, time in weeks) each customer's summary as
`lifetimes` counts it, the BG/NBD and Gamma-Gamma parameters it fits, and per customer the
probability of being alive, the expected purchases in the next 10 and 39 weeks and the expected
value of a purchase.
"""
import json
import os
import sys

import pandas as pd
import lifetimes
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

path = os.path.join(os.path.dirname(lifetimes.__file__), "datasets", "CDNOW_sample.txt")
tx = pd.read_csv(path, sep=r"\s+", header=None, names=["master", "id", "date", "qty", "amount"])
tx["date"] = pd.to_datetime(tx["date"].astype(str), format="%Y%m%d")
calibration = tx[tx["date"] <= "1997-09-30"]
summary = summary_data_from_transaction_data(
    calibration,
    "id",
    "date",
    monetary_value_col="amount",
    observation_period_end="1997-09-30",
    freq="D",
    freq_multiplier=7,
)
bg = BetaGeoFitter()
bg.fit(summary["frequency"], summary["recency"], summary["T"])
repeat = summary[summary["frequency"] > 0]
gg = GammaGammaFitter()
gg.fit(repeat["frequency"], repeat["monetary_value"])

f, r, t = summary["frequency"], summary["recency"], summary["T"]
m = summary["monetary_value"]
alive = pd.Series(bg.conditional_probability_alive(f, r, t), index=summary.index)
next10 = pd.Series(bg.conditional_expected_number_of_purchases_up_to_time(10, f, r, t), index=summary.index)
next39 = pd.Series(bg.conditional_expected_number_of_purchases_up_to_time(39, f, r, t), index=summary.index)
value = pd.Series(gg.conditional_expected_average_profit(f, m), index=summary.index)
customers = [
    {
        "id": str(cid),
        "frequency": int(f[cid]),
        "recency": float(r[cid]),
        "T": float(t[cid]),
        "monetary": float(m[cid]),
        "p_alive": float(alive[cid]),
        "expected_10": float(next10[cid]),
        "expected_39": float(next39[cid]),
        "expected_value": float(value[cid]),
    }
    for cid in summary.index
]
json.dump(
    {
        "transactions": path,
        "bgnbd": {k: float(v) for k, v in bg.params_.items()},
        "gamma_gamma": {k: float(v) for k, v in gg.params_.items()},
        "customers": customers,
    },
    sys.stdout,
)
