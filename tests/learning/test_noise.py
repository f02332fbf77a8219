"""The label-noise audit flags planted wrong positives, with reasons, and measures agreement."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from learning.noise import (
    CONFIDENT_LEARNING,
    EXPERT_DISAGREEMENT,
    NEAR_CLEAN,
    audit_labels,
    cohens_kappa,
    confident_learning_flags,
    expert_disagreements,
    neighbor_flags,
    out_of_fold_scores,
    paired_answers,
)


def planted_noise(seed: int = 0, n: int = 3000):
    """Positives live in one corner; 10 of the 60 labeled positives are planted negatives."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    truth = np.zeros(n, dtype=bool)
    truth[:150] = True
    X[:150] += 3.0
    s = np.zeros(n, dtype=bool)
    s[:50] = True  # true seed positives
    planted = np.arange(1000, 1010)
    s[planted] = True  # wrong labels: plain negatives marked positive
    return X, s, truth, planted


def test_confident_learning_flags_the_planted_wrong_positives():
    X, s, _, planted = planted_noise()
    oof = out_of_fold_scores(X, s, n_splits=5, random_state=0)
    result = confident_learning_flags(s, oof)
    flagged = set(np.flatnonzero(result.mask))
    assert flagged <= set(np.flatnonzero(s)), "only positives are audited"
    assert len(flagged & set(planted)) >= 9
    assert len(flagged - set(planted)) <= 6  # a second look, not a verdict: some over-flagging
    assert 0.1 <= result.noise_rate <= 0.3  # truth: 10 of 60
    # The planted ones are the most suspicious: they lead the margin ranking.
    top = np.argsort(-result.margin[s])[:10]
    assert len(set(np.flatnonzero(s)[top]) & set(planted)) >= 8


def test_confident_learning_flags_nothing_on_clean_labels():
    X, s, _, planted = planted_noise()
    s[planted] = False
    oof = out_of_fold_scores(X, s, n_splits=5, random_state=0)
    assert confident_learning_flags(s, oof).mask.sum() <= 2


def test_near_clean_flags_positives_surrounded_by_clean_cases():
    X, s, _, planted = planted_noise()
    clean = ~s
    clean[:150] = False  # the hidden positives are not "confidently clean"
    result = neighbor_flags(X, s, clean, n_neighbors=10, min_clean_share=0.8)
    flagged = set(np.flatnonzero(result.mask))
    assert len(flagged & set(planted)) >= 8
    assert len(flagged - set(planted)) <= 2
    assert (result.nearest_clean[planted] >= 0).all()


def test_audit_merges_signals_with_reasons_and_ranks_planted_first():
    X, s, _, planted = planted_noise()
    oof = out_of_fold_scores(X, s, n_splits=5, random_state=0)
    answers = ([5, 5, 7, 7, 5], ["eve", "bob", "eve", "bob", "bob"],
               ["confirmed", "confirmed", "confirmed", "not_confirmed", "confirmed"])  # fmt: skip
    report = audit_labels(s, oof_scores=oof, neighbor_space=X, answers=answers)
    by_row = {f.index: f for f in report.flags}
    both = [by_row[i] for i in planted if i in by_row]
    assert len(both) >= 9
    assert all(len(f.reasons) == len(f.methods) >= 1 for f in report.flags)
    assert sum(set(f.methods) == {CONFIDENT_LEARNING, NEAR_CLEAN} for f in both) >= 6
    assert "nearest neighbours are confidently clean" in " ".join(both[0].reasons)
    assert (
        by_row[7].methods == [EXPERT_DISAGREEMENT]
        and "bob said not_confirmed" in (by_row[7].reasons[0])
    )
    assert 5 not in by_row  # experts agreed
    top = [f.index for f in report.flags[:10] if f.index != 7]
    assert len(set(top) & set(planted)) >= 7
    assert report.mask(len(s), (NEAR_CLEAN,)).sum() >= 8


def test_cohens_kappa_known_values():
    a = ["y", "y", "n", "n", "y", "n", "y", "y", "n", "n"]
    b = ["y", "n", "n", "n", "y", "n", "y", "y", "y", "n"]
    # p_o = 0.8, p_e = 0.5 -> 0.6
    assert cohens_kappa(a, b) == pytest.approx(0.6)
    assert cohens_kappa(a, a) == pytest.approx(1.0)
    assert cohens_kappa(["y", "y"], ["y", "y"]) == 1.0
    assert cohens_kappa(["y", "n"], ["n", "y"]) == pytest.approx(-1.0)
    assert np.isnan(cohens_kappa([], []))


def test_disagreements_use_each_experts_last_answer():
    cases = [1, 1, 1, 2, 2, 3]
    raters = ["eve", "bob", "bob", "eve", "bob", "eve"]
    answers = ["confirmed", "not_confirmed", "confirmed", "confirmed", "not_confirmed", "confirmed"]
    assert set(expert_disagreements(cases, raters, answers)) == {2}
    first, second = paired_answers(cases, raters, answers)
    assert len(first) == 2 and cohens_kappa(first, second) < 1


def test_learning_imports_no_django_nor_torch():
    code = (
        "import sys, learning.neighbors, learning.noise; "
        "assert 'django' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_confident_learning_reasons_never_contradict_the_scores():
    """A flagged positive scoring above the unlabeled mean (it filled the estimated noise share)
    must not be described as "at or below" that mean."""
    u = np.full(1000, 0.000813)
    p = np.concatenate([np.full(10, 0.9), np.full(6, 0.0001), np.full(2, 0.00603)])
    scores = np.concatenate([u, p])
    s = np.concatenate([np.zeros(len(u), bool), np.ones(len(p), bool)])
    report = audit_labels(s, oof_scores=scores)
    reasons = {flag.index: flag.reasons[0] for flag in report.flags}
    above = [i for i in reasons if scores[i] > 0.000813]
    below = [i for i in reasons if scores[i] <= 0.000813]
    assert above and below
    for i in above:
        assert "at or below" not in reasons[i]
        assert "0.00603 is below the positives' mean" in reasons[i]
    for i in below:
        assert "0.0001 is at or below the unlabeled cases' mean 0.000813" in reasons[i]
