import json
import sys

import numpy as np
import pandas as pd
import pytest

from learning.evaluation import (
    band_precision,
    precision_at_top,
    ranking_metrics,
    recall_at_precision,
)
from learning.features import label_derived_features, load_dataset
from learning.stopping import stopping_signals, top_k_overlap


def brute_force_counts(cases, positive, col, days):
    ts = cases["ts"].to_numpy()
    vals = cases[col].to_numpy()
    out = np.zeros(len(cases))
    for i in range(len(cases)):
        sel = positive & (vals == vals[i]) & (ts < ts[i])
        sel &= ts >= ts[i] - np.timedelta64(int(days * 86400), "s")
        out[i] = sel.sum()
    return out


def test_label_derived_features_match_brute_force():
    rng = np.random.RandomState(0)
    n = 400
    cases = pd.DataFrame(
        {
            "ts": pd.Timestamp("2018-04-01") + pd.to_timedelta(rng.uniform(0, 40, n), unit="D"),
            "terminal_id": rng.randint(0, 7, n),
            "entity_id": rng.choice(["a", "b", "c"], n),
        }
    )
    positive = rng.rand(n) < 0.2
    feats = label_derived_features(
        cases, positive, columns=["terminal_id", "entity_id"], windows_days=[1, 7]
    )
    assert list(feats.columns) == [
        "p_terminal_id_1d",
        "p_terminal_id_7d",
        "p_entity_id_1d",
        "p_entity_id_7d",
    ]
    for col in ("terminal_id", "entity_id"):
        for days in (1, 7):
            np.testing.assert_array_equal(
                feats[f"p_{col}_{days}d"], brute_force_counts(cases, positive, col, days)
            )
    # A positive never counts itself; with no positives every count is 0.
    none = label_derived_features(cases, np.zeros(n, bool), columns=["terminal_id"])
    assert (none.to_numpy() == 0).all()


def test_load_dataset_reads_folder_and_encodes(tmp_path):
    cases = pd.DataFrame(
        {
            "case_id": ["x1", "x2", "x3", "x4"],
            "entity_id": ["e2", "e1", "e2", "e3"],
            "ts": pd.date_range("2020-01-01", periods=4, freq="D"),
            "amount": [1.0, 2.0, 3.0, np.nan],
            "channel": ["web", "pos", None, "web"],
            "seed_positive": [1, 0, 0, 0],
            "label": [1, 0, 1, 0],
        }
    )
    cases.to_csv(tmp_path / "cases.csv", index=False)
    ds = load_dataset(tmp_path)
    assert ds.numeric_columns == ["amount"] and ds.categorical_columns == ["channel"]
    assert list(ds.cases["channel"]) == [1, 0, -1, 1]
    assert list(ds.categories["channel"]) == ["pos", "web"]
    assert list(ds.cases["entity_id"]) == [1, 0, 1, 2]
    assert list(ds.seed_positive) == [True, False, False, False]
    assert list(ds.labels) == [1, 0, 1, 0]
    frame = ds.feature_frame()
    assert list(frame.columns) == ["amount", "channel"] and frame["amount"].dtype == np.float32
    (tmp_path / "schema.json").write_text(
        json.dumps({"cases": {"numeric": ["amount"], "categorical": []}})
    )
    assert load_dataset(tmp_path).categorical_columns == []


def test_real_dataset_loads(tmp_path):
    from tests.conftest import shared_dataset

    ds = load_dataset(shared_dataset("adbench_thyroid"))
    assert ds.n_cases == 3772 and ds.labels.sum() == 93 and ds.seed_positive is None
    assert ds.feature_frame().shape == (3772, 6)


def test_ranking_metrics():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0] * 20)
    scores = np.linspace(1, 0, len(y))
    m = ranking_metrics(y, scores)
    assert set(m) == {
        "pr_auc",
        "roc_auc",
        "recall_at_precision",
        "band_precision",
        "precision_at_top",
    }
    assert set(m["recall_at_precision"]) == {"0.5", "0.8", "0.9"}
    assert set(m["band_precision"]) == {"99-100", "95-99", "90-95", "85-90"}
    assert recall_at_precision(y, scores, 0.9) == pytest.approx(2 / 60)  # top 2 only
    perfect = band_precision(np.r_[np.ones(10), np.zeros(990)], np.arange(1000)[::-1])
    assert perfect == {"99-100": 1.0, "95-99": 0.0, "90-95": 0.0, "85-90": 0.0}


def test_precision_at_top_is_the_cumulative_view_of_the_bands():
    rng = np.random.RandomState(0)
    y, scores = (rng.rand(2000) < 0.1).astype(int), rng.rand(2000)
    top, bands = precision_at_top(y, scores), band_precision(y, scores)
    assert set(top) == {"1", "5", "10", "15"}
    # Top 5% = top 1% (20 cases) + band 95-99 (80 cases).
    assert top["5"] == pytest.approx((20 * bands["99-100"] + 80 * bands["95-99"]) / 100)
    assert top["1"] == pytest.approx(bands["99-100"])


def test_stopping_signals():
    rng = np.random.RandomState(0)
    scores = rng.rand(500)
    going = stopping_signals(
        [30, 25], [100, 100], previous_scores=scores, current_scores=rng.rand(500), top_k=50
    )
    assert not going.suggest_stop and going.top_k_overlap < 0.5
    assert going.confirmation_rate_per_batch == [0.3, 0.25]
    dry = stopping_signals(
        [30, 1, 0], [100, 100, 100], previous_scores=scores, current_scores=scores + 1e-9, top_k=50
    )
    assert dry.suggest_stop and "batches confirmed" in dry.reason
    assert top_k_overlap(scores, scores, 50) == 1.0
    assert going.estimated_positives_left is None and going.positives_left_high is None


def test_learning_imports_no_django_or_torch():
    import subprocess

    code = (
        "import sys, learning.pu, learning.sampling, learning.pool, learning.stopping, "
        "learning.prior, "
        "learning.features, learning.evaluation, learning.baselines; "
        "assert 'django' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entity_deviation_divides_by_the_mean_of_strictly_earlier_cases():
    from learning.features import entity_deviation_features

    cases = pd.DataFrame(
        {
            "entity_id": ["a", "a", "a", "b", "a", "b"],
            "ts": pd.to_datetime(
                ["2020-01-01", "2020-01-02", "2020-01-02", "2020-01-01", "2020-01-03", "2020-01-05"]
            ),
            "amount": [10.0, 20.0, 40.0, 5.0, 90.0, 10.0],
        }
    )
    dev = entity_deviation_features(cases, ["amount"])["dev_amount"].to_numpy()
    # Same entity and same ts: neither sees the other (cases 1 and 2 both divide by 10).
    np.testing.assert_allclose(dev, [np.nan, 2.0, 4.0, np.nan, 90 / (70 / 3), 2.0], rtol=1e-6)
