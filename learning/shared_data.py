"""Where the benchmarks find the real data (``../shared/data`` beside the repository, or
``$SHARED_DATA``), and the hand features of ``fraud_handbook`` they use as a numeric matrix."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_DIR = Path(
    os.environ.get("SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

FRAUD_HANDBOOK_HAND_COLUMNS = [
    "amount",
    "customer_nb_tx_1d",
    "customer_avg_amount_1d",
    "customer_nb_tx_7d",
    "customer_avg_amount_7d",
    "customer_nb_tx_30d",
    "customer_avg_amount_30d",
    "terminal_nb_tx_1d",
    "terminal_nb_tx_7d",
    "terminal_nb_tx_30d",
    "hour",
    "is_weekend",
    "is_night",
]
