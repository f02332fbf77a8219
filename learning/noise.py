"""Label-noise audit: which positives (rule seeds, expert answers) deserve a second look (seed 003).

Three independent signals, each flag carrying its reasons:

(a) **Confident learning** on out-of-fold scores (Northcutt et al., as in cleanlab's
    ``find_label_issues`` with ``filter_by="prune_by_noise_rate"``, binary case). With
    ``p = P(labeled positive | x)`` scored out of fold, the per-class thresholds are the mean
    self-confidence of each class: ``t1 = mean p over P``, ``t0 = mean (1 - p) over U``. A positive
    with ``1 - p >= t0`` is confidently of the other class; their share of P (the confident joint's
    off-diagonal, calibrated) estimates the noise rate, and that many positives with the largest
    margin ``(1 - p) - p`` are flagged. Only positives are audited: in PU data, U holds hidden
    positives by design, finding them is the model's job.
(b) **Closeness to confidently clean cases**: among a positive's k nearest neighbours in a pool
    of the other positives and an equally large sample of confidently clean cases (the lowest
    out-of-fold scores of U), most are clean.
(c) **Disagreement between experts** on the same case; :func:`cohens_kappa` measures agreement.

Everything here takes arrays and returns arrays and dataclasses; no Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from learning.neighbors import NeighborIndex

CONFIDENT_LEARNING = "confident_learning"
NEAR_CLEAN = "near_clean"
EXPERT_DISAGREEMENT = "expert_disagreement"


@dataclass
class NoiseFlag:
    """One suspicious label.

    Attributes
    ----------
    index : int
        Row of the case in the arrays given to the audit.
    methods : list of str
        Which signals raised it (``confident_learning``, ``near_clean``, ``expert_disagreement``).
    reasons : list of str
        One sentence per signal, for the audit page.
    suspicion : float
        In [0, 1], higher is more suspicious (the largest of the signals' strengths).
    """

    index: int
    methods: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    suspicion: float = 0.0

    def add(self, method: str, reason: str, strength: float) -> None:
        self.methods.append(method)
        self.reasons.append(reason)
        self.suspicion = max(self.suspicion, float(strength))


@dataclass
class ConfidentLearningResult:
    """Outcome of :func:`confident_learning_flags`.

    Attributes
    ----------
    mask : ndarray of bool, shape (n_samples,)
        Flagged positives.
    threshold_positive, threshold_unlabeled : float
        ``t1`` (mean score of P) and ``1 - t0`` (mean score of U).
    noise_rate : float
        Estimated share of P whose true class is negative.
    margin : ndarray of float, shape (n_samples,)
        ``(1 - p) - p``; larger is more suspicious.
    """

    mask: np.ndarray
    threshold_positive: float
    threshold_unlabeled: float
    noise_rate: float
    margin: np.ndarray


@dataclass
class NeighborFlagResult:
    """Outcome of :func:`neighbor_flags`.

    Attributes
    ----------
    mask : ndarray of bool, shape (n_samples,)
    clean_share : ndarray of float, shape (n_samples,)
        Among each positive's neighbours, the (size-balanced) share of clean cases; NaN elsewhere.
    n_clean : ndarray of int, shape (n_samples,)
        Clean cases among the neighbours.
    nearest_clean : ndarray of int, shape (n_samples,)
        Row of the nearest clean neighbour (-1 if none).
    nearest_clean_distance : ndarray of float, shape (n_samples,)
    """

    mask: np.ndarray
    clean_share: np.ndarray
    n_clean: np.ndarray
    nearest_clean: np.ndarray
    nearest_clean_distance: np.ndarray


def default_oof_estimator(random_state: int = 0, n_jobs: int = 1):
    """A small, strongly regularised LightGBM classifier for out-of-fold P-vs-U probabilities.

    Confident learning compares each positive's score with class means, so it needs smooth,
    roughly calibrated probabilities: with few positives, deeper trees memorise the labeled ones
    and score held-out true positives near zero (the estimated noise rate then doubles).
    """
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        n_estimators=100,
        learning_rate=0.05,
        num_leaves=8,
        min_child_samples=30,
        reg_lambda=5.0,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.9,
        random_state=random_state,
        n_jobs=n_jobs,
        verbosity=-1,
    )


def out_of_fold_scores(
    X,
    s,
    *,
    estimator=None,
    n_splits: int = 5,
    sample_weight=None,
    max_unlabeled: int | None = None,
    random_state: int = 0,
) -> np.ndarray:
    """Score every case with a model that never saw its label (K-fold cross-fitting).

    Parameters
    ----------
    X : array-like or DataFrame, shape (n_samples, n_features)
    s : array-like of {0, 1}, shape (n_samples,)
        1 for known positives (P), 0 for unlabeled (U).
    estimator : classifier with ``fit(X, y[, sample_weight])`` and ``predict_proba``, optional
        Cloned per fold: e.g. :class:`learning.pu.TwoStepPU`; default
        :func:`default_oof_estimator` (plain P vs U, a calibrated ``P(s=1 | x)``).
    n_splits : int
    sample_weight : array-like of float, shape (n_samples,), optional
    max_unlabeled : int, optional
        Cross-fit on every positive and a random sample of this many unlabeled cases; the other
        unlabeled cases (never trained on) get the mean score of the fold models.
    random_state : int

    Returns
    -------
    ndarray of float64, shape (n_samples,)
        Out-of-fold positive-class probability.
    """
    s = np.asarray(s).astype(int)
    if estimator is None:
        estimator = default_oof_estimator(random_state)
    rng = np.random.default_rng(random_state)
    unlabeled = np.flatnonzero(s == 0)
    fit_rows = np.arange(len(s))
    rest = np.array([], dtype=np.int64)
    if max_unlabeled is not None and len(unlabeled) > max_unlabeled:
        kept = rng.choice(unlabeled, size=max_unlabeled, replace=False)
        fit_rows = np.sort(np.concatenate([np.flatnonzero(s == 1), kept]))
        rest = np.setdiff1d(unlabeled, kept)
    s_fit = s[fit_rows]
    n_splits = max(2, min(n_splits, int(s_fit.sum()), int((1 - s_fit).sum())))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    scores = np.zeros(len(s), dtype=np.float64)
    for train, test in folds.split(np.zeros(len(fit_rows)), s_fit):
        model = clone(estimator)
        fit_kwargs = {}
        if sample_weight is not None:
            fit_kwargs["sample_weight"] = np.asarray(sample_weight)[fit_rows[train]]
        model.fit(_rows(X, fit_rows[train]), s_fit[train], **fit_kwargs)
        scores[fit_rows[test]] = model.predict_proba(_rows(X, fit_rows[test]))[:, 1]
        for start in range(0, len(rest), 200_000):
            part = rest[start : start + 200_000]
            scores[part] += model.predict_proba(_rows(X, part))[:, 1] / n_splits
    return scores


def _rows(X, idx: np.ndarray):
    return X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]


def confident_learning_flags(s, scores) -> ConfidentLearningResult:
    """Flag positives whose out-of-fold score says they belong to the other class.

    Parameters
    ----------
    s : array-like of {0, 1}, shape (n_samples,)
        Given labels: 1 for P, 0 for U.
    scores : array-like of float, shape (n_samples,)
        Out-of-fold ``P(s = 1 | x)`` (see :func:`out_of_fold_scores`).

    Returns
    -------
    ConfidentLearningResult
    """
    s = np.asarray(s).astype(bool)
    p = np.asarray(scores, dtype=np.float64)
    if s.shape != p.shape:
        raise ValueError("s and scores must have the same shape")
    if not s.any() or s.all():
        empty = np.zeros(len(s), dtype=bool)
        return ConfidentLearningResult(empty, float("nan"), float("nan"), 0.0, 1 - 2 * p)
    t_pos = float(p[s].mean())  # t1: mean self-confidence of P
    t_unl = float(p[~s].mean())  # 1 - t0: a positive scoring at most this looks like U
    confident_negative = s & (p <= t_unl)
    confident_positive = s & (p >= t_pos)
    off, diag = int(confident_negative.sum()), int(confident_positive.sum())
    noise_rate = off / (off + diag) if off + diag else 0.0
    n_flag = int(round(noise_rate * s.sum()))
    margin = (1.0 - p) - p
    mask = np.zeros(len(s), dtype=bool)
    if n_flag:
        positives = np.flatnonzero(s)
        order = positives[np.argsort(-margin[positives], kind="stable")]
        mask[order[:n_flag]] = True
        mask &= p < t_pos  # never flag a positive the model is confident about
    return ConfidentLearningResult(mask, t_pos, t_unl, noise_rate, margin)


def _confident_learning_reason(score: float, cl: ConfidentLearningResult, *, n_flagged: int) -> str:
    """Why confident learning flagged a positive, true to its score.

    A positive at or below the unlabeled mean scores like U; the others were flagged as among
    the lowest-scoring positives, which fill the estimated share of mislabeled ones (never one
    scoring at or above the positives' mean).
    """
    share = f"about {cl.noise_rate:.0%} of positives look mislabeled"
    if score <= cl.threshold_unlabeled:
        return (
            f"out-of-fold score {score:.3g} is at or below the unlabeled cases' mean "
            f"{cl.threshold_unlabeled:.3g}: it scores like an unlabeled case "
            f"(positives average {cl.threshold_positive:.3g}); {share}"
        )
    return (
        f"out-of-fold score {score:.3g} is below the positives' mean {cl.threshold_positive:.3g} "
        f"(unlabeled cases average {cl.threshold_unlabeled:.3g}): one of the {n_flagged} "
        f"lowest-scoring positives, as {share}"
    )


def confident_clean_mask(s, scores, *, quantile: float = 0.5) -> np.ndarray:
    """Unlabeled cases with out-of-fold scores at or below ``quantile`` of U's scores.

    Returns
    -------
    ndarray of bool, shape (n_samples,)
    """
    s = np.asarray(s).astype(bool)
    p = np.asarray(scores, dtype=np.float64)
    if s.all():
        return np.zeros(len(s), dtype=bool)
    cut = np.quantile(p[~s], quantile)
    return ~s & (p <= cut)


def neighbor_flags(
    X,
    positive_mask,
    clean_mask,
    *,
    n_neighbors: int = 10,
    min_clean_share: float = 0.8,
    clean_per_positive: float = 1.0,
    index_params: dict | None = None,
    random_state: int = 0,
) -> NeighborFlagResult:
    """Flag positives whose nearest neighbours are mostly confidently clean cases.

    The pool is every positive plus a random sample of ``clean_per_positive * |P|`` clean cases;
    clean votes are weighted by ``1 / clean_per_positive`` so that a positive in a region where
    positives and clean cases are equally dense scores 0.5.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
        The neighbour space (:func:`learning.neighbors.neighbor_matrix`).
    positive_mask, clean_mask : array-like of bool, shape (n_samples,)
    n_neighbors : int
    min_clean_share : float
        Flag when the balanced clean share among the neighbours reaches it.
    clean_per_positive : float
    index_params : dict, optional
        Passed to :class:`learning.neighbors.NeighborIndex`.
    random_state : int

    Returns
    -------
    NeighborFlagResult
    """
    positive_mask = np.asarray(positive_mask, dtype=bool)
    clean_mask = np.asarray(clean_mask, dtype=bool) & ~positive_mask
    n = len(positive_mask)
    share = np.full(n, np.nan)
    n_clean = np.zeros(n, dtype=np.int64)
    nearest = np.full(n, -1, dtype=np.int64)
    nearest_d = np.full(n, np.nan)
    positives = np.flatnonzero(positive_mask)
    clean = np.flatnonzero(clean_mask)
    if len(positives) < 2 or len(clean) == 0:
        return NeighborFlagResult(np.zeros(n, dtype=bool), share, n_clean, nearest, nearest_d)
    rng = np.random.default_rng(random_state)
    n_sample = min(len(clean), max(1, int(round(clean_per_positive * len(positives)))))
    clean_sample = np.sort(rng.choice(clean, size=n_sample, replace=False))
    weight = len(positives) / n_sample
    pool = np.concatenate([positives, clean_sample])
    is_clean = np.r_[np.zeros(len(positives), bool), np.ones(n_sample, bool)]
    index = NeighborIndex(**(index_params or {})).fit(np.asarray(X, dtype=np.float32)[pool])
    dist, idx = index.kneighbors_of_rows(np.arange(len(positives)), n_neighbors)
    clean_hit = is_clean[idx]
    c = clean_hit.sum(axis=1)
    pos_votes = clean_hit.shape[1] - c
    share[positives] = c * weight / np.maximum(c * weight + pos_votes, 1e-12)
    n_clean[positives] = c
    first = np.where(clean_hit.any(axis=1), clean_hit.argmax(axis=1), -1)
    has = first >= 0
    nearest[positives[has]] = pool[idx[has, first[has]]]
    nearest_d[positives[has]] = dist[has, first[has]]
    mask = np.zeros(n, dtype=bool)
    mask[positives] = share[positives] >= min_clean_share
    return NeighborFlagResult(mask, share, n_clean, nearest, nearest_d)


def cohens_kappa(a, b) -> float:
    """Cohen's kappa between two raters' answers on the same items.

    Parameters
    ----------
    a, b : array-like of hashable, shape (n_items,)

    Returns
    -------
    float
        ``(p_o - p_e) / (1 - p_e)``; 1.0 when both agree on every item even if chance agreement is
        1 (one category only); NaN for no items.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError("a and b must have the same shape")
    if a.size == 0:
        return float("nan")
    categories = np.unique(np.concatenate([a, b]))
    p_o = float((a == b).mean())
    p_e = float(sum((a == c).mean() * (b == c).mean() for c in categories))
    if p_e >= 1.0:
        return 1.0 if p_o == 1.0 else 0.0
    return (p_o - p_e) / (1.0 - p_e)


def expert_disagreements(case_index, rater, answer) -> dict[int, dict]:
    """Cases on which experts gave different answers (each expert's last answer counts).

    Parameters
    ----------
    case_index, rater, answer : array-like, shape (n_answers,)
        One row per answer, in time order; ``answer`` like "confirmed" / "not_confirmed".

    Returns
    -------
    dict of case index to {rater: answer}
        Only cases with two or more raters who disagree.
    """
    last: dict[int, dict] = {}
    for case, who, what in zip(case_index, rater, answer, strict=True):
        last.setdefault(int(case), {})[who] = what
    return {case: by for case, by in last.items() if len(set(by.values())) > 1}


def paired_answers(case_index, rater, answer) -> tuple[np.ndarray, np.ndarray]:
    """The first two raters' last answers on every case two raters answered (for kappa).

    Returns
    -------
    first, second : ndarray of object, shape (n_cases_with_two_raters,)
    """
    last: dict[int, dict] = {}
    for case, who, what in zip(case_index, rater, answer, strict=True):
        last.setdefault(int(case), {})[who] = what
    pairs = [list(by.values())[:2] for by in last.values() if len(by) >= 2]
    if not pairs:
        return np.array([], dtype=object), np.array([], dtype=object)
    first, second = zip(*pairs, strict=True)
    return np.array(first, dtype=object), np.array(second, dtype=object)


@dataclass
class NoiseReport:
    """The audit's outcome: flags with reasons, and what each signal found.

    Attributes
    ----------
    flags : list of NoiseFlag
        Sorted by suspicion, most suspicious first.
    confident_learning : ConfidentLearningResult or None
    neighbors : NeighborFlagResult or None
    disagreements : dict of int to dict
    """

    flags: list[NoiseFlag]
    confident_learning: ConfidentLearningResult | None = None
    neighbors: NeighborFlagResult | None = None
    disagreements: dict = field(default_factory=dict)

    def mask(self, n_samples: int, methods: tuple[str, ...] | None = None) -> np.ndarray:
        """Boolean mask of flagged rows, optionally only those raised by ``methods``."""
        out = np.zeros(n_samples, dtype=bool)
        for flag in self.flags:
            if methods is None or set(flag.methods) & set(methods):
                out[flag.index] = True
        return out


def audit_labels(
    s,
    *,
    oof_scores=None,
    neighbor_space=None,
    answers: tuple | None = None,
    n_neighbors: int = 10,
    min_clean_share: float = 0.8,
    clean_quantile: float = 0.5,
    index_params: dict | None = None,
    random_state: int = 0,
) -> NoiseReport:
    """Run every signal that its inputs allow and merge the flags.

    Parameters
    ----------
    s : array-like of {0, 1}, shape (n_samples,)
        Current positives (seeds and confirmed answers) as 1.
    oof_scores : array-like of float, shape (n_samples,), optional
        Out-of-fold scores (:func:`out_of_fold_scores`); enables (a) and the clean set of (b).
    neighbor_space : array-like, shape (n_samples, n_features), optional
        Enables (b) (needs ``oof_scores`` too).
    answers : (case_index, rater, answer) arrays, optional
        Expert answers in time order; enables (c).
    n_neighbors, min_clean_share, clean_quantile, index_params, random_state
        See :func:`neighbor_flags` and :func:`confident_clean_mask`.

    Returns
    -------
    NoiseReport
    """
    s = np.asarray(s).astype(bool)
    flags: dict[int, NoiseFlag] = {}

    def flag(i: int) -> NoiseFlag:
        return flags.setdefault(int(i), NoiseFlag(index=int(i)))

    cl = nb = None
    if oof_scores is not None:
        p = np.asarray(oof_scores, dtype=np.float64)
        cl = confident_learning_flags(s, p)
        for i in np.flatnonzero(cl.mask):
            flag(i).add(
                CONFIDENT_LEARNING,
                _confident_learning_reason(p[i], cl, n_flagged=int(cl.mask.sum())),
                min(1.0, max(0.0, 1.0 - p[i] / max(cl.threshold_positive, 1e-12))),
            )
        if neighbor_space is not None:
            clean = confident_clean_mask(s, p, quantile=clean_quantile)
            nb = neighbor_flags(
                neighbor_space,
                s,
                clean,
                n_neighbors=n_neighbors,
                min_clean_share=min_clean_share,
                index_params=index_params,
                random_state=random_state,
            )
            for i in np.flatnonzero(nb.mask):
                flag(i).add(
                    NEAR_CLEAN,
                    f"{nb.n_clean[i]} of its {n_neighbors} nearest neighbours are confidently "
                    f"clean cases (nearest: row {nb.nearest_clean[i]} at distance "
                    f"{nb.nearest_clean_distance[i]:.3g})",
                    float(nb.clean_share[i]),
                )
    disagreements: dict = {}
    if answers is not None:
        disagreements = expert_disagreements(*answers)
        for case, by in disagreements.items():
            said = ", ".join(f"{who} said {what}" for who, what in by.items())
            flag(case).add(EXPERT_DISAGREEMENT, f"experts disagree: {said}", 1.0)
    ordered = sorted(flags.values(), key=lambda f: (-f.suspicion, f.index))
    return NoiseReport(ordered, cl, nb, disagreements)
