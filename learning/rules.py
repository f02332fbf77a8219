"""Readable rules that reproduce a model's top scores, for a fraud system's decision engine.

A shallow decision tree is fitted on the hand features (never embeddings or label-derived
columns) to tell the model's top ``top_share`` of cases from the rest; each leaf where most cases
are top cases becomes one rule, the conjunction of the conditions on its path, e.g.
``amount > 220.5 and hour in [0..5]``. Conditions on one column are merged into one interval or
one set. Categorical columns are split on their values, never on codes: their categories are
ordered by the share of top cases (as LightGBM orders them), so a split picks the set of values
with the highest share, and the rule names the values.

The rule's text is its meaning: thresholds are rounded to 4 significant digits and the rounded
value is the one :meth:`Rule.mask` applies. Missing numeric values are matched as the column's
median in the fitted data (the value the tree saw for them); a value of a categorical column
that the fit never saw matches no set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

_Path = list[tuple[int, float, bool]]


def _round_sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _plain(value: Any) -> Any:
    """A NumPy scalar as a plain Python value (for JSON and for text)."""
    return value.item() if isinstance(value, np.generic) else value


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Sorted integers as runs of consecutive ones: [0, 1, 2, 5] -> [(0, 2), (5, 5)]."""
    runs: list[tuple[int, int]] = []
    for v in sorted(values):
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _set_text(values: list[Any]) -> str:
    """``[0..5, 22..23]`` for integers, ``{a, b}`` for anything else."""
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        parts = [str(a) if a == b else f"{a}..{b}" for a, b in _runs([int(v) for v in values])]
        return f"[{', '.join(parts)}]"
    return "{" + ", ".join(str(v) for v in sorted(values, key=str)) + "}"


@dataclass
class Condition:
    """One column's condition: ``low < x <= high`` (numeric) or ``x in values`` (categorical).

    Attributes
    ----------
    column : str
    low, high : float or None
        Numeric bounds (None: unbounded).
    values : list or None
        The allowed values of a categorical column; ``all_values`` are the column's known values
        (the text names the shorter of the set and its complement).
    """

    column: str
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None
    all_values: list[Any] = field(default_factory=list)

    @property
    def is_categorical(self) -> bool:
        return self.values is not None

    def text(self) -> str:
        col = self.column
        if self.is_categorical:
            values = list(self.values or [])
            others = [v for v in self.all_values if v not in set(values)]
            if len(values) == 1:
                return f"{col} = {values[0]}"
            if others and len(others) < len(values):
                if len(others) == 1:
                    return f"{col} != {others[0]}"
                return f"{col} not in {_set_text(others)}"
            return f"{col} in {_set_text(values)}"
        if self.low is not None and self.high is not None:
            return f"{self.low:g} < {col} <= {self.high:g}"
        if self.low is not None:
            return f"{col} > {self.low:g}"
        return f"{col} <= {self.high:g}"

    def mask(self, column: pd.Series, fill: float | None = None) -> np.ndarray:
        """Which rows meet the condition, shape (n_rows,) bool."""
        if self.is_categorical:
            return column.isin(self.values or []).to_numpy()
        x = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        if fill is not None:
            x = np.where(np.isnan(x), fill, x)
        out = np.ones(len(x), dtype=bool)
        if self.low is not None:
            out &= x > self.low
        if self.high is not None:
            out &= x <= self.high
        return out

    def to_dict(self) -> dict[str, Any]:
        if self.is_categorical:
            return {"column": self.column, "values": [_plain(v) for v in self.values or []]}
        return {"column": self.column, "low": self.low, "high": self.high}


