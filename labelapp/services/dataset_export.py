"""A dataset's cases (and their entities' events) written back out in the dataset format.

What an integrator scores outside the app with an exported model (``python -m learning.score``):
raw cases as imported, read from the dataset's columnar snapshot, without the snapshot's own
``row`` column nor the ground-truth ``label`` (kept only for the benchmark's simulated expert).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from labelapp.models import Dataset
from labelapp.selectors.datasets import snapshot_dir_for

#: Snapshot columns that are not the imported data.
PRIVATE_COLUMNS = ("row", "label")


def dataset_cases_export(
    *, dataset: Dataset, out_dir: Path, limit: int | None = None
) -> dict[str, Any]:
    """Write ``cases.parquet`` (the first ``limit`` cases, all by default) and, when the dataset
    has events, ``events.parquet`` with the events of those cases' entities, into ``out_dir``.

    Returns the paths written and their row counts.
    """
    snapshot = snapshot_dir_for(dataset)
    cases = pq.read_table(snapshot / "cases.parquet").to_pandas()
    if "row" in cases.columns:
        cases = cases.sort_values("row", kind="stable")
    if limit is not None:
        cases = cases.head(limit)
    cases = cases.drop(columns=[c for c in PRIVATE_COLUMNS if c in cases.columns])
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {"cases": out_dir / "cases.parquet", "n_cases": len(cases)}
    cases.reset_index(drop=True).to_parquet(written["cases"], index=False)
    events_file = snapshot / "events.parquet"
    if events_file.exists():
        entities = sorted(set(cases["entity_id"].astype(str))) if "entity_id" in cases else []
        events = pq.read_table(
            events_file, filters=[("entity_id", "in", entities)] if entities else None
        ).to_pandas()
        written["events"] = out_dir / "events.parquet"
        written["n_events"] = len(events)
        events.to_parquet(written["events"], index=False)
    return written
