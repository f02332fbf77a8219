"""Data factories for the app's tests: plain functions that write folders or create rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labelapp.demo import generate_demo_dataset

# Compromises are far more frequent than in the demo so that a few hundred cases hold positives.
SMALL_TERMINAL_RATE = 0.01
SMALL_CUSTOMER_RATE = 0.02


def make_dataset_dir(
    tmp_path: Path,
    n_cases: int = 400,
    with_events: bool = True,
    seed: int = 0,
    *,
    fmt: str = "parquet",
    name: str = "demo",
) -> Path:
    """Write a small valid dataset folder (SPEC format) under ``tmp_path / name``.

    Card transactions from :mod:`labelapp.demo` with the planted cash-out patterns (compromised
    terminals, compromised customers with inflated amounts, amounts over 220) in ``label``, and
    seed positives from the rule ``amount > 220`` (a biased subset of the positives).
    ``fmt`` is ``"parquet"`` or ``"csv"``. Returns the folder.
    """
    folder = generate_demo_dataset(
        Path(tmp_path) / name,
        n_cases=n_cases,
        seed=seed,
        terminal_rate=SMALL_TERMINAL_RATE,
        customer_rate=SMALL_CUSTOMER_RATE,
    )
    if not with_events:
        (folder / "events.parquet").unlink()
    if fmt == "csv":
        for table in ("cases", "events"):
            parquet = folder / f"{table}.parquet"
            if parquet.exists():
                pd.read_parquet(parquet).to_csv(folder / f"{table}.csv", index=False)
                parquet.unlink()
    return folder
