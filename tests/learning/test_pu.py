import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import average_precision_score

from learning.baselines import naive_pu
from learning.pu import TwoStepPU

from .conftest import biased_pu_data


def test_two_step_ranks_hidden_positives_above_naive_pu():
    # Averaged over seeds: single seeds are noisy, the direction is what we claim.
    two_step, naive = [], []
    for seed in range(6):
        X, y, s = biased_pu_data(seed)
        u = s == 0
        naive_scores = naive_pu(X, s, seed=0, n_estimators=30, n_jobs=1).predict(X)
        model = TwoStepPU(n_estimators=30, n_jobs=1, random_state=0).fit(X, s)
        scores = model.predict_proba(X)[:, 1]
        naive.append(average_precision_score(y[u], naive_scores[u]))
        two_step.append(average_precision_score(y[u], scores[u]))
    assert np.mean(two_step) > np.mean(naive) + 0.02
    assert sum(t > n for t, n in zip(two_step, naive, strict=True)) >= 5


def test_spies_and_reliable_negatives(pu_data):
    X, y, s = pu_data
    model = TwoStepPU(spy_fraction=0.2, n_estimators=30, n_jobs=1, random_state=1).fit(X, s)
    assert model.spy_mask_.sum() == round(0.2 * s.sum())
    assert (s[model.spy_mask_] == 1).all()
    rn = model.reliable_negative_mask_
    assert (s[rn] == 0).all() and rn.any()
    # Reliable negatives are cleaner than U as a whole.
    assert y[rn].mean() < 0.7 * y[s == 0].mean()
    steps = [(h["step"], h["round"]) for h in model.history_]
    assert steps == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert {"target_mean_unlabeled", "score_q50", "score_q99", "seconds"} <= set(model.history_[0])
    assert 0.0 < model.spy_threshold_ < 1.0


def test_same_random_state_same_result(pu_data):
    X, _, s = pu_data
    a = (
        TwoStepPU(n_estimators=20, n_jobs=1, random_state=3, max_unlabeled=2000)
        .fit(X, s)
        .predict_proba(X)
    )
    b = (
        TwoStepPU(n_estimators=20, n_jobs=1, random_state=3, max_unlabeled=2000)
        .fit(X, s)
        .predict_proba(X)
    )
    c = (
        TwoStepPU(n_estimators=20, n_jobs=1, random_state=4, max_unlabeled=2000)
        .fit(X, s)
        .predict_proba(X)
    )
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_estimator_contract(pu_data, tmp_path):
    X, _, s = pu_data
    model = TwoStepPU(n_estimators=20, n_jobs=1, random_state=0)
    with pytest.raises(NotFittedError):
        model.predict_proba(X)
    params = model.get_params()
    assert params["n_estimators"] == 20 and params["spy_quantile"] == 0.1
    cloned = clone(model).set_params(em_rounds_step2=1)
    assert cloned.em_rounds_step2 == 1 and model.em_rounds_step2 == 2
    assert not any(k.endswith("_") for k in vars(model))  # __init__ stores parameters only
    assert model.fit(X, s) is model
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    raw = model.decision_function(X)
    assert raw.shape == (len(X),)
    assert np.all(np.diff(proba[np.argsort(raw), 1]) >= -1e-12)  # same ranking
    contrib = model.contributions(X[:50])
    assert contrib.shape == (50, X.shape[1] + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), raw[:50], rtol=1e-6, atol=1e-6)
    assert model.n_features_in_ == X.shape[1]
    with pytest.raises(ValueError):
        model.predict_proba(X[:, :3])
    path = tmp_path / "model.txt"
    model.booster_.save_model(str(path))
    np.testing.assert_allclose(lgb.Booster(model_file=str(path)).predict(X), proba[:, 1])


def test_dataframe_input_and_sample_weight(pu_data):
    X, _, s = pu_data
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    weight = np.where(s == 1, 5.0, 1.0)
    model = TwoStepPU(n_estimators=20, n_jobs=1, random_state=0).fit(frame, s, sample_weight=weight)
    assert list(model.feature_names_in_) == list(frame.columns)
    unweighted = TwoStepPU(n_estimators=20, n_jobs=1, random_state=0).fit(frame, s)
    assert not np.allclose(model.predict_proba(frame), unweighted.predict_proba(frame))


def test_rejects_bad_targets(pu_data):
    X, _, s = pu_data
    with pytest.raises(ValueError):
        TwoStepPU(n_jobs=1).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError):
        TwoStepPU(n_jobs=1).fit(X, s * 2)


def test_max_unlabeled_subsamples_training_rows(pu_data):
    X, _, s = pu_data
    model = TwoStepPU(
        max_unlabeled=1000, n_estimators=30, n_estimators_em=10, n_jobs=1, random_state=0
    ).fit(X, s)
    assert all(h["n_train"] == s.sum() + 1000 for h in model.history_)
    assert [h["n_trees"] for h in model.history_] == [10, 10, 10, 30]
    assert model.reliable_negative_mask_.sum() <= 1000
