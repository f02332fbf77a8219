"""TwoStepPU reports each EM round to a progress callback (the app's live progress bar)."""

from __future__ import annotations

import numpy as np
import pytest

from learning.pu import TwoStepPU


def _data(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    positive = X[:, 0] > 1.0
    s = (positive & (rng.random(n) < 0.5)).astype(int)
    return X, s


def test_progress_is_called_after_every_round():
    X, s = _data()
    calls = []
    model = TwoStepPU(em_rounds_step1=2, em_rounds_step2=1, n_estimators=10, random_state=0)
    model.fit(X, s, progress=lambda done, total: calls.append((done, total)))
    total = 3 * model.n_bags_  # every bag's rounds count
    assert model.n_bags_ > 1
    assert calls == [(done, total) for done in range(1, total + 1)]


def test_an_exception_from_progress_stops_the_fit():
    X, s = _data()

    def stop(done, total):
        raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        TwoStepPU(n_estimators=5, random_state=0).fit(X, s, progress=stop)
