import json

import numpy as np
import pandas as pd
import pytest

from learning.bench.harness import Settings, main, seed_positives, split_cases
from learning.features import load_dataset


def write_dataset(folder, n=3000, seed=0, with_ts=True):
    """A small tabular dataset with ts, a terminal identifier and a planted fraud pattern."""
    rng = np.random.RandomState(seed)
    ts = pd.Timestamp("2018-04-01") + pd.to_timedelta(np.sort(rng.uniform(0, 40, n)), unit="D")
    terminal = rng.randint(0, 400, n)
    amount = rng.gamma(2.0, 30.0, n)
    compromised = rng.rand(400) < 0.05
    label = (compromised[terminal] & (rng.rand(n) < 0.7)) | (amount > 220)
    cases = pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(n)],
            "entity_id": [f"e{i}" for i in rng.randint(0, 300, n)],
            "terminal_id": [f"t{i}" for i in terminal],
            "amount": amount + 40 * label * rng.rand(n),
            "x1": rng.randn(n) + label,
            "label": label.astype(int),
        }
    )
    if with_ts:
        cases.insert(2, "ts", ts)
        cases["seed_positive"] = (amount > 220).astype(int)
    folder.mkdir(parents=True, exist_ok=True)
    cases.to_parquet(folder / "cases.parquet")
    schema = {"cases": {"numeric": ["amount", "x1"], "categorical": ["terminal_id"]}}
    (folder / "schema.json").write_text(json.dumps(schema))
    return cases


def test_split_and_seed_rules(tmp_path):
    write_dataset(tmp_path / "timed")
    ds = load_dataset(tmp_path / "timed")
    split = split_cases(ds, seed=0)
    assert ds.ts[split.pool].max() < ds.ts[split.test].min()  # pool strictly earlier
    assert 0.7 < len(split.pool) / ds.n_cases < 0.8
    np.testing.assert_array_equal(seed_positives(ds, split, fraction=0.1, seed=0), ds.seed_positive)

    write_dataset(tmp_path / "flat", with_ts=False)
    flat = load_dataset(tmp_path / "flat")
    split = split_cases(flat, seed=0)
    assert abs(flat.labels[split.pool].mean() - flat.labels[split.test].mean()) < 0.01
    seeds = seed_positives(flat, split, fraction=0.1, seed=0)
    assert seeds[split.test].sum() == 0 and (flat.labels[seeds] == 1).all()
    assert seeds.sum() == round(0.1 * flat.labels[split.pool].sum())


