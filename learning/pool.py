"""Precision-first pool rules: what each expert answer does to a case's state.

A case is in one of six states. Seed positives are ``P``; everything else starts in ``U``. A case
put in an expert's batch is ``SHOWN``. The expert answers ``CONFIRMED`` (joins P, up-sampled),
``NOT_CONFIRMED`` (trains as U again, as if never labeled, but is never offered again) or
``SKIPPED`` (trains as U and may be offered again).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

P = "P"
U = "U"
SHOWN = "shown"
CONFIRMED = "confirmed"
NOT_CONFIRMED = "not_confirmed"
SKIPPED = "skipped"

STATES = (P, U, SHOWN, CONFIRMED, NOT_CONFIRMED, SKIPPED)
ANSWERS = (CONFIRMED, NOT_CONFIRMED, SKIPPED)
STATE_DTYPE = "<U13"


def initial_states(seed_positive: np.ndarray) -> np.ndarray:
    """States of a fresh pool: ``P`` where ``seed_positive``, else ``U``.

    Parameters
    ----------
    seed_positive : array-like of bool, shape (n_cases,)

    Returns
    -------
    ndarray of str, shape (n_cases,)
    """
    return np.where(np.asarray(seed_positive, dtype=bool), P, U).astype(STATE_DTYPE)


def _check_states(states: np.ndarray) -> np.ndarray:
    # Six comparisons, not np.unique: sorting 11.7M strings took 5 s, and every stage checks.
    states = np.asarray(states).astype(STATE_DTYPE, copy=False)
    known = np.zeros(states.shape, dtype=bool)
    for state in STATES:
        known |= states == state
    if not known.all():
        raise ValueError(f"unknown pool states: {sorted(set(np.unique(states[~known]).tolist()))}")
    return states


def positive_mask(states: np.ndarray) -> np.ndarray:
    """Known positives: seeds and confirmed cases, shape (n_cases,) bool."""
    states = _check_states(states)
    return (states == P) | (states == CONFIRMED)


def training_targets(
    states: np.ndarray, *, confirmed_weight: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """PU targets and sample weights for the next model.

    Parameters
    ----------
    states : array-like of str, shape (n_cases,)
    confirmed_weight : float
        Up-sampling weight of expert-confirmed positives (seed positives weigh 1).

    Returns
    -------
    s : ndarray of int8, shape (n_cases,)
        1 for P and confirmed, 0 for everything else (U, shown, not confirmed, skipped).
    sample_weight : ndarray of float64, shape (n_cases,)
    """
    states = _check_states(states)
    s = positive_mask(states).astype(np.int8)
    weight = np.where(states == CONFIRMED, float(confirmed_weight), 1.0)
    return s, weight


def offerable_mask(states: np.ndarray) -> np.ndarray:
    """Cases that may go into a new batch: ``U`` and ``SKIPPED``, shape (n_cases,) bool."""
    states = _check_states(states)
    return (states == U) | (states == SKIPPED)


def mark_shown(states: np.ndarray, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """A copy of ``states`` with ``indices`` set to ``SHOWN``; only offerable cases may be shown."""
    states = _check_states(states).copy()
    indices = np.asarray(indices, dtype=np.intp)
    if not offerable_mask(states)[indices].all():
        raise ValueError("only U or skipped cases can be shown")
    states[indices] = SHOWN
    return states


def apply_answers(
    states: np.ndarray,
    indices: Sequence[int] | np.ndarray,
    answers: Sequence[str] | np.ndarray,
) -> np.ndarray:
    """A copy of ``states`` with the expert's answers applied.

    Parameters
    ----------
    states : array-like of str, shape (n_cases,)
    indices : array-like of int, shape (n_answers,)
        Cases answered; each must be ``SHOWN``, ``U`` or ``SKIPPED`` (a case already confirmed,
        not confirmed or a seed cannot be answered again).
    answers : array-like of str, shape (n_answers,)
        Each one of ``CONFIRMED``, ``NOT_CONFIRMED``, ``SKIPPED``.

    Returns
    -------
    ndarray of str, shape (n_cases,)
    """
    states = _check_states(states).copy()
    indices = np.asarray(indices, dtype=np.intp)
    answers = np.asarray(answers).astype(STATE_DTYPE)
    if indices.shape != answers.shape:
        raise ValueError("indices and answers must align")
    bad = set(np.unique(answers)) - set(ANSWERS)
    if bad:
        raise ValueError(f"unknown answers: {sorted(bad)}")
    if len(np.unique(indices)) != len(indices):
        raise ValueError("a case can be answered once per batch")
    answerable = (states == SHOWN) | (states == U) | (states == SKIPPED)
    if not answerable[indices].all():
        raise ValueError("answers given for cases that are P, confirmed or not confirmed")
    states[indices] = answers
    return states
