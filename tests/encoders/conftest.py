"""Small seeded behavior-sequence datasets for the encoder tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCHEMA = {
    "cases": {"numeric": [], "categorical": []},
    "events": {"numeric": ["amount"], "categorical": ["terminal_id", "channel"], "text": ["memo"]},
}


def make_events(n_entities: int = 40, seed: int = 0) -> pd.DataFrame:
    """Two behavior styles: entities in group 1 spend big at terminals t0-t9 by night, group 0
    small amounts at t10-t59 by day, so both pretraining tasks have something to learn."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2021-03-01")
    for e in range(n_entities):
        group = e % 2
        n = int(rng.integers(20, 120))
        gaps = rng.exponential(3600 * (3 if group else 8), size=n)
        ts = start + pd.to_timedelta(np.cumsum(gaps), unit="s")
        terminals = rng.integers(0, 10, n) if group else rng.integers(10, 60, n)
        amounts = rng.lognormal(5 if group else 2.5, 0.4, n)
        for t, term, amount in zip(ts, terminals, amounts, strict=True):
            rows.append(
                {
                    "entity_id": f"c{e}",
                    "ts": t,
                    "amount": round(float(amount), 2),
                    "terminal_id": f"t{term}",
                    "channel": "web" if group else rng.choice(["pos", "atm"]),
                    "memo": "game coins recharge" if group else "grocery store",
                }
            )
    return pd.DataFrame(rows)


def write_dataset(folder: Path, events: pd.DataFrame, n_cases: int = 300, seed: int = 1) -> Path:
    """A dataset folder: cases at random existing event times plus a few odd ones."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    picked = events.iloc[rng.choice(len(events), size=n_cases, replace=False)]
    cases = pd.DataFrame(
        {
            "case_id": [f"k{i}" for i in range(n_cases)],
            "entity_id": picked["entity_id"].to_numpy(),
            "ts": picked["ts"].to_numpy(),
        }
    )
    extra = pd.DataFrame(
        {
            "case_id": ["k_unknown", "k_early"],
            "entity_id": ["nobody", "c0"],
            "ts": [pd.Timestamp("2021-04-01"), pd.Timestamp("2020-01-01")],
        }
    )
    pd.concat([cases, extra], ignore_index=True).to_parquet(folder / "cases.parquet")
    events.to_parquet(folder / "events.parquet")
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    return folder


@pytest.fixture
def events() -> pd.DataFrame:
    return make_events()


@pytest.fixture
def dataset(tmp_path: Path, events: pd.DataFrame) -> Path:
    return write_dataset(tmp_path / "ds", events)


@pytest.fixture(autouse=True)
def one_thread():
    """Small models run fastest on one thread, above all on a busy shared machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
