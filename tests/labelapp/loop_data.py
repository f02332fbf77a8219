"""A small synthetic dataset for the loop's tests: a snapshot folder plus its Case rows.

Cash-out on a few compromised terminals (from day 8 on) and large amounts; the seed rule catches
the large amounts only, so experts' confirmations are what teaches the terminal pattern.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from labelapp.models import Case, Dataset

SCHEMA = {
    "cases": {"numeric": ["amount", "n_tx_7d"], "categorical": ["terminal_id", "hour"]},
}


def loop_cases(n_cases: int = 3000, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-04-01", tz="UTC")
    ts = start + pd.to_timedelta(np.sort(rng.integers(0, 28 * 86400, n_cases)), unit="s")
    terminal = rng.integers(0, 300, n_cases)
    amount = rng.gamma(2.0, 40.0, n_cases).round(2)
    compromised = np.isin(terminal, [3, 17, 42, 99, 150, 201])
    day = (ts - start).days.to_numpy()
    label = ((compromised & (day >= 8)) | (amount > 300)).astype(int)
    return pd.DataFrame(
        {
            "row": np.arange(n_cases),
            "case_id": [f"tx{i}" for i in range(n_cases)],
            "entity_id": [f"c{v}" for v in rng.integers(0, 150, n_cases)],
            "ts": ts,
            "terminal_id": [f"t{v}" for v in terminal],
            "hour": ts.hour,
            "amount": amount,
            "n_tx_7d": rng.poisson(5, n_cases),
            "seed_positive": (amount > 300).astype(int),
            "label": label,
        }
    )


def make_loop_dataset(name: str, snapshot_root: Path, *, n_cases: int = 3000, seed: int = 0):
    """A ready dataset whose snapshot lies under ``snapshot_root``; returns (dataset, cases)."""
    cases = loop_cases(n_cases, seed=seed)
    dataset = Dataset.objects.create(
        name=name,
        schema=SCHEMA,
        feature_columns=["amount", "n_tx_7d", "terminal_id", "hour"],
        status=Dataset.Status.READY,
        n_cases=len(cases),
        n_seed_positive=int(cases.seed_positive.sum()),
    )
    folder = Path(snapshot_root) / str(dataset.pk)
    folder.mkdir(parents=True, exist_ok=True)
    cases.to_parquet(folder / "cases.parquet", index=False)
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    dataset.snapshot_dir = str(folder)
    dataset.save(update_fields=["snapshot_dir"])
    Case.objects.bulk_create(
        [
            Case(
                dataset=dataset,
                row=int(r.row),
                case_id=r.case_id,
                entity_id=r.entity_id,
                ts=r.ts.to_pydatetime(),
                seed_positive=bool(r.seed_positive),
                pool_state="P" if r.seed_positive else "U",
                features={"amount": float(r.amount), "terminal_id": r.terminal_id},
            )
            for r in cases.itertuples()
        ],
        batch_size=2000,
    )
    return dataset, cases
