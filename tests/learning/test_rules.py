"""Rule export: a shallow tree over hand features read back as readable conjunctions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from learning.rules import Condition, RuleExtractor, precision_at_coverage, rules_report


def _planted(n: int = 20_000, seed: int = 0):
    """Cases with a planted segment (large amounts at night, not at ATMs) the model ranks first."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 50.0, n).round(2),
            "hour": rng.integers(0, 24, n),
            "channel": rng.choice(["web", "pos", "atm", "phone"], n),
            "n_tx": rng.poisson(4, n).astype(float),
        }
    )
    night = frame.hour.between(0, 5)
    segment = ((frame.amount > 200) & night & (frame.channel != "atm")).to_numpy()
    scores = 0.8 * segment + 0.3 * rng.random(n)
    return frame, segment, scores


def test_rules_reproduce_a_planted_segment_with_values_not_codes():
    frame, segment, scores = _planted()
    extractor = RuleExtractor(
        ["amount", "n_tx"], ["hour", "channel"], top_share=segment.mean(), max_depth=4
    ).fit(frame, scores)
    best = extractor.rules_[0]
    matched = best.mask(frame)
    jaccard = (matched & segment).sum() / (matched | segment).sum()
    assert jaccard > 0.95, best.text
    assert "hour in [0..5]" in best.text and "channel != atm" in best.text
    assert "amount > 200" in best.text or "amount > 199" in best.text
    assert best.fidelity > 0.95 and len(extractor.rules_) <= 10


def test_the_text_is_what_the_mask_applies():
    frame, segment, scores = _planted(seed=1)
    extractor = RuleExtractor(["amount"], ["hour"], top_share=0.02, max_depth=3).fit(frame, scores)
    for rule in extractor.rules_:
        for cond in rule.conditions:
            if not cond.is_categorical:
                for bound in (cond.low, cond.high):
                    assert bound is None or f"{bound:g}" in rule.text
        assert rule.fit_coverage == int(rule.mask(frame).sum())


def test_missing_values_match_as_the_median_and_unseen_categories_match_no_set():
    cond = Condition("amount", low=10.0)
    column = pd.Series([5.0, np.nan, 20.0])
    assert cond.mask(column, fill=15.0).tolist() == [False, True, True]
    cat = Condition("channel", values=["web"], all_values=["web", "pos"])
    assert cat.mask(pd.Series(["web", "kiosk", None])).tolist() == [True, False, False]


def test_report_compares_each_rule_with_the_model_at_the_same_coverage():
    frame, segment, scores = _planted(seed=2)
    extractor = RuleExtractor(
        ["amount", "n_tx"], ["hour", "channel"], top_share=segment.mean(), max_depth=4
    ).fit(frame, scores)
    known = np.zeros(len(frame), bool)
    known[::3] = True  # a third of the cases have an answer
    report = rules_report(extractor.rules_, frame, scores, positive=segment, known=known)
    row = report[0]
    assert row["coverage"] == extractor.rules_[0].fit_coverage
    assert row["n_known"] == int((extractor.rules_[0].mask(frame) & known).sum())
    assert row["precision"] == pytest.approx(row["n_positive"] / row["n_known"], abs=1e-4)
    assert row["model_precision"] > 0.95 and row["precision"] > 0.95
    p, n_known, _ = precision_at_coverage(scores, segment, known, row["coverage"])
    assert n_known == row["model_n_known"] and p == pytest.approx(row["model_precision"], abs=1e-4)


def test_bad_settings_are_refused():
    frame, _, scores = _planted(n=200)
    with pytest.raises(ValueError, match="top_share"):
        RuleExtractor(["amount"], [], top_share=1.5).fit(frame, scores)
    with pytest.raises(ValueError, match="no hand feature"):
        RuleExtractor([], []).fit(frame, scores)


def test_sibling_leaves_that_are_both_kept_merge_into_one_rule():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"amount": rng.uniform(0, 1000, 20_000), "n_tx": rng.poisson(4, 20_000)})
    top = (frame.amount > 900).to_numpy()
    extractor = RuleExtractor(["amount", "n_tx"], [], top_share=top.mean(), max_depth=4).fit(
        frame, top + 0.01 * rng.random(len(frame))
    )
    assert [r.text for r in extractor.rules_] == ["amount > 900"]


def test_ties_at_the_cut_do_not_make_every_case_a_top_case():
    frame, segment, _ = _planted(n=2000, seed=4)
    scores = np.where(segment, 0.9, 0.001)  # two distinct scores, as a tiny model gives
    extractor = RuleExtractor(["amount"], ["hour"], top_share=0.2, max_depth=3).fit(frame, scores)
    assert extractor.threshold_ == 0.9 and extractor.rules_[0].text != "every case"


def test_benchmark_measures_rules_against_the_model_on_the_test_part(tmp_path):
    import json

    from learning.bench import rules as bench
    from tests.conftest import shared_dataset

    data = shared_dataset("adbench_thyroid")
    report = bench.main(["--data", str(data), "--out", str(tmp_path), "--top-share", "0.03"])
    assert report["n_test"] == 943 and report["model"] == "two_step_pu"
    assert 1 <= len(report["rules"]) <= 10
    for row in report["rules"]:
        # Ground truth on the test part: every test case is known.
        assert (
            row["n_known"] == row["coverage"] and row["cumulative"]["coverage"] >= row["coverage"]
        )
        assert row["model_n_known"] == row["coverage"]
    saved = json.loads((tmp_path / "rules_adbench_thyroid_two_step_pu.json").read_text())
    assert saved["rules"][0]["rule"] == report["rules"][0]["rule"]
    assert "| rule | coverage |" in bench.report_markdown(report)
