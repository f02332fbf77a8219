"""Demo data: a small, seeded simulator of card transactions with cash-out-like fraud.

Modeled on the transaction simulator of the *Reproducible Machine Learning for Credit Card Fraud
Detection - Practical Handbook* (Le Borgne et al., 2022), the source of ``fraud_handbook``:
customers buy at nearby terminals, and three fraud patterns are planted:

1. any amount over 220 (the part that the seed rule ``amount > 220`` sees);
2. a compromised terminal: every transaction on it in the next 28 days;
3. a compromised customer: a third of their transactions in the next 14 days, amount x5.

The output is a dataset folder in the SPEC format (``cases.parquet`` with hand features like the
handbook's, ``events.parquet``, ``schema.json``), with ``label`` as the truth and
``seed_positive`` from the rule. Pure NumPy/pandas: no Django needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SEED_RULE_AMOUNT = 220.0
TERMINAL_COMPROMISE_DAYS = 28
CUSTOMER_COMPROMISE_DAYS = 14
# Per terminal (customer) and day: chosen so that each pattern is about 1% of all transactions.
TERMINAL_COMPROMISE_RATE = 0.0004
CUSTOMER_COMPROMISE_RATE = 0.002
WINDOWS_DAYS = (1, 7, 30)
START = pd.Timestamp("2024-01-01")

NUMERIC = [
    "amount",
    *[f"customer_{kind}_{d}d" for d in WINDOWS_DAYS for kind in ("nb_tx", "avg_amount")],
    *[f"terminal_nb_tx_{d}d" for d in WINDOWS_DAYS],
]
CATEGORICAL = ["terminal_id", "hour", "is_weekend", "is_night"]


def _transactions(n_cases: int, rng: np.random.Generator) -> pd.DataFrame:
    """Raw transactions (no fraud yet), at least ``n_cases`` of them, in time order."""
    n_customers = max(20, n_cases // 60)
    n_terminals = max(10, n_cases // 40)
    customer_xy = rng.uniform(0, 100, size=(n_customers, 2))
    terminal_xy = rng.uniform(0, 100, size=(n_terminals, 2))
    mean_amount = rng.uniform(5, 100, size=n_customers)
    tx_per_day = rng.uniform(0, 4, size=n_customers)
    # Each customer shops at the terminals nearest home.
    distances = np.linalg.norm(customer_xy[:, None, :] - terminal_xy[None, :, :], axis=2)
    nearby = np.argsort(distances, axis=1)[:, : min(8, n_terminals)]
    days = int(np.ceil(n_cases / max(tx_per_day.sum(), 1.0) * 1.15)) + 1
    counts = rng.poisson(np.tile(tx_per_day, days))  # (days * n_customers,)
    day = np.repeat(np.repeat(np.arange(days), n_customers), counts)
    customer = np.repeat(np.tile(np.arange(n_customers), days), counts)
    seconds = np.clip(rng.normal(43_200, 20_000, size=len(day)), 0, 86_399).astype(np.int64)
    amount = np.abs(rng.normal(mean_amount[customer], mean_amount[customer] / 2)).round(2)
    terminal = nearby[customer, rng.integers(0, nearby.shape[1], size=len(day))]
    frame = pd.DataFrame(
        {
            "customer": customer,
            "terminal": terminal,
            "ts": START + pd.to_timedelta(day * 86_400 + seconds, unit="s"),
            "day": day,
            "amount": amount,
        }
    )
    return frame.sort_values("ts", kind="stable").head(n_cases).reset_index(drop=True)


def _plant_fraud(
    tx: pd.DataFrame, rng: np.random.Generator, terminal_rate: float, customer_rate: float
) -> pd.DataFrame:
    """Label pattern 1 (amount > 220), then compromise terminals and customers day by day."""
    tx = tx.copy()
    fraud = (tx["amount"] > SEED_RULE_AMOUNT).to_numpy()
    n_days = int(tx["day"].max()) + 1
    n_terminals = int(tx["terminal"].max()) + 1
    n_customers = int(tx["customer"].max()) + 1
    for start_day in range(n_days):
        terminal_window = tx["day"].between(start_day, start_day + TERMINAL_COMPROMISE_DAYS - 1)
        n_bad_terminals = rng.poisson(n_terminals * terminal_rate)
        for t in rng.choice(n_terminals, size=n_bad_terminals, replace=False):
            fraud |= (terminal_window & (tx["terminal"] == t)).to_numpy()
        customer_window = tx["day"].between(start_day, start_day + CUSTOMER_COMPROMISE_DAYS - 1)
        n_bad_customers = rng.poisson(n_customers * customer_rate)
        for c in rng.choice(n_customers, size=n_bad_customers, replace=False):
            theirs = np.flatnonzero((customer_window & (tx["customer"] == c)).to_numpy())
            stolen = theirs[rng.random(len(theirs)) < 1 / 3]
            tx.loc[stolen, "amount"] = (tx.loc[stolen, "amount"] * 5).round(2)
            fraud[stolen] = True
    tx["label"] = fraud.astype(np.int64)
    return tx


def _window_features(tx: pd.DataFrame) -> pd.DataFrame:
    """The handbook's hand features; windows include the transaction itself."""
    out = tx.copy()
    out["hour"] = out["ts"].dt.hour.astype(np.int64)
    out["is_weekend"] = (out["ts"].dt.weekday >= 5).astype(np.int64)
    out["is_night"] = (out["hour"] <= 6).astype(np.int64)
    indexed = out.set_index("ts")
    for d in WINDOWS_DAYS:
        rolled = indexed.groupby("customer")["amount"].rolling(f"{d}D")
        count = rolled.count().reset_index(level=0, drop=True)
        mean = rolled.mean().reset_index(level=0, drop=True)
        out[f"customer_nb_tx_{d}d"] = _align(out, "customer", count).astype(np.int64)
        out[f"customer_avg_amount_{d}d"] = _align(out, "customer", mean).round(4)
        terminal_count = (
            indexed.groupby("terminal")["amount"].rolling(f"{d}D").count()
        ).reset_index(level=0, drop=True)
        out[f"terminal_nb_tx_{d}d"] = _align(out, "terminal", terminal_count).astype(np.int64)
    return out