@dataclass
class Rule:
    """A conjunction of conditions, with what the fit measured.

    Attributes
    ----------
    conditions : list of Condition
    fit_coverage : int
        Cases of the fitted data the rule matches.
    fidelity : float
        Share of those that are among the model's top cases (how well the rule reproduces it).
    """

    conditions: list[Condition]
    fit_coverage: int
    fidelity: float
    fills: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def text(self) -> str:
        return " and ".join(c.text() for c in self.conditions) or "every case"

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` (raw case columns) the rule matches, shape (n_rows,) bool."""
        out = np.ones(len(frame), dtype=bool)
        for cond in self.conditions:
            out &= cond.mask(frame[cond.column], self.fills.get(cond.column))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.text,
            "conditions": [c.to_dict() for c in self.conditions],
            "fit_coverage": self.fit_coverage,
            "fidelity": round(self.fidelity, 4),
        }


class RuleExtractor:
    """Fit a shallow tree that tells a model's top cases from the rest; read its leaves as rules.

    Parameters
    ----------
    numeric_columns, categorical_columns : list of str
        The hand features the rules may use.
    top_share : float
        The target: a case is a top case when its score is among the highest ``top_share`` of
        all scores. Cases tied at the cut are all in or all out, whichever keeps the number of
        top cases nearer ``top_share`` (a model that gives most cases one score has few top
        cases).
    max_depth : int
        Depth of the tree: a rule has at most this many conditions.
    max_rules : int
    min_fidelity : float
        A leaf becomes a rule when at least this share of its cases are top cases; when no leaf
        reaches it, the single leaf with the highest share does (so there is always one rule).
    min_leaf_share, min_leaf_cases : float, int
        Smallest leaf: ``min_leaf_share`` of the top cases, at least ``min_leaf_cases`` cases
        (keeps rules from describing a handful).
    random_state : int

    Attributes
    ----------
    rules_ : list of Rule
        Best first (by fidelity, then coverage).
    threshold_ : float
        The lowest score of a top case.
    fills_ : dict of str to float
        The value missing numeric values are matched as (the column's median).
    """

    def __init__(
        self,
        numeric_columns: list[str],
        categorical_columns: list[str],
        *,
        top_share: float = 0.01,
        max_depth: int = 3,
        max_rules: int = 10,
        min_fidelity: float = 0.5,
        min_leaf_share: float = 0.05,
        min_leaf_cases: int = 5,
        random_state: int = 0,
    ):
        self.numeric_columns = numeric_columns
        self.categorical_columns = categorical_columns
        self.top_share = top_share
        self.max_depth = max_depth
        self.max_rules = max_rules
        self.min_fidelity = min_fidelity
        self.min_leaf_share = min_leaf_share
        self.min_leaf_cases = min_leaf_cases
        self.random_state = random_state

    def fit(self, frame: pd.DataFrame, scores: np.ndarray) -> RuleExtractor:
        """Fit on raw cases and the model's scores.

        Parameters
        ----------
        frame : DataFrame, shape (n_cases, n_columns)
            Raw case columns (categorical values as they are, not codes).
        scores : ndarray of float, shape (n_cases,)
        """
        if not 0 < self.top_share < 1:
            raise ValueError("top_share must lie strictly between 0 and 1")
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) != len(frame):
            raise ValueError(f"{len(scores)} scores for {len(frame)} cases")
        columns = [*self.numeric_columns, *self.categorical_columns]
        if not columns:
            raise ValueError("no hand feature to write rules with")
        k = max(1, int(np.ceil(self.top_share * len(scores))))
        cut = float(np.partition(scores, len(scores) - k)[len(scores) - k])
        target = scores >= cut
        above = scores > cut
        if above.any() and abs(above.sum() - k) < abs(target.sum() - k):
            target = above  # ties at the cut: the side that keeps the top nearer k cases
        self.threshold_ = float(scores[target].min())
        X, self.fills_, self._orders = self._matrix(frame, target)
        min_leaf = max(1, self.min_leaf_cases, int(self.min_leaf_share * target.sum()))
        tree = DecisionTreeClassifier(
            max_depth=self.max_depth,
            min_samples_leaf=min_leaf,
            class_weight="balanced",
            random_state=self.random_state,
        ).fit(X, target)
        self.tree_ = tree
        leaf_share = self._leaf_shares(tree, X, target)
        kept = {leaf: share >= self.min_fidelity for leaf, share in leaf_share.items()}
        paths = self._kept_paths(tree, kept)
        if not paths:  # no leaf reaches min_fidelity: the best one alone
            paths = self._kept_paths(tree, {max(leaf_share, key=leaf_share.get): True})
        rules = [self._path_rule(path, frame) for path in paths]
        rules = [r for r in rules if r.fit_coverage > 0]
        for rule in rules:
            rule.fidelity = float(target[rule.mask(frame)].mean())
        rules.sort(key=lambda r: (-r.fidelity, -r.fit_coverage))
        self.rules_ = rules[: self.max_rules]
        return self

    @staticmethod
    def _leaf_shares(
        tree: DecisionTreeClassifier, X: np.ndarray, target: np.ndarray
    ) -> dict[int, float]:
        """Share of top cases in each leaf (unweighted), as a dict leaf -> share."""
        leaves = tree.apply(X)
        counts = pd.Series(target.astype(float)).groupby(leaves).mean()
        return {int(leaf): float(share) for leaf, share in counts.items()}

    # -- the tree's input: numeric columns, categories ordered by their share of top cases ----
    def _matrix(self, frame: pd.DataFrame, target: np.ndarray):
        parts, fills, orders = [], {}, {}
        for col in self.numeric_columns:
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
            fill = float(np.nanmedian(x)) if np.isfinite(x).any() else 0.0
            fills[col] = fill
            parts.append(np.where(np.isnan(x), fill, x))
        for col in self.categorical_columns:
            values = frame[col]
            share = pd.Series(target).groupby(values.to_numpy(), dropna=True).mean()
            order = list(share.sort_values(kind="stable").index)  # lowest share first
            orders[col] = [_plain(v) for v in order]
            codes = pd.Categorical(values, categories=order).codes.astype(np.float64)
            parts.append(np.where(codes < 0, -1.0, codes))  # missing: below every value
        return np.column_stack(parts), fills, orders

    @staticmethod
    def _kept_paths(tree: DecisionTreeClassifier, kept: dict[int, bool]) -> list[_Path]:
        """The paths of the highest nodes whose every leaf is kept (siblings merge into one)."""
        t = tree.tree_
        paths: list[_Path] = []

        def all_kept(node: int) -> bool:
            if t.children_left[node] == -1:
                return bool(kept.get(node, False))
            return all_kept(int(t.children_left[node])) and all_kept(int(t.children_right[node]))

        def walk(node: int, path: _Path) -> None:
            if all_kept(node):
                paths.append(path)
                return
            if t.children_left[node] == -1:
                return
            f, thr = int(t.feature[node]), float(t.threshold[node])
            walk(int(t.children_left[node]), [*path, (f, thr, True)])
            walk(int(t.children_right[node]), [*path, (f, thr, False)])

        walk(0, [])
        return paths

    def _path_rule(self, path: _Path, frame: pd.DataFrame) -> Rule:
        n_numeric = len(self.numeric_columns)
        bounds: dict[str, list[float | None]] = {}
        code_ranges: dict[str, list[float]] = {}
        for f, thr, left in path:
            if f < n_numeric:
                col = self.numeric_columns[f]
                low, high = bounds.setdefault(col, [None, None])
                thr = _round_sig(thr)
                if left:
                    bounds[col][1] = thr if high is None else min(high, thr)
                else:
                    bounds[col][0] = thr if low is None else max(low, thr)
            else:
                col = self.categorical_columns[f - n_numeric]
                lo, hi = code_ranges.setdefault(col, [-np.inf, np.inf])
                code_ranges[col] = [lo, min(hi, thr)] if left else [max(lo, thr), hi]
        conditions = [Condition(col, low=lo, high=hi) for col, (lo, hi) in bounds.items()]
        for col, (lo, hi) in code_ranges.items():
            order = self._orders[col]
            values = [v for code, v in enumerate(order) if lo < code <= hi]
            conditions.append(Condition(col, values=values, all_values=order))
        rule = Rule(conditions, 0, 0.0, fills=self.fills_)
        rule.fit_coverage = int(rule.mask(frame).sum())
        return rule


def precision_at_coverage(scores: np.ndarray, positive: np.ndarray, known: np.ndarray, n: int):
    """The model's own precision among its ``n`` highest-scored cases.

    Parameters
    ----------
    scores : ndarray of float, shape (n_cases,)
    positive, known : ndarray of bool, shape (n_cases,)
        Which cases are positive, and which have a known answer (precision counts only those).
    n : int

    Returns
    -------
    (precision or None, n_known, n_positive)
    """
    n = int(min(max(n, 0), len(scores)))
    top = np.argsort(-np.asarray(scores), kind="stable")[:n]
    n_known = int(known[top].sum())
    n_pos = int((positive & known)[top].sum())
    return (n_pos / n_known if n_known else None), n_known, n_pos


def rules_report(
    rules: list[Rule],
    frame: pd.DataFrame,
    scores: np.ndarray,
    *,
    positive: np.ndarray,
    known: np.ndarray,
) -> list[dict[str, Any]]:
    """Each rule's coverage and precision beside the model's own precision at that coverage.

    Parameters
    ----------
    rules : list of Rule
    frame : DataFrame, shape (n_cases, n_columns)
        The cases to measure on (raw columns).
    scores : ndarray of float, shape (n_cases,)
    positive, known : ndarray of bool, shape (n_cases,)
        Precision is ``positive & known`` over ``known`` among the matched cases (``n`` is how
        many known cases that was). With ground truth, ``known`` is all True.

    Returns
    -------
    list of dict
        ``rule``, ``coverage`` (cases matched), ``precision`` (None when no matched case is
        known), ``n_known``, ``n_positive``, ``model_precision``/``model_n_known``/
        ``model_n_positive`` (the model's ``coverage`` highest-scored cases), ``conditions``,
        ``fit_coverage``, ``fidelity``, and ``cumulative``: the same for the union of this rule
        and the ones before it (the list used as one rule set, down to this rule).
    """
    positive = np.asarray(positive, dtype=bool)
    known = np.asarray(known, dtype=bool)
    out = []
    union = np.zeros(len(frame), dtype=bool)
    for rule in rules:
        matched = rule.mask(frame)
        union |= matched
        row = {**rule.to_dict(), **_precision_beside_model(matched, scores, positive, known)}
        cumulative = _precision_beside_model(union, scores, positive, known)
        row["cumulative"] = {k: cumulative[k] for k in _CUMULATIVE_KEYS}
        out.append(row)
    return out


_CUMULATIVE_KEYS = ("coverage", "precision", "n_known", "model_precision", "model_n_known")


def _precision_beside_model(
    matched: np.ndarray, scores: np.ndarray, positive: np.ndarray, known: np.ndarray
) -> dict[str, Any]:
    coverage = int(matched.sum())
    n_known = int((matched & known).sum())
    n_pos = int((matched & known & positive).sum())
    model_p, model_known, model_pos = precision_at_coverage(scores, positive, known, coverage)
    return {
        "coverage": coverage,
        "precision": round(n_pos / n_known, 4) if n_known else None,
        "n_known": n_known,
        "n_positive": n_pos,
        "model_precision": None if model_p is None else round(model_p, 4),
        "model_n_known": model_known,
        "model_n_positive": model_pos,
    }
