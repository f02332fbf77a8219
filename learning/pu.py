"""Two-step PU learning with spies and EM rounds on LightGBM (seed 002, 3.5).

Step 1 (spies): a random ``spy_fraction`` of P is hidden in U. EM rounds fit LightGBM's
cross-entropy objective to soft targets: 1 for P, and for U (spies included) the previous round's
score (0 in the first round, which is therefore plain "P vs U").
Step 2 (reliable negatives): every U case scoring below the spies' ``spy_quantile`` becomes a
reliable negative N. EM rounds again: P (spies back in) fixed at 1, N at 0, the rest of U inherits
the previous round's score. The last round's booster is the model.

Bags (``n_bags``): with few labeled positives a single boosted model's ranking is dominated by
chance (which positives are spies, which split a handful of positives falls on); the fit runs the
two steps ``n_bags`` times, each with its own spies, U sample and seeds, on randomized trees (70%
of the rows and of the features per tree; under :data:`EXTRA_TREES_BELOW_POSITIVES` positives
random split thresholds as well), and averages their raw scores into one booster
(:func:`learning.booster_average.average_boosters`). ``"auto"`` bags below
:data:`BAG_BELOW_POSITIVES` positives and fits one plain model above (docs/benchmarks.md, "Few
positives: bags of randomized trees"); bags asked for above it share one plain model's trees and
U sample (:func:`shares_budget`).

Cost control: ``max_unlabeled`` trains every round on a fixed random sample of U (the sampled
cases weigh ``|U| / max_unlabeled`` so the class balance is kept), and ``n_estimators_em`` gives
the intermediate rounds fewer trees than the final one.
"""

from __future__ import annotations

import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from learning.baselines import auto_learning_rate, auto_min_child_samples
from learning.booster_average import average_boosters

# ``n_bags="auto"``: a fit with fewer labeled positives than BAG_BELOW_POSITIVES runs AUTO_BAGS
# bags on subsampled rows and features; under EXTRA_TREES_BELOW_POSITIVES the bags' trees also
# split at random thresholds (extra trees). The fewer the positives, the more a single model's
# ranking is chance, and the stronger the randomization that averages it out. Measured
# (docs/benchmarks.md, "Few positives: bags of randomized trees"): seeds only with 5-36 positives
# (five adbench sets, 3 seeds) bags with extra trees raised test PR-AUC by 0.03-0.24 (without
# extra trees satimage-2's 5 positives lost 0.15 of it); in the loop with 50-190 positives, extra
# trees cost mammography 0.09 while bags without them kept PageBlocks' +0.03. From 200 positives
# one plain model: bags still ranked better on fraud_handbook's 1,603 seeds (0.292 vs 0.278),
# but their 5x trees make scoring a million cases 5x as costly (issue #18's iteration budget).
# Bags asked for explicitly (``n_bags`` > 1) from SHARE_BUDGET_FROM_POSITIVES positives share one
# plain model's budget instead: 1/n of the trees at n times the learning rate (the plain model's
# whole step, learning rate x trees) on 1/n of its U sample, so the merged booster costs what one
# plain model costs. Not the default: in fraud_handbook's loop they raised active_pu's PR-AUC
# (0.373 -> 0.381) but made top-score batches so precise (644 frauds found in 1,000 answers
# against active_pu's 431) that the active batches' uncertain and random cases fell under 90%
# of top score's finds (docs/benchmarks.md, "Budget-sharing bags").
BAG_BELOW_POSITIVES = 200
EXTRA_TREES_BELOW_POSITIVES = 50
AUTO_BAGS = 5
SHARE_BUDGET_FROM_POSITIVES = 200
MIN_SHARED_BAG_TREES = 10
# The randomized trees of a bag (over a bag's LightGBM parameters, under ``lgbm_params``).
BAG_TREE_PARAMS = {"bagging_fraction": 0.7, "bagging_freq": 1, "feature_fraction": 0.7}


def auto_n_bags(n_positives: int) -> int:
    """Bags for a fit with ``n_positives`` labeled positives (``n_bags="auto"``)."""
    return AUTO_BAGS if n_positives < BAG_BELOW_POSITIVES else 1


def shares_budget(n_positives: int, n_bags: int) -> bool:
    """Whether ``n_bags`` bags split one plain model's trees and U sample among them (from
    :data:`SHARE_BUDGET_FROM_POSITIVES` positives) instead of each taking all of it."""
    return n_bags > 1 and n_positives >= SHARE_BUDGET_FROM_POSITIVES


