"""The offline column comparison reads a quality run's vectors and writes its table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from encoders.bench import columns


def test_columns_compares_every_set_and_writes_its_table(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    ts = pd.Timestamp("2018-06-01") + pd.to_timedelta(np.sort(rng.uniform(0, 50, n)), unit="D")
    entity = rng.integers(0, 100, n)
    label = rng.random(n) < 0.1
    amount = rng.gamma(2.0, 20.0, n) * np.where(label, 4.0, 1.0)
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame(
        {"case_id": np.arange(n), "entity_id": entity, "ts": ts, "amount": amount, "label": label}
    ).to_parquet(data / "cases.parquet")
    (data / "schema.json").write_text(json.dumps({"cases": {"numeric": ["amount"]}}))
    run = tmp_path / "run"
    run.mkdir()
    emb = rng.normal(size=(n, 6)).astype(np.float32)
    emb[:, -1] += 2.0 * label  # the last (own-event) column knows the label
    np.save(run / "emb_pretrained.npy", emb)
    report = columns.main(
        ["--data", str(data), "--run", str(run), "--split", "2018-07-06"]
        + ["--own-event-columns", "2"]
    )
    assert list(report["results"]) == list(columns.column_sets(emb, emb, emb, 2))
    res = report["results"]
    assert res["hand + own-event columns"]["pr_auc"] > res["hand"]["pr_auc"]
    assert json.loads((run / "columns.json").read_text())["own_event_columns"] == 2
    assert "| hand + deviation + the whole vector |" in (run / "columns.md").read_text()
