"""Stopping signals for the loop: are batches still finding positives, is the ranking settling?"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
        Expected positives still in U: the sum of U's scores divided by the spies' recall proxy
        ``label_frequency`` (Elkan and Noto's c) when given, else the plain sum.
    suggest_stop : bool
    reason : str
    """

    confirmations_per_batch: list[int]
    confirmation_rate_per_batch: list[float]
    top_k_overlap: float | None
    estimated_positives_left: float | None
    suggest_stop: bool
    reason: str
    details: dict = field(default_factory=dict)


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
    unlabeled_mask: np.ndarray | None = None,
    label_frequency: float | None = None,
    top_k: int = 1000,
    min_confirmation_rate: float = 0.02,
    patience: int = 2,
    min_overlap: float = 0.9,
) -> StoppingSignals:
    """Signals and a suggested stop.

    Stop is suggested when the last ``patience`` batches each confirmed less than
    ``min_confirmation_rate`` of their cases and, where two score vectors are given, the top-k
    overlap is at least ``min_overlap``; or when fewer than one positive is expected left in U.

    Parameters
    ----------
    confirmations_per_batch : list of int
        Confirmed answers of each batch so far, oldest first.
    batch_sizes : list of int
        Answered cases of each batch (same length).
    previous_scores, current_scores : array-like of float, shape (n_cases,), optional
    unlabeled_mask : array-like of bool, shape (n_cases,), optional
        Cases still in U (for the estimate of positives left).
    label_frequency : float, optional
        Estimated P(labeled | positive), e.g. the spies' mean score.
    """
    if len(confirmations_per_batch) != len(batch_sizes):
        raise ValueError("one batch size per batch")
    rates = [c / b if b else 0.0 for c, b in zip(confirmations_per_batch, batch_sizes, strict=True)]
    overlap = None
    if previous_scores is not None and current_scores is not None:
        overlap = top_k_overlap(previous_scores, current_scores, top_k)
    left = None
    if current_scores is not None:
        mask = np.ones(len(current_scores), bool) if unlabeled_mask is None else unlabeled_mask
        total = float(np.asarray(current_scores)[np.asarray(mask, bool)].sum())
        left = total / label_frequency if label_frequency else total

    reasons = []
    dry = len(rates) >= patience and all(r < min_confirmation_rate for r in rates[-patience:])
    stable = overlap is None or overlap >= min_overlap
    if dry and stable:
        reasons.append(
            f"the last {patience} batches confirmed under {min_confirmation_rate:.0%} "
            "of their cases"
            + (f" and the top {top_k} is {overlap:.0%} unchanged" if overlap is not None else "")
        )
    if left is not None and left < 1.0:
        reasons.append(f"under one positive expected left in U ({left:.2f})")
    suggest = bool(reasons)
    if not suggest:
        parts = [f"last batch confirmed {rates[-1]:.0%}" if rates else "no batch answered yet"]
        if overlap is not None:
            parts.append(f"top-{top_k} overlap {overlap:.0%}")
        if left is not None:
            parts.append(f"about {left:.0f} positives expected left in U")
        reasons.append("keep going: " + ", ".join(parts))
    return StoppingSignals(
        confirmations_per_batch=list(confirmations_per_batch),
        confirmation_rate_per_batch=rates,
        top_k_overlap=overlap,
        estimated_positives_left=left,
        suggest_stop=suggest,
        reason="; ".join(reasons),
    )