def _align(frame: pd.DataFrame, key: str, values: pd.Series) -> np.ndarray:
    """Put a groupby-rolling result (grouped by ``key``, time-ordered) back in frame order."""
    order = frame.sort_values([key, "ts"], kind="stable").index.to_numpy()
    aligned = np.empty(len(frame), dtype=np.float64)
    aligned[order] = values.to_numpy()
    return aligned


def generate_demo_dataset(
    out_dir: Path,
    *,
    n_cases: int = 12_000,
    seed: int = 0,
    terminal_rate: float = TERMINAL_COMPROMISE_RATE,
    customer_rate: float = CUSTOMER_COMPROMISE_RATE,
) -> Path:
    """Write a demo dataset folder of ``n_cases`` transactions and return its path.

    ``terminal_rate`` and ``customer_rate`` are the chances, per terminal (customer) and day, of
    a compromise; raise them for tiny datasets that still need positives of every pattern.
    """
    rng = np.random.default_rng(seed)
    tx = _transactions(n_cases, rng)
    tx = _window_features(_plant_fraud(tx, rng, terminal_rate, customer_rate))
    tx["case_id"] = [f"tx{i}" for i in range(len(tx))]
    tx["entity_id"] = "c" + tx["customer"].astype(str)
    tx["terminal_id"] = "t" + tx["terminal"].astype(str)
    tx["seed_positive"] = (tx["amount"] > SEED_RULE_AMOUNT).astype(np.int64)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = tx[["case_id", "entity_id", "ts", *CATEGORICAL, *NUMERIC, "seed_positive", "label"]]
    cases.to_parquet(out_dir / "cases.parquet", index=False)
    tx[["entity_id", "ts", "amount", "terminal_id"]].to_parquet(
        out_dir / "events.parquet", index=False
    )
    schema = {
        "cases": {"numeric": NUMERIC, "categorical": CATEGORICAL},
        "events": {"numeric": ["amount"], "categorical": ["terminal_id"], "text": []},
    }
    (out_dir / "schema.json").write_text(json.dumps(schema, indent=2))
    return out_dir
