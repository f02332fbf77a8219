"""Do the behaviour-sequence embeddings help this pool? The ``auto`` setting's decision.

An out-of-fold check of the PU objective with and without the embedding columns: a plain
LightGBM separating the known positives (P) from the rest (U and not-confirmed answers) is fitted
on K folds of a sample (every known positive and every expert answer, at most ``max_unlabeled``
others), once on all the features and once without the embeddings, and each fold's held-out rows
are scored. The figure compared is a held-out ROC AUC, on one of two sets:

- **the experts' answers** (confirmed against not confirmed), once they hold at least
  :data:`MIN_ANSWERS_EACH` of each: real labels, on the cases the loop found hard, the ones the
  next batches are drawn from;
- otherwise **P against U**: under the PU assumption that the labeled positives are a random
  share of all positives, ``AUC(P vs U) = (1 - theta) * AUC(P vs N) + theta / 2`` with ``theta``
  the share of positives in U, so a higher P-vs-U AUC means a higher true AUC without a single
  negative label (Menon et al., 2015). Seeds defined by a rule break that assumption (P is then
  a function of the rule's columns and both fits separate it perfectly): the check says so
  (``informative`` False) and keeps the embeddings out until the experts' answers can decide.

The embeddings are used when their gain is above zero with ``level`` confidence: the low end of
a paired bootstrap interval (rows drawn again, both scores kept together) lies above 0. They cost
an encoder's embedding pass per dataset version and a wider matrix in every fit, so a gain that
noise could explain does not earn them.

The check costs ``2 * n_splits`` small fits (seconds on a million cases: U is sampled), against
the iteration's two-step model with its EM rounds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from learning.baselines import fit_gbrt

CHECK_TREES = 100
CHECK_FOLDS = 3
CHECK_MAX_UNLABELED = 50_000
CHECK_BOOTSTRAP = 200
CHECK_LEVEL = 0.8
MIN_ANSWERS_EACH = 5  # confirmed and not-confirmed answers needed to judge on the answers
SATURATED_AUC = 0.999  # both fits at least this far apart from chance: nothing to compare


@dataclass(frozen=True)
class EmbeddingsCheck:
    """The decision and its figures, as logged and recorded in a model version."""

    use: bool
    measured_on: str  # "answers" or "P vs U"
    informative: bool
    auc_with: float
    auc_without: float
    gain: float
    gain_low: float
    gain_high: float
    level: float
    n_positive: int
    n_unlabeled: int
    n_answers: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "used" if self.use else "left out"
        where = (
            f"the experts' {self.n_answers:,} answers (confirmed vs not)"
            if self.measured_on == "answers"
            else "P vs U"
        )
        head = (
            f"embeddings {verdict}: held-out ROC AUC on {where} {self.auc_with:.4f} with them, "
            f"{self.auc_without:.4f} without"
        )
        if not self.informative:
            return (
                f"{head}: both fits separate them perfectly (seeds defined by a rule?), so this "
                f"check cannot tell and they stay out; the experts' answers decide once they hold "
                f"{MIN_ANSWERS_EACH} confirmed and {MIN_ANSWERS_EACH} not confirmed "
                f"({self.seconds:.1f} s)"
            )
        return (
            f"{head} (gain {self.gain:+.4f}, {self.level:.0%} interval "
            f"{self.gain_low:+.4f} to {self.gain_high:+.4f}; {self.n_positive:,} positives, "
            f"{self.n_unlabeled:,} others sampled, {self.seconds:.1f} s)"
        )


def embeddings_check(
    X: np.ndarray,
    s: np.ndarray,
    embedding_columns: np.ndarray | list[int],
    *,
    sample_weight: np.ndarray | None = None,
    answered: np.ndarray | None = None,
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
    answered : ndarray of bool, shape (n,), optional
        The experts' answers (confirmed or not confirmed); judged on when they hold at least
        :data:`MIN_ANSWERS_EACH` of each.
    categorical_features : positions of the categorical columns in ``X``.
    """
    started = time.monotonic()
    s = np.asarray(s).astype(np.int8)
    emb = np.zeros(X.shape[1], bool)
    emb[np.asarray(embedding_columns, dtype=np.intp)] = True
    if not emb.any():
        raise ValueError("no embedding columns to check")
    rng = np.random.default_rng(random_state)
    answered = np.zeros(len(s), bool) if answered is None else np.asarray(answered, bool)
    positive = np.flatnonzero(s == 1)
    other = np.flatnonzero(s == 0)
    if len(other) > max_unlabeled:
        keep = answered[other]  # every answer stays in the sample
        sampled = rng.choice(other[~keep], size=max(max_unlabeled - keep.sum(), 0), replace=False)
        other = np.sort(np.concatenate([other[keep], sampled]))
    rows = np.concatenate([positive, other])
    y = s[rows]
    on_answers = answered[rows]
    n_yes, n_no = int((y[on_answers] == 1).sum()), int((y[on_answers] == 0).sum())
    by_answers = min(n_yes, n_no) >= MIN_ANSWERS_EACH
    judge = on_answers if by_answers else np.ones(len(rows), bool)
    n_splits = int(min(n_splits, len(positive)))
    if n_splits < 2:
        raise ValueError(f"need at least 2 known positives for the check, have {len(positive)}")
    weight = None if sample_weight is None else np.asarray(sample_weight, float)[rows]
    kept = np.flatnonzero(~emb)
    remap = {old: new for new, old in enumerate(kept)}
    cat_without = [remap[c] for c in (categorical_features or []) if c in remap]
    sample = {"with": np.asarray(X[rows]), "without": None}
    sample["without"] = sample["with"][:, kept]
    cats = {"with": categorical_features, "without": cat_without}
    scores = {"with": np.zeros(len(rows)), "without": np.zeros(len(rows))}
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    for train, test in folds.split(rows, y):
        for name, Xs in sample.items():
            booster = fit_gbrt(
                Xs[train],
                y[train],
                sample_weight=None if weight is None else weight[train],
                categorical_features=cats[name] or None,
                n_estimators=CHECK_TREES,
                n_jobs=n_jobs,
                seed=random_state,
            )
            scores[name][test] = booster.predict(Xs[test])
    yj, with_j, without_j = y[judge], scores["with"][judge], scores["without"][judge]
    auc_with = float(roc_auc_score(yj, with_j))
    auc_without = float(roc_auc_score(yj, without_j))
    informative = min(auc_with, auc_without) < SATURATED_AUC
    gains = _bootstrap_gains(yj, with_j, without_j, n_bootstrap, rng)
    low, high = np.quantile(gains, [(1 - level) / 2, (1 + level) / 2])
    return EmbeddingsCheck(
        use=bool(informative and low > 0),
        measured_on="answers" if by_answers else "P vs U",
        informative=bool(informative),
        auc_with=round(auc_with, 5),
        auc_without=round(auc_without, 5),
        gain=round(auc_with - auc_without, 5),
        gain_low=round(float(low), 5),
        gain_high=round(float(high), 5),
        level=level,
        n_positive=int(len(positive)),
        n_unlabeled=int(len(other)),
        n_answers=int(on_answers.sum()),
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
    ranks = rankdata(score)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