def bag_tree_params(n_positives: int) -> dict:
    """LightGBM parameters of a bag's trees for a fit with ``n_positives`` labeled positives."""
    if n_positives < EXTRA_TREES_BELOW_POSITIVES:
        return {**BAG_TREE_PARAMS, "extra_trees": True}
    return dict(BAG_TREE_PARAMS)


def _rows(X, idx: np.ndarray):
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else X[idx]


def _check_pu_target(y, n_samples: int) -> np.ndarray:
    """``y`` (the PU label ``s``) as int8 of 0 (unlabeled) and 1 (positive), shape (n_samples,).

    Anything else is refused rather than coerced: a fractional score cut to 0 would silently turn
    a positive into an unlabeled case.
    """
    if y is None:
        raise ValueError(
            "TwoStepPU requires y to be passed, but the target y is None "
            "(y is s: 1 for labeled positives, 0 for unlabeled cases)"
        )
    y = column_or_1d(y, warn=True)
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} rows but y has {len(y)}")
    kind = type_of_target(y, input_name="y", raise_unknown=True)
    if kind == "multiclass":
        raise ValueError(
            "Only binary classification is supported: y must hold only 0 (unlabeled) and "
            f"1 (positive); got {len(np.unique(y))} distinct values"
        )
    if kind != "binary":
        raise ValueError(
            f"Unknown label type: {kind}. y must hold only 0 (unlabeled) and 1 (positive)"
        )
    values = np.unique(y)
    if not all(isinstance(v, (bool, np.bool_, int, float, np.number)) for v in values) or not (
        set(values.tolist()) <= {0, 1}
    ):
        raise ValueError(
            f"y must hold only 0 (unlabeled) and 1 (positive); got values {values.tolist()}"
        )
    return y.astype(np.int8)


