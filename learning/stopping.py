"""Stopping signals for the loop: are batches still finding positives, is the ranking settling,
how many positives are left in U (:mod:`learning.prior`)?"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from learning.prior import PositivesLeft


@dataclass
class StoppingSignals:
    """What the app shows beside "launch another iteration".

    Attributes
    ----------
    confirmations_per_batch : list of int
    confirmation_rate_per_batch : list of float
        Confirmed / answered, per batch.
    top_k_overlap : float or None
        Share of the current top-k cases that were also in the previous top-k (1 = unchanged).
    estimated_positives_left : float or None
        Expected positives still in U (:func:`learning.prior.positives_left`'s point), None when
        the caller gave no estimate.
    suggest_stop : bool
    reason : str
    details : dict
    positives_left_low, positives_left_high : float or None
        The estimate's interval (its ``level`` is in ``details["positives_left_level"]``).
    positives_left_method : str or None
    """

    confirmations_per_batch: list[int]
    confirmation_rate_per_batch: list[float]
    top_k_overlap: float | None
    estimated_positives_left: float | None
    suggest_stop: bool
    reason: str
    details: dict = field(default_factory=dict)
    positives_left_low: float | None = None
    positives_left_high: float | None = None
    positives_left_method: str | None = None


def top_k_overlap(previous_scores: np.ndarray, current_scores: np.ndarray, k: int) -> float:
    """Share of the current top-``k`` also in the previous top-``k``, in [0, 1].

    Parameters
    ----------
    previous_scores, current_scores : array-like of float, shape (n,)
        Scores of the same cases by two consecutive models.
    """
    previous_scores = np.asarray(previous_scores)
    current_scores = np.asarray(current_scores)
    k = min(k, len(current_scores))
    if k == 0:
        return 1.0
    prev = np.argpartition(-previous_scores, k - 1)[:k]
    cur = np.argpartition(-current_scores, k - 1)[:k]
    return len(np.intersect1d(prev, cur)) / k


def stopping_signals(
    confirmations_per_batch: list[int],
    batch_sizes: list[int],
    *,
    previous_scores: np.ndarray | None = None,
    current_scores: np.ndarray | None = None,
    positives_left: PositivesLeft | None = None,
    unlabeled_mask: np.ndarray | None = None,
    label_frequency: float | None = None,
    top_k: int = 1000,
    min_confirmation_rate: float = 0.02,
    patience: int = 2,
    min_overlap: float = 0.9,
    keep_going_rate: float = 0.05,
    max_positives_left: float = 1.0,
) -> StoppingSignals:
    """Signals and a suggested stop.

    Stop is never suggested while the last answered batch confirmed at least
    ``keep_going_rate`` of its cases: a batch that still finds positives outweighs any estimate.
    Otherwise it is suggested when the last ``patience`` batches each confirmed less than
    ``min_confirmation_rate`` of their cases and, where two score vectors are given, the top-k
    overlap is at least ``min_overlap``; or when even the high end of the interval of
    ``positives_left`` is under ``max_positives_left``.

    Parameters
    ----------
    confirmations_per_batch : list of int
        Confirmed answers of each batch so far, oldest first.
    batch_sizes : list of int
        Answered cases of each batch (same length).
    previous_scores, current_scores : array-like of float, shape (n_cases,), optional
    positives_left : PositivesLeft, optional
        :func:`learning.prior.positives_left` for the current U.
    unlabeled_mask, label_frequency : deprecated, ignored
        They fed the old estimate (U's scores summed, divided by ``label_frequency``), which was
        off by orders of magnitude; pass ``positives_left`` instead.
    """
    if unlabeled_mask is not None or label_frequency is not None:
        warnings.warn(
            "stopping_signals: unlabeled_mask and label_frequency are ignored; pass "
            "positives_left=learning.prior.positives_left(...) for the estimate of positives left",
            DeprecationWarning,
            stacklevel=2,
        )
    if len(confirmations_per_batch) != len(batch_sizes):
        raise ValueError("one batch size per batch")
    rates = [c / b if b else 0.0 for c, b in zip(confirmations_per_batch, batch_sizes, strict=True)]
    overlap = None
    if previous_scores is not None and current_scores is not None:
        overlap = top_k_overlap(previous_scores, current_scores, top_k)
    left = positives_left
    left_text = None
    if left is not None and not np.isnan(left.point):
        left_text = (
            f"about {left.point:.0f} positives expected left in U "
            f"({left.level:.0%} interval {left.low:.0f} to {left.high:.0f})"
        )

    reasons = []
    still_finding = bool(rates) and rates[-1] >= keep_going_rate
    dry = len(rates) >= patience and all(r < min_confirmation_rate for r in rates[-patience:])
    stable = overlap is None or overlap >= min_overlap
    if not still_finding:
        if dry and stable:
            reasons.append(
                f"the last {patience} batches confirmed under {min_confirmation_rate:.0%} "
                "of their cases"
                + (
                    f" and the top {top_k} is {overlap:.0%} unchanged"
                    if overlap is not None
                    else ""
                )
            )
        if left_text is not None and left.high < max_positives_left:
            reasons.append(f"under {max_positives_left:g} positive expected left in U: {left_text}")
    suggest = bool(reasons)
    if not suggest:
        parts = [f"last batch confirmed {rates[-1]:.0%}" if rates else "no batch answered yet"]
        if still_finding:
            parts[0] += f" (at least {keep_going_rate:.0%}: batches still find positives)"
        if overlap is not None:
            parts.append(f"top-{top_k} overlap {overlap:.0%}")
        if left_text is not None:
            parts.append(left_text)
        reasons.append("keep going: " + ", ".join(parts))
    details = {}
    if left is not None:
        details = {
            "positives_left_level": left.level,
            "positives_left_answered": left.n_answered,
            "positives_left_confirmed": left.n_confirmed,
        }
    has_left = left is not None and not np.isnan(left.point)
    return StoppingSignals(
        confirmations_per_batch=list(confirmations_per_batch),
        confirmation_rate_per_batch=rates,
        top_k_overlap=overlap,
        estimated_positives_left=float(left.point) if has_left else None,
        suggest_stop=suggest,
        reason="; ".join(reasons),
        details=details,
        positives_left_low=float(left.low) if has_left else None,
        positives_left_high=float(left.high) if has_left else None,
        positives_left_method=left.method if has_left else None,
    )