def test_benchmark_report(tmp_path):
    write_dataset(tmp_path / "data")
    report = main(
        [
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "--iterations",
            "2",
            "--batch-size",
            "30",
            "--expert-recall",
            "1.0",
            "--methods",
            "active_pu,top_score_batches,random_batches,naive_pu,isolation_forest,oracle,"
            "oracle_all_features",
        ]
    )
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["methods"].keys() == report["methods"].keys()
    for key in ("dataset", "n_pool", "n_test", "test_positives", "settings", "methods", "curves"):
        assert key in on_disk
    assert on_disk["entity_feature_columns"] == ["terminal_id", "entity_id"]
    m = on_disk["methods"]["active_pu"]
    assert set(m["recall_at_precision"]) == {"0.5", "0.8", "0.9"}
    assert set(m["band_precision"]) == {"99-100", "95-99", "90-95", "85-90"}
    assert set(m["band_precision_unknown"]) == set(m["band_precision"])
    assert set(m["precision_at_top"]) == {"1", "5", "10", "15"}
    assert m["labels_used"] == 60
    # A perfect-recall, no-false-positive expert confirms exactly the true positives shown.
    assert m["positives_found"] == m["confirmed"] > 0
    curve = on_disk["curves"]["active_pu"]
    assert [p["labels"] for p in curve] == [0, 30, 60]
    assert curve[-1]["positives_found"] == m["positives_found"]
    # After every answered batch: the estimate of positives left, its interval and the truth.
    left = curve[-1]["positives_left"]
    assert left["low"] <= left["point"] <= left["high"] and left["truth"] >= 0
    assert "positives_left" not in curve[0]  # nothing answered yet
    assert on_disk["positives_left"]["active_pu"]["checkpoints"] == 2
    assert (
        "Positives left in U after each batch (active_pu)"
        in (tmp_path / "out" / "report.md").read_text()
    )
    # Top-score batches confirm more positives than random ones on a planted pattern.
    found = {k: v["positives_found"] for k, v in on_disk["methods"].items()}
    assert found["top_score_batches"] > found["random_batches"]
    for png in ("positives_found.png", "precision_recall.png", "band_precision.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| active_pu |" in md and "| oracle_all_features |" in md
    assert "Cumulative precision" in md
    # Parts run in parallel merge back into one report, in the issue's method order.
    merged = main(["merge", str(tmp_path / "out"), "--out", str(tmp_path / "merged")])
    assert list(merged["methods"])[:3] == ["active_pu", "random_batches", "naive_pu"]
    assert (tmp_path / "merged" / "band_precision.png").exists()


def test_positives_left_oracle_beside_each_estimate(tmp_path):
    """``--positives-left-oracle``: each checkpoint also carries a supervised model's sum over U
    (every true pool label, out of fold) and the chance a count drawn with its probabilities
    lands within 2x of that sum."""
    write_dataset(tmp_path / "data", with_ts=False)
    common = ["--data", str(tmp_path / "data"), "--iterations", "2", "--batch-size", "30"]
    main([*common, "--out", str(tmp_path / "out"), "--methods", "active_pu",
          "--positives-left-oracle"])  # fmt: skip
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["settings"]["positives_left_oracle"] is True
    for c in on_disk["curves"]["active_pu"][1:]:
        left = c["positives_left"]
        assert left["oracle_point"] > 0 and 0.0 <= left["oracle_chance_within_2x"] <= 1.0
        assert left["oracle_within_2x"] == (
            0.5 <= max(left["oracle_point"], 1) / max(left["truth"], 1) <= 2
        )
    summary = on_disk["positives_left"]["active_pu"]
    assert {"oracle_within_2x", "oracle_chance_within_2x"} <= set(summary)
    assert "supervised oracle" in (tmp_path / "out" / "report.md").read_text()


def test_chance_within_2x_is_the_spread_of_a_count_around_its_expectation():
    from learning.bench.harness import chance_within_2x

    assert chance_within_2x(np.zeros(50)) == 1.0  # nothing left, nothing drawn: 0 and 0 agree
    assert chance_within_2x(np.full(1000, 0.9)) == 1.0  # 900 expected: never off by 2x
    # 3 expected positives (Poisson-like): a count of 0, 1 or 7+ misses 2x about 30% of draws.
    few = chance_within_2x(np.full(3000, 0.001), seed=1, draws=2000)
    assert 0.6 < few < 0.8


def test_settings_defaults_match_the_issue():
    st = Settings()
    assert (st.iterations, st.batch_size, st.expert_recall, st.expert_false_positive) == (
        10,
        100,
        0.9,
        0.0,
    )
    for name in (
        "active_pu",
        "uncertainty_only",
        "random_batches",
        "naive_pu",
        "isolation_forest",
        "oracle",
    ):
        assert name in st.methods


def test_harness_auto_embeddings_decides_each_iteration(tmp_path):
    """``--embeddings-file`` with the default ``auto``: the loop checks the columns at every
    iteration, as the app does; columns that carry nothing are left out, ``on`` forces them in.

    (Constant columns: their measured gain is exactly 0. Random noise is left out only in
    expectation: with 10 positives the check's 80% interval clears 0 about one time in ten,
    and which time depends on the batches the learner picked.)"""
    cases = write_dataset(tmp_path / "data", n=2000)
    nothing = np.ones((len(cases), 4), dtype=np.float32)
    np.save(tmp_path / "emb.npy", nothing)
    common = ["--data", str(tmp_path / "data"), "--iterations", "1", "--batch-size", "20"]
    common += ["--embeddings-file", str(tmp_path / "emb.npy"), "--methods", "active_pu"]
    report = main([*common, "--out", str(tmp_path / "auto")])
    checks = report["methods"]["active_pu"]["embeddings_checks"]
    assert checks["of"] == 2 and checks["used"] == 0 and len(checks["gains"]) == 2
    assert [p["embeddings_used"] for p in report["curves"]["active_pu"]] == [False, False]
    assert list(report["methods"]) == ["active_pu"]  # named methods run as given
    forced = main([*common, "--out", str(tmp_path / "on"), "--use-embeddings", "on"])
    assert "embeddings_checks" not in forced["methods"]["active_pu"]
    assert [p["embeddings_used"] for p in forced["curves"]["active_pu"]] == [True, True]


def test_label_ceiling_draws_the_answers_it_says_and_reports(tmp_path):
    from learning import pool
    from learning.bench import label_ceiling
    from learning.bench.harness import Harness

    cases = write_dataset(tmp_path / "data")
    ds = load_dataset(tmp_path / "data")
    h = Harness(ds, Settings.from_kwargs(seed=0), None, lambda *_: None)
    window = ("2018-04-10", "2018-04-20")
    states = label_ceiling.draw_answers(h, n_labels=50, n_confirmed=20, window=window, seed=0)
    confirmed = h.split.pool[states == pool.CONFIRMED]
    assert len(confirmed) == 20 and (h.y[confirmed] == 1).all()
    assert not ds.seed_positive[confirmed].any()
    ts = pd.to_datetime(cases["ts"]).to_numpy()[confirmed]
    assert (ts >= np.datetime64(window[0])).all() and (ts < np.datetime64(window[1])).all()
    not_confirmed = h.split.pool[states == pool.NOT_CONFIRMED]
    assert len(not_confirmed) == 30 and (h.y[not_confirmed] == 0).all()
    with pytest.raises(ValueError, match="such positives"):
        label_ceiling.draw_answers(h, n_labels=5000, n_confirmed=4000, window=None, seed=0)

    out = tmp_path / "out"
    report = label_ceiling.main(
        ["--data", str(tmp_path / "data"), "--out", str(out), "--labels", "60"]
        + ["--confirmed", "0", "40", "--seeds", "0", "--no-label-derived"]
    )
    assert report["label_derived"] is False
    assert [s["confirmed"] for s in report["summary"]] == [0, 40]
    assert json.loads((out / "label_ceiling.json").read_text())["labels"] == 60
    assert "| 40 |" in (out / "label_ceiling.md").read_text()
