"""The ``auto`` embeddings decision (learning.embedding_check)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from learning.embedding_check import _auc, embeddings_check


def _pool(informative: bool, n=4000, seed=0):
    """Hand features that find half the positives; four extra columns that find the rest
    (``informative``) or are noise."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.08
    kind = rng.random(n) < 0.5  # which half of the positives the hand features see
    hand = rng.standard_normal((n, 3))
    hand[y & kind, 0] += 2.5
    extra = rng.standard_normal((n, 4))
    if informative:
        extra[y & ~kind, :2] += 2.5
    s = (y & (rng.random(n) < 0.4)).astype(np.int8)
    return np.hstack([hand, extra]).astype(np.float32), s


def test_informative_embeddings_are_used():
    X, s = _pool(informative=True)
    check = embeddings_check(X, s, [3, 4, 5, 6], n_jobs=1)
    assert check.use
    assert check.gain_low > 0 and check.auc_with > check.auc_without
    assert check.n_positive == int(s.sum()) and check.n_unlabeled == len(s) - int(s.sum())
    assert "used" in check.summary()
    assert set(check.to_dict()) >= {"use", "auc_with", "auc_without", "gain_low", "seconds"}


def test_noise_embeddings_are_left_out():
    for seed in (0, 1, 2):
        X, s = _pool(informative=False, seed=seed)
        check = embeddings_check(X, s, [3, 4, 5, 6], n_jobs=1, random_state=seed)
        assert not check.use, check.summary()
        assert "left out" in check.summary()


def test_unlabeled_are_sampled_and_weights_and_categories_pass_through():
    X, s = _pool(informative=True, n=3000)
    X[:, 2] = np.arange(len(X)) % 4  # a categorical column, kept in both fits
    weight = np.where(s == 1, 5.0, 1.0)
    check = embeddings_check(
        X, s, [3, 4, 5, 6], sample_weight=weight, categorical_features=[2], max_unlabeled=500
    )
    assert check.n_unlabeled == 500


def test_bad_inputs_are_clear_errors():
    X, s = _pool(informative=True, n=500)
    with pytest.raises(ValueError, match="no embedding columns"):
        embeddings_check(X, s, [])
    one = np.zeros_like(s)
    one[0] = 1
    with pytest.raises(ValueError, match="at least 2 known positives"):
        embeddings_check(X, one, [3])


def test_rank_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.2
    score = np.round(rng.random(300) + y * 0.3, 1)  # many ties
    assert _auc(y, score) == pytest.approx(roc_auc_score(y, score))


def test_the_experts_answers_decide_once_they_hold_both_kinds():
    """Seeds from a rule (P = amount > t) make P vs U separable by the rule's column alone: the
    check says it cannot tell. With answers, it judges on them: columns that tell the confirmed
    answers from the rejected ones are used."""
    rng = np.random.default_rng(0)
    n = 6000
    amount = rng.gamma(2.0, 30.0, n)
    y = (amount > 150) | (rng.random(n) < 0.04)
    emb = rng.standard_normal((n, 3))
    emb[y & (amount <= 150), 0] += 3.0  # the positives the rule misses show in the embeddings
    X = np.column_stack([amount, rng.standard_normal(n), emb]).astype(np.float32)
    s = (amount > 150).astype(np.int8)
    rule_only = embeddings_check(X, s, [2, 3, 4], n_jobs=1)
    assert not rule_only.informative and not rule_only.use
    assert rule_only.measured_on == "P vs U" and "cannot tell" in rule_only.summary()
    # two batches answered: some of the rule's misses confirmed, the rest not
    shown = np.flatnonzero(s == 0)[:400]
    answered = np.zeros(n, bool)
    answered[shown] = True
    s2 = s.copy()
    s2[shown[y[shown]]] = 1
    check = embeddings_check(X, s2, [2, 3, 4], answered=answered, n_jobs=1)
    assert check.measured_on == "answers" and check.n_answers == 400
    assert check.informative and check.use, check.summary()
    assert "the experts' 400 answers" in check.summary()
