"""One booster scoring the mean raw score of several (the bagged two-step model's merge)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from learning.booster_average import average_boosters


def _boosters(n: int = 3, linear: bool = False) -> tuple[np.ndarray, list[lgb.Booster]]:
    rng = np.random.RandomState(0)
    X = rng.rand(400, 4)
    X[:, 3] = rng.randint(0, 5, 400)
    y = (X[:, 0] + 0.3 * rng.rand(400) > 0.7).astype(float)
    params = {"objective": "cross_entropy", "verbosity": -1, "extra_trees": True}
    if linear:
        params["linear_tree"] = True
    boosters = [
        lgb.train(
            {**params, "seed": i, "bagging_fraction": 0.7, "bagging_freq": 1},
            lgb.Dataset(X, y, categorical_feature=[3]),
            num_boost_round=15,
        )
        for i in range(n)
    ]
    return X, boosters


def test_the_merged_booster_scores_the_mean_raw_score_and_round_trips():
    X, boosters = _boosters()
    merged = average_boosters(boosters)
    mean_raw = np.mean([b.predict(X, raw_score=True) for b in boosters], axis=0)
    np.testing.assert_allclose(merged.predict(X, raw_score=True), mean_raw, atol=1e-12)
    assert merged.num_trees() == sum(b.num_trees() for b in boosters)
    np.testing.assert_allclose(
        merged.predict(X, pred_contrib=True).sum(axis=1), mean_raw, atol=1e-9
    )
    reloaded = lgb.Booster(model_str=merged.model_to_string())
    np.testing.assert_allclose(reloaded.predict(X, raw_score=True), mean_raw, atol=1e-12)


def test_one_booster_is_returned_as_it_is_and_none_is_refused():
    _, boosters = _boosters(1)
    assert average_boosters(boosters) is boosters[0]
    with pytest.raises(ValueError, match="no booster"):
        average_boosters([])


def test_linear_trees_are_refused():
    _, boosters = _boosters(2, linear=True)
    with pytest.raises(ValueError, match="linear trees"):
        average_boosters(boosters)
