"""Baselines of the benchmark: Isolation Forest, naive PU (P vs U) and the all-labels oracle."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
from sklearn.ensemble import IsolationForest


def auto_min_child_samples(n_rows: int) -> int:
    """Smallest leaf for ``n_rows`` rows: 20 up to 20,000 rows, then n / 1,000, at most 100.

    A million rows of PU data hold thousands of hidden positives labelled 0; leaves of 20 cases
    fit their noise (measured on ``fraud_handbook``: docs/benchmarks.md), while small tables
    (a few thousand rows, a hundred positives) need the small leaves.
    """
    return int(min(100, max(20, n_rows // 1000)))


def auto_learning_rate(n_rows: int) -> float:
    """Learning rate for ``n_rows`` training rows: 0.1 up to 50,000 rows, 0.03 above.

    On large PU tables (``fraud_handbook``: 100,000 U sampled per round) 0.1 fits the hidden
    positives' 0 targets within 100 trees and 0.03 ranks far better; on the small adbench tables
    (a few thousand rows) 0.03 stops short in 100 trees (docs/benchmarks.md has both runs).
    """
    return 0.1 if n_rows <= 50_000 else 0.03


def lgbm_params(
    *,
    n_estimators: int = 100,
    learning_rate: float = 0.1,
    num_leaves: int = 31,
    min_child_samples: int = 20,
    n_jobs: int | None = None,
    seed: int = 0,
) -> dict:
    """LightGBM parameters shared by the GBRT baselines and :class:`~learning.pu.TwoStepPU`."""
    params = {
        "objective": "binary",
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_child_samples": min_child_samples,
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "n_estimators": n_estimators,
    }
    if n_jobs is not None:
        params["num_threads"] = n_jobs
    return params


def fit_gbrt(X, y, *, sample_weight=None, categorical_features=None, **kwargs) -> lgb.Booster:
    """One plain LightGBM fit of ``y`` on ``X`` (binary objective).

    ``min_child_samples="auto"`` and ``learning_rate="auto"`` (the defaults) follow the number of
    rows: :func:`auto_min_child_samples`, :func:`auto_learning_rate`.

    Parameters
    ----------
    X : array-like or DataFrame, shape (n_samples, n_features)
    y : array-like of {0, 1}, shape (n_samples,)
    sample_weight : array-like, shape (n_samples,), optional
    **kwargs
        Passed to :func:`lgbm_params`.
    """
    if kwargs.get("min_child_samples", "auto") == "auto":
        kwargs["min_child_samples"] = auto_min_child_samples(len(y))
    if kwargs.get("learning_rate", "auto") == "auto":
        kwargs["learning_rate"] = auto_learning_rate(len(y))
    params = lgbm_params(**kwargs)
    n_trees = params.pop("n_estimators")
    data = lgb.Dataset(
        X,
        label=np.asarray(y),
        weight=sample_weight,
        categorical_feature=categorical_features or "auto",
    )
    return lgb.train(params, data, num_boost_round=n_trees)


def naive_pu(X, s, **kwargs) -> lgb.Booster:
    """GBRT on P (``s == 1``) against all of U, no expert labels: the "supervised GBRT" baseline."""
    return fit_gbrt(X, s, **kwargs)


def oracle(X, y_true, **kwargs) -> lgb.Booster:
    """The same GBRT trained on every true label: the ceiling of a learner on these features."""
    return fit_gbrt(X, y_true, **kwargs)


def isolation_forest_scores(
    X_fit: np.ndarray,
    X_score: np.ndarray,
    *,
    random_state=None,
    n_jobs: int | None = None,
    max_fit_samples: int = 200_000,
) -> np.ndarray:
    """Anomaly scores of ``X_score`` by an Isolation Forest fit on ``X_fit`` (higher = stranger).

    Parameters
    ----------
    X_fit : array-like, shape (n_fit, n_features)
        At most ``max_fit_samples`` rows (sampled) are used; the trees see 256 each anyway.
    X_score : array-like, shape (n_score, n_features)

    Returns
    -------
    ndarray of float, shape (n_score,)
    """
    X_fit = np.nan_to_num(np.asarray(X_fit, dtype=np.float32))
    rng = np.random.RandomState(random_state if isinstance(random_state, int) else None)
    if len(X_fit) > max_fit_samples:
        X_fit = X_fit[rng.choice(len(X_fit), max_fit_samples, replace=False)]
    forest = IsolationForest(n_estimators=200, random_state=random_state, n_jobs=n_jobs)
    forest.fit(X_fit)
    return -forest.score_samples(np.nan_to_num(np.asarray(X_score, dtype=np.float32)))
