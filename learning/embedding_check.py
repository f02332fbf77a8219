"""Do the behaviour-sequence embeddings help this pool? The ``auto`` setting's decision.

An out-of-fold check of the PU objective with and without the embedding columns: a plain
LightGBM separating the known positives (P) from the rest (U and not-confirmed answers) is fitted
on K folds of a sample (every known positive, at most ``max_unlabeled`` others), once on all the
features and once without the embeddings, and each fold's held-out rows are scored. The figure
compared is the held-out P-vs-U ROC AUC: under the PU assumption that the labeled positives are
a random share of all positives, ``AUC(P vs U) = (1 - theta) * AUC(P vs N) + theta / 2`` with
``theta`` the share of positives in U, so a higher P-vs-U AUC means a higher true AUC without a
single negative label (Menon et al., 2015). The embeddings are used when their gain is above
zero with ``level`` confidence: the low end of a paired bootstrap interval (rows drawn again,
both scores kept together) lies above 0. They cost an encoder's embedding pass per dataset
version and a wider matrix in every fit, so a gain that noise could explain does not earn them.

The check costs ``2 * n_splits`` small fits (seconds on a million cases: U is sampled), against
the iteration's two-step model with its EM rounds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from learning.baselines import fit_gbrt

CHECK_TREES = 100
CHECK_FOLDS = 3
CHECK_MAX_UNLABELED = 50_000
CHECK_BOOTSTRAP = 200
CHECK_LEVEL = 0.8


@dataclass(frozen=True)
class EmbeddingsCheck:
    """The decision and its figures, as logged and recorded in a model version."""

    use: bool
    auc_with: float
    auc_without: float
    gain: float
    gain_low: float
    gain_high: float
    level: float
    n_positive: int
    n_unlabeled: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "used" if self.use else "left out"
        return (
            f"embeddings {verdict}: held-out P-vs-U ROC AUC {self.auc_with:.4f} with them, "
            f"{self.auc_without:.4f} without (gain {self.gain:+.4f}, {self.level:.0%} interval "
            f"{self.gain_low:+.4f} to {self.gain_high:+.4f}; {self.n_positive:,} positives, "
            f"{self.n_unlabeled:,} others sampled, {self.seconds:.1f} s)"
        )


def embeddings_check(
    X: np.ndarray,
    s: np.ndarray,
    embedding_columns: np.ndarray | list[int],
    *,
    sample_weight: np.ndarray | None = None,
    categorical_features: list[int] | None = None,
    n_splits: int = CHECK_FOLDS,
    max_unlabeled: int = CHECK_MAX_UNLABELED,
    n_bootstrap: int = CHECK_BOOTSTRAP,
    level: float = CHECK_LEVEL,
    n_jobs: int | None = None,
    random_state: int = 0,
) -> EmbeddingsCheck:
    """Whether the columns ``embedding_columns`` of ``X`` raise the held-out PU objective.

    Parameters
    ----------
    X : ndarray, shape (n, n_features)
        The iteration's matrix with the embeddings.
    s : ndarray of {0, 1}, shape (n,)
        1 for the known positives (seeds and confirmed answers).
    embedding_columns : positions of the embedding columns in ``X``.
    sample_weight : ndarray, shape (n,), optional
        The loop's training weights (confirmed positives weigh more).
    categorical_features : positions of the categorical columns in ``X``.
    """
    started = time.monotonic()
    s = np.asarray(s).astype(np.int8)
    emb = np.zeros(X.shape[1], bool)
    emb[np.asarray(embedding_columns, dtype=np.intp)] = True
    if not emb.any():
        raise ValueError("no embedding columns to check")
    rng = np.random.default_rng(random_state)
    positive = np.flatnonzero(s == 1)
    other = np.flatnonzero(s == 0)
    if len(other) > max_unlabeled:
        other = np.sort(rng.choice(other, size=max_unlabeled, replace=False))
    rows = np.concatenate([positive, other])
    y = s[rows]
    n_splits = int(min(n_splits, len(positive)))
    if n_splits < 2:
        raise ValueError(f"need at least 2 known positives for the check, have {len(positive)}")
    weight = None if sample_weight is None else np.asarray(sample_weight, float)[rows]
    kept = np.flatnonzero(~emb)
    remap = {old: new for new, old in enumerate(kept)}
    cat_without = [remap[c] for c in (categorical_features or []) if c in remap]
    scores = {"with": np.zeros(len(rows)), "without": np.zeros(len(rows))}
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    for train, test in folds.split(rows, y):
        for name, cols, cats in (
            ("with", slice(None), categorical_features),
            ("without", kept, cat_without),
        ):
            Xs = X[rows[train]][:, cols]
            booster = fit_gbrt(
                Xs,
                y[train],
                sample_weight=None if weight is None else weight[train],
                categorical_features=cats or None,
                n_estimators=CHECK_TREES,
                n_jobs=n_jobs,
                seed=random_state,
            )
            scores[name][test] = booster.predict(X[rows[test]][:, cols])
    auc_with = float(roc_auc_score(y, scores["with"]))
    auc_without = float(roc_auc_score(y, scores["without"]))
    gains = _bootstrap_gains(y, scores["with"], scores["without"], n_bootstrap, rng)
    low, high = np.quantile(gains, [(1 - level) / 2, (1 + level) / 2])
    return EmbeddingsCheck(
        use=bool(low > 0),
        auc_with=round(auc_with, 5),
        auc_without=round(auc_without, 5),
        gain=round(auc_with - auc_without, 5),
        gain_low=round(float(low), 5),
        gain_high=round(float(high), 5),
        level=level,
        n_positive=int(len(positive)),
        n_unlabeled=int(len(other)),
        seconds=round(time.monotonic() - started, 2),
    )


def _bootstrap_gains(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """AUC(a) - AUC(b) on ``n`` stratified resamples of the rows (the pair kept together)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    out = np.empty(n)
    for i in range(n):
        rows = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        out[i] = _auc(y[rows], a[rows]) - _auc(y[rows], b[rows])
    return out


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by ranks (ties share their mean rank), faster than sklearn for many resamples."""
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    # mean rank within ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    if len(first) < len(score):
        mean_rank = first + (counts + 1) / 2.0
        ranks[order] = np.repeat(mean_rank, counts)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
