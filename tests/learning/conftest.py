"""Seeded synthetic PU data shared by the learning tests."""

from __future__ import annotations

import numpy as np
import pytest


def biased_pu_data(seed: int, n: int = 5000, d: int = 5, prior: float = 0.06):
    """Positives shifted on the first 3 features; P drawn mostly where feature 0 is high.

    Returns X (n, d), y (true labels) and s (1 = labeled positive: a biased sample of y).
    """
    rng = np.random.RandomState(seed)
    y = (rng.rand(n) < prior).astype(int)
    X = rng.randn(n, d)
    pos = np.flatnonzero(y)
    X[pos, :3] += 1.5
    labeled_prob = 0.5 / (1 + np.exp(-(X[pos, 0] - 1.5) * 3))
    s = np.zeros(n, dtype=int)
    s[pos[rng.rand(len(pos)) < labeled_prob]] = 1
    return X, y, s


@pytest.fixture
def pu_data():
    return biased_pu_data(0)