class TwoStepPU(ClassifierMixin, BaseEstimator):
    """Two-step PU classifier (spies, then reliable negatives) with a LightGBM base learner.

    Parameters
    ----------
    spy_fraction : float
        Share of P hidden in U as spies in step 1.
    spy_quantile : float
        U cases scoring below this quantile of the spies' scores become reliable negatives.
    em_rounds_step1, em_rounds_step2 : int
        EM rounds of each step (each round is one LightGBM fit). ``em_rounds_step2=0`` returns the
        last step-1 model (then the spies are only used for ``spy_threshold_``).
    positive_weight : float
        Class weight multiplying every P case's sample weight in each fit (a counterweight to P
        being rare); expert-confirmed up-sampling comes on top through ``sample_weight``.
    n_estimators, num_leaves : int
        LightGBM parameters of the final round.
    learning_rate : float or "auto"
        ``"auto"``: 0.1 for fits up to 50,000 rows, 0.03 above
        (:func:`learning.baselines.auto_learning_rate`).
    min_child_samples : int or "auto"
        LightGBM's smallest leaf; ``"auto"`` scales it with the rows of each fit
        (:func:`learning.baselines.auto_min_child_samples`: 20 up to 20,000 rows, at most 100).
    n_estimators_em : int, optional
        Trees of the intermediate rounds; default ``n_estimators``.
    max_unlabeled : int, optional
        Train every round on at most this many U cases (a fixed random sample, reweighted).
    fix_reliable_negatives : bool
        If True, N keeps target 0 in every step-2 round; if False, N starts at 0 and then inherits
        scores like the rest of U.
    cross_fit_folds : int
        Intermediate rounds score the training cases out of fold (``cross_fit_folds`` models,
        each scoring the cases it did not see); 0 or 1 scores in sample. In-sample scores of a
        boosted model on U collapse toward the very targets it was fit on, so EM would stall
        and the spies would look like U; out-of-fold scores keep the EM step honest. The final
        round is always one fit on every training case.
    n_bags : int or "auto"
        Times the two steps run, each with its own spies, U sample and seeds on randomized trees
        (:func:`bag_tree_params`: 70% of rows and features per tree; random thresholds too
        under 50 positives); the final boosters' raw scores are averaged into one booster.
        ``"auto"``: :func:`auto_n_bags` of the number of labeled positives (5 below 200, else 1).
        1: one plain fit, as before bags existed. From 200 positives, bags share one plain
        model's budget (:func:`shares_budget`: each has 1/n of the trees at n times the learning
        rate, on 1/n of the U sample).
    lgbm_params : dict, optional
        Extra LightGBM parameters (they override the ones above and the bags' randomization).
    categorical_features : list of str or int, optional
        Columns LightGBM treats as categorical (integer codes).
    n_jobs : int, optional
        LightGBM threads; default LightGBM's.
    random_state : int, RandomState or None

    Attributes
    ----------
    booster_ : lightgbm.Booster
        The final model; ``booster_.save_model(path)`` writes LightGBM's text format.
    n_bags_ : int
        Bags the fit ran (see ``n_bags``).
    spy_threshold_ : float
        The spies' ``spy_quantile`` score after step 1 (the first bag's, where there are bags).
    spy_mask_ : ndarray of bool, shape (n_samples,)
        Which training cases were spies (in the first bag).
    reliable_negative_mask_ : ndarray of bool, shape (n_samples,)
        U cases (among those trained on, see ``max_unlabeled``) below the spy threshold (in the
        first bag).
    history_ : list of dict
        Per EM round: ``bag``, ``step``, ``round``, ``n_train``, ``n_trees``,
        ``target_mean_unlabeled``,
        ``score_q50``/``q90``/``q99`` (over U), ``spy_recall`` (spies above the median U score),
        ``seconds``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` is a DataFrame with string column names; ``predict_proba`` and the other
        methods then refuse a DataFrame whose columns differ in names or order.
    classes_ : ndarray, [0, 1]
    """

    def __init__(
        self,
        spy_fraction: float = 0.15,
        spy_quantile: float = 0.1,
        em_rounds_step1: int = 2,
        em_rounds_step2: int = 2,
        positive_weight: float = 5.0,
        n_estimators: int = 100,
        learning_rate: float | str = "auto",
        num_leaves: int = 31,
        min_child_samples: int | str = "auto",
        n_estimators_em: int | None = None,
        max_unlabeled: int | None = None,
        fix_reliable_negatives: bool = True,
        cross_fit_folds: int = 2,
        n_bags: int | str = "auto",
        lgbm_params: dict | None = None,
        categorical_features: list | None = None,
        n_jobs: int | None = None,
        random_state=None,
    ):
        self.spy_fraction = spy_fraction
        self.spy_quantile = spy_quantile
        self.em_rounds_step1 = em_rounds_step1
        self.em_rounds_step2 = em_rounds_step2
        self.positive_weight = positive_weight
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.n_estimators_em = n_estimators_em
        self.max_unlabeled = max_unlabeled
        self.fix_reliable_negatives = fix_reliable_negatives
        self.cross_fit_folds = cross_fit_folds
        self.n_bags = n_bags
        self.lgbm_params = lgbm_params
        self.categorical_features = categorical_features
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------------
    def _params(self, seed: int, n_rows: int = 0, randomized: dict | None = None) -> dict:
        params = {
            "objective": "cross_entropy",
            "learning_rate": (
                auto_learning_rate(n_rows)
                if self.learning_rate == "auto"
                else float(self.learning_rate)
            ),
            "num_leaves": self.num_leaves,
            "min_child_samples": (
                auto_min_child_samples(n_rows)
                if self.min_child_samples == "auto"
                else int(self.min_child_samples)
            ),
            "feature_pre_filter": False,
            "verbosity": -1,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
        }
        if self.n_jobs is not None:
            params["num_threads"] = self.n_jobs
        params.update(randomized or {})
        params.update(self.lgbm_params or {})
        return params

    def _fit_round(self, X, rows, targets, weights, n_trees, seed) -> lgb.Booster:
        randomized = self._randomized
        data = lgb.Dataset(
            _rows(X, rows),
            label=targets,
            weight=weights,
            categorical_feature=self.categorical_features or "auto",
            free_raw_data=True,
        )
        return lgb.train(self._params(seed, len(rows), randomized), data, num_boost_round=n_trees)

    def fit(self, X, y, sample_weight=None, progress=None, known_negative=None):
        """Fit on positives (``y == 1``) and unlabeled cases (``y == 0``).

        Parameters
        ----------
        X : array-like, sparse matrix (CSR/CSC) or DataFrame, shape (n_samples, n_features)
            NaN is LightGBM's missing value. A DataFrame is passed to LightGBM as is (its
            categorical dtypes kept) and its column names are recorded in ``feature_names_in_``.
        y : array-like of {0, 1}, shape (n_samples,)
            The PU label ``s``: 1 for P (seeds and confirmed), 0 for U. Exactly 0 and 1 (bool
            or numbers); anything else raises ``ValueError``.
        sample_weight : array-like of float, shape (n_samples,), optional
            Non-negative per-case weight, e.g. the up-sampling of expert-confirmed positives.
            Cases of weight 0 do not count; at least one positive and one unlabeled case must
            keep a positive weight.
        progress : callable, optional
            Called as ``progress(rounds_done, rounds_total)`` after every EM round (the caller's
            progress bar; an exception it raises stops the fit).
        known_negative : array-like of bool, shape (n_samples,), optional
            Unlabeled cases (``y == 0``) known not to be positives, e.g. an expert's "not
            confirmed" answers: always trained on (never left out by ``max_unlabeled``), their
            target fixed at 0 in every round of both steps (like the reliable negatives), with the
            weight of a sampled U case times their ``sample_weight``. A case of ``y == 1`` marked
            here raises ``ValueError``.

        Returns
        -------
        self
        """
        X = self._validate_X(X, reset=True)
        s = _check_pu_target(y, X.shape[0])
        weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        if not weight.any():
            raise ValueError("sample_weight is zero everywhere: no case to fit on")
        if not (weight[s == 1] > 0).any() or not (weight[s == 0] > 0).any():
            raise ValueError(
                "y holds one class only (counting cases of positive weight): TwoStepPU needs "
                "at least one positive (1) and one unlabeled (0) case"
            )
        negative = self._check_known_negative(known_negative, s)
        rng = check_random_state(self.random_state)
        self.classes_ = np.array([0, 1])
        self.history_ = []
        if self.em_rounds_step1 + self.em_rounds_step2 < 1:
            raise ValueError("need at least one EM round")
        n_positives = int((s == 1).sum())
        n_bags = self.n_bags_for(n_positives)
        self.n_bags_ = n_bags
        self._randomized = bag_tree_params(n_positives) if n_bags > 1 else None
        self._share = n_bags if shares_budget(n_positives, n_bags) else 1
        if self._share > 1:
            self._randomized = {
                **self._randomized,
                "learning_rate": self._shared_learning_rate(s, negative),
            }
        boosters = []
        for bag in range(n_bags):
            self._bag = bag
            boosters.append(
                self._fit_bag(X, s, weight, negative, rng, progress, keep_masks=bag == 0)
            )
        self.booster_ = average_boosters(boosters)
        del self._bag, self._randomized, self._share
        return self

    def _shared_learning_rate(self, s: np.ndarray, negative: np.ndarray) -> float:
        """A budget-sharing bag's learning rate: the plain fit's, times the bags, so that each
        bag's 1/n trees take the plain model's whole step (learning rate x trees)."""
        if self.learning_rate != "auto":
            return float(self.learning_rate) * self._share
        n_unlabeled = int(((s == 0) & ~negative).sum())
        if self.max_unlabeled is not None:
            n_unlabeled = min(n_unlabeled, self.max_unlabeled)
        n_rows = int((s == 1).sum()) + n_unlabeled + int(negative.sum())
        return auto_learning_rate(n_rows) * self._share

    def n_bags_for(self, n_positives: int) -> int:
        """Bags a fit with ``n_positives`` labeled positives runs (``n_bags``, or ``"auto"``'s
        choice); raises ``ValueError`` for an invalid ``n_bags``."""
        if self.n_bags == "auto":
            return auto_n_bags(n_positives)
        if (
            isinstance(self.n_bags, str | bool)
            or self.n_bags != int(self.n_bags)
            or self.n_bags < 1
        ):
            raise ValueError(f"n_bags must be 'auto' or a whole number >= 1, got {self.n_bags!r}")
        return int(self.n_bags)

    def _fit_bag(self, X, s, weight, negative, rng, progress, *, keep_masks: bool) -> lgb.Booster:
        """The two steps once, drawing spies, the U sample and seeds from ``rng``; returns the
        final booster (and, with ``keep_masks``, sets the spies and reliable negatives)."""
        total_rounds = (self.em_rounds_step1 + self.em_rounds_step2) * self.n_bags_
        positives = np.flatnonzero(s == 1)
        unlabeled = np.flatnonzero((s == 0) & ~negative)
        known = np.flatnonzero(negative & (weight > 0))
        n_spies = int(round(self.spy_fraction * len(positives)))
        n_spies = min(n_spies, len(positives) - 1) if len(positives) > 1 else 0
        spies = rng.choice(positives, size=n_spies, replace=False) if n_spies else positives[:0]
        spy_mask = np.zeros(len(s), dtype=bool)
        spy_mask[spies] = True

        u_weight = 1.0
        max_unlabeled = self.max_unlabeled
        if self._share > 1:  # this bag's share of the plain model's U sample
            max_unlabeled = -(-(max_unlabeled or len(unlabeled)) // self._share)
        if max_unlabeled is not None and len(unlabeled) > max_unlabeled:
            u_weight = len(unlabeled) / max_unlabeled
            unlabeled = np.sort(rng.choice(unlabeled, size=max_unlabeled, replace=False))
        rows = np.concatenate([positives, unlabeled, known])
        train_weight = weight[rows] * np.where(s[rows] == 1, self.positive_weight, u_weight)
        neg = negative[rows]
        n_final = self._bag_trees(self.n_estimators)
        n_em = self._bag_trees(self.n_estimators_em or self.n_estimators)
        rounds = self.em_rounds_step1 + self.em_rounds_step2

        # Step 1: spies join U; P at 1, U at the previous score (0 first).
        hidden = spy_mask[rows] | ((s[rows] == 0) & ~neg)
        targets = np.where(hidden | neg, 0.0, 1.0)
        scores = None
        for r in range(self.em_rounds_step1):
            last = r == rounds - 1
            scores = self._em_round(
                X,
                rows,
                targets,
                train_weight,
                hidden,
                spy_mask,
                n_trees=n_final if last else n_em,
                step=1,
                round_=r,
                seed=rng.randint(2**31 - 100),
                final=last,
            )
            targets = np.where(hidden, scores, 1.0)
            targets[neg] = 0.0
            if progress is not None:
                progress(len(self.history_), total_rounds)

        is_u = (s[rows] == 0) & ~neg
        if scores is None:  # no step-1 round: every U case inherits 0
            scores = np.zeros(len(rows))
        spy_scores = scores[spy_mask[rows]]
        spy_threshold = (
            float(np.quantile(spy_scores, self.spy_quantile)) if len(spy_scores) else 0.0
        )
        reliable = is_u & (scores < spy_threshold)
        if keep_masks:
            self.spy_threshold_ = spy_threshold
            self.spy_mask_ = spy_mask
            self.reliable_negative_mask_ = np.zeros(len(s), dtype=bool)
            self.reliable_negative_mask_[rows[reliable]] = True

        # Step 2: spies back in P (1), reliable negatives at 0, the rest of U inherits.
        targets = np.where(is_u, scores, 1.0)
        targets[reliable | neg] = 0.0
        for r in range(self.em_rounds_step2):
            last = r == self.em_rounds_step2 - 1
            scores = self._em_round(
                X,
                rows,
                targets,
                train_weight,
                is_u,
                spy_mask,
                n_trees=n_final if last else n_em,
                step=2,
                round_=r,
                seed=rng.randint(2**31 - 100),
                final=last,
            )
            targets = np.where(is_u, scores, 1.0)
            targets[neg] = 0.0
            if self.fix_reliable_negatives:
                targets[reliable] = 0.0
            if progress is not None:
                progress(len(self.history_), total_rounds)
        return self.booster_

    def _bag_trees(self, n_trees: int) -> int:
        """A bag's share of ``n_trees`` (all of them unless the bags share the budget)."""
        if self._share == 1:
            return n_trees
        return max(MIN_SHARED_BAG_TREES, -(-n_trees // self._share))

    def _em_round(
        self, X, rows, targets, weight, hidden, spy_mask, *, n_trees, step, round_, seed, final
    ) -> np.ndarray:
        t0 = time.perf_counter()
        folds = self.cross_fit_folds if not final else 0
        if folds and folds >= 2:
            fold_of = np.random.RandomState(seed).randint(folds, size=len(rows))
            scores = np.empty(len(rows))
            for f in range(folds):
                out = fold_of == f
                booster = self._fit_round(
                    X, rows[~out], targets[~out], weight[~out], n_trees, seed + f
                )
                scores[out] = booster.predict(_rows(X, rows[out]))
        else:
            booster = self._fit_round(X, rows, targets, weight, n_trees, seed)
            scores = booster.predict(_rows(X, rows))
        self.booster_ = booster
        u_scores = scores[hidden & ~spy_mask[rows]]
        spies = scores[spy_mask[rows]]
        median_u = float(np.median(u_scores)) if len(u_scores) else 0.0
        self.history_.append(
            {
                "bag": self._bag,
                "step": step,
                "round": round_,
                "n_train": int(len(rows)),
                "n_trees": int(n_trees),
                "target_mean_unlabeled": float(targets[hidden].mean()) if hidden.any() else 0.0,
                "score_q50": median_u,
                "score_q90": float(np.quantile(u_scores, 0.9)) if len(u_scores) else 0.0,
                "score_q99": float(np.quantile(u_scores, 0.99)) if len(u_scores) else 0.0,
                "spy_recall": float((spies > median_u).mean()) if len(spies) else float("nan"),
                "out_of_fold": bool(folds and folds >= 2),
                "seconds": time.perf_counter() - t0,
            }
        )
        return scores

    # -- validation ------------------------------------------------------------------------------
    @staticmethod
    def _check_known_negative(known_negative, s: np.ndarray) -> np.ndarray:
        if known_negative is None:
            return np.zeros(len(s), dtype=bool)
        mask = column_or_1d(known_negative)
        if len(mask) != len(s):
            raise ValueError(f"known_negative has {len(mask)} rows, y has {len(s)}")
        if mask.dtype != bool and not set(np.unique(mask).tolist()) <= {0, 1}:
            raise ValueError("known_negative must be a boolean mask (or 0/1)")
        mask = mask.astype(bool)
        if (mask & (s == 1)).any():
            raise ValueError(
                f"known_negative marks {int((mask & (s == 1)).sum())} positive(s) (y == 1): a "
                "case is either a known positive or a known negative"
            )
        return mask

    def _validate_X(self, X, *, reset: bool):
        """``X`` checked, and at fit (``reset``) its width and column names recorded.

        A DataFrame stays a DataFrame (LightGBM reads its categorical dtypes); its column names
        and their order must match those of the fit (a plain array of the right width is
        accepted, with scikit-learn's warning). Anything else becomes a 2-D numeric ndarray or a
        CSR/CSC matrix. NaN and inf pass through (LightGBM's missing and extreme values).
        """
        if not isinstance(X, pd.DataFrame):
            return validate_data(
                self,
                X,
                reset=reset,
                # LightGBM trains on CSR or CSC but predicts on CSR (it converts anything else).
                accept_sparse=("csr", "csc") if reset else "csr",
                dtype="numeric",
                ensure_all_finite=False,
            )
        validate_data(self, X, reset=reset, skip_check_array=True)
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(
                f"Found array with {X.shape[0]} sample(s) and {X.shape[1]} feature(s) "
                "while a minimum of 1 is required by TwoStepPU."
            )
        complex_columns = [str(c) for c, t in X.dtypes.items() if pd.api.types.is_complex_dtype(t)]
        if complex_columns:
            raise ValueError(f"Complex data not supported: columns {complex_columns}")
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # y is s: 0 unlabeled, 1 positive
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        return tags

    # -- prediction ------------------------------------------------------------------------------
    def _check_X(self, X):
        check_is_fitted(self, "booster_")
        return self._validate_X(X, reset=False)

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of [unlabeled/negative, positive], shape (n_samples, 2)."""
        X = self._check_X(X)
        p = self.booster_.predict(X)
        return np.column_stack([1.0 - p, p])

    def decision_function(self, X) -> np.ndarray:
        """Raw score (log-odds), shape (n_samples,); ranks like ``predict_proba[:, 1]``."""
        X = self._check_X(X)
        return self.booster_.predict(X, raw_score=True)

    def predict(self, X) -> np.ndarray:
        """1 where the positive probability is at least 0.5, shape (n_samples,)."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X) -> np.ndarray:
        """Per-feature SHAP contributions to the raw score, shape (n_samples, n_features + 1).

        The last column is the expected value (bias); each row sums to ``decision_function``.
        """
        X = self._check_X(X)
        return self.booster_.predict(X, pred_contrib=True)
