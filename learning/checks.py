"""Hidden checks of expert recall: known positives mixed into a batch, and what they measure.

A share of each batch can be seed positives that the expert cannot tell apart from the other
cases. Under PU semantics a "not confirmed" is not a negative, so an expert's precision cannot be
measured from their answers; their *recall* on cases known to be positive can: the share of
hidden checks they confirmed. These functions choose the checks, place them in the batch and put
an interval on the recall; they know nothing of the app.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from learning.sampling import (
    BatchSelection,
    top_score_reason,
    uncertain_reason,
    uncertainty_scores,
)

#: The largest share of a batch that may be hidden checks (beyond it the batch stops being
#: mostly new cases, and experts see too many seeds to be fooled).
MAX_SHARE = 0.2
#: z of a two-sided 95% interval.
Z_95 = 1.959963984540054


def check_count(share: float, batch_size: int) -> int:
    """How many checks join a batch of ``batch_size`` new cases: ``round(share * batch_size)``."""
    if not 0.0 <= share <= MAX_SHARE:
        raise ValueError(f"the share of hidden checks must be between 0 and {MAX_SHARE}")
    return int(round(share * max(int(batch_size), 0)))


def choose_checks(
    candidates: np.ndarray, times_checked: np.ndarray, n: int, *, random_state=None
) -> np.ndarray:
    """Pick ``n`` of ``candidates`` at random, those checked least often first.

    Parameters
    ----------
    candidates : array-like of int, shape (n_candidates,)
        Ids (case rows or keys) of the known positives that may be checks.
    times_checked : array-like of int, shape (n_candidates,)
        How often each was a check before; never-checked ones are taken before any checked one.
    n : int
    random_state : int, RandomState or None

    Returns
    -------
    ndarray of int, shape (min(n, n_candidates),)
        The chosen ids, in random order.
    """
    candidates = np.asarray(candidates)
    times = np.asarray(times_checked, dtype=np.int64)
    if candidates.shape != times.shape:
        raise ValueError("candidates and times_checked must have the same length")
    n = min(max(int(n), 0), len(candidates))
    rng = check_random_state(random_state)
    # Sort by (times checked, a random key): random within each level of use.
    order = np.lexsort((rng.random_sample(len(candidates)), times))
    chosen = candidates[order[:n]]
    return chosen[rng.permutation(len(chosen))]


def check_positions(n_regular: int, n_checks: int, *, random_state=None) -> np.ndarray:
    """Where the checks go in a batch of ``n_regular + n_checks``: sorted positions, shape
    (n_checks,), drawn uniformly so that a check sits anywhere, the first and last places
    included."""
    total = max(int(n_regular), 0) + max(int(n_checks), 0)
    rng = check_random_state(random_state)
    return np.sort(rng.choice(total, size=min(int(n_checks), total), replace=False))


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion ``successes / n``; ``None`` when ``n == 0``.

    Unlike the normal approximation it stays inside [0, 1] and is sensible for small ``n`` and
    proportions near 0 or 1 (an expert who confirmed 10 checks of 10 gets (0.72, 1.0), not 1 ± 0).
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0 or n successes a bound is exactly 0 or 1; floating point would leave 1 - 1e-16.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass
class CheckLook:
    """How hidden checks present in a batch: what a regular case of the same batch would show.

    Attributes
    ----------
    uncertainty, cluster, rank_in_cluster : ndarray, shape (n_checks,)
    reason : list of str, length n_checks
    regular_rank_in_cluster : ndarray of int, shape (n_selected,)
        The regular cases' ranks, aligned to ``selection.indices``: renumbered in the top-score
        part when checks joined it (ranks by score, the checks among them), else unchanged.
    regular_reason : list of str, length n_selected
        The regular cases' reasons, rewritten with those ranks.
    """

    uncertainty: np.ndarray
    cluster: np.ndarray
    rank_in_cluster: np.ndarray
    reason: list[str]
    regular_rank_in_cluster: np.ndarray
    regular_reason: list[str]


def check_look(
    selection: BatchSelection,
    regular_scores: np.ndarray,
    check_scores: np.ndarray,
    *,
    random_state=None,
) -> CheckLook:
    """Write the checks' batch details the way :func:`learning.sampling.select_batch` writes a
    regular case's, so that nothing but the case itself tells a check apart.

    A check is shown as what it would have been, had it been a candidate: scoring at least as
    high as the batch's lowest top-score case, it joins the top-score part (which is ranked
    again by score, the checks among the cases); else it joins the cluster of a regular
    uncertain case drawn at random, as the next of that cluster. Its uncertainty is its own
    score's, under the batch's measure and threshold.

    Parameters
    ----------
    selection : BatchSelection
        The regular batch.
    regular_scores : array-like of float, shape (n_selected,)
        The scores of the selection's cases, aligned to ``selection.indices``.
    check_scores : array-like of float, shape (n_checks,)
    random_state : int, RandomState or None
    """
    rng = check_random_state(random_state)
    check_scores = np.asarray(check_scores, dtype=np.float64)
    regular_scores = np.asarray(regular_scores, dtype=np.float64)
    n = len(check_scores)
    kind = selection.uncertainty_kind
    threshold = selection.threshold
    if kind == "threshold" and threshold is None:
        kind = "margin"  # a batch of another strategy: no threshold was used
    uncertainty = uncertainty_scores(check_scores, kind=kind, threshold=threshold)
    clusters = np.asarray(selection.cluster, dtype=int)
    reasons_in = list(selection.reason)
    top = np.asarray(
        [c == -1 and r.startswith("top score") for c, r in zip(clusters, reasons_in, strict=True)],
        dtype=bool,
    )
    uncertain = np.flatnonzero(clusters >= 0) if selection.cluster_sizes else np.zeros(0, int)
    if not top.any() and not len(uncertain):
        # Other strategies write one reason for the whole batch ("random batch").
        pool = reasons_in or ["batch"]
        return CheckLook(
            np.zeros(n),
            np.full(n, -1),
            len(reasons_in) + np.arange(n),
            [pool[int(rng.randint(len(pool)))] for _ in range(n)],
            np.asarray(selection.rank_in_cluster, dtype=int),
            reasons_in,
        )
    as_top = np.zeros(n, dtype=bool)
    if top.any():
        as_top = check_scores >= regular_scores[top].min()
        if not len(uncertain):
            as_top[:] = True
    out_cluster = np.full(n, -1)
    out_rank = np.zeros(n, dtype=int)
    out_reason = [""] * n
    if len(uncertain):
        used = np.unique(clusters[uncertain])
        taken = {int(c): int((clusters == c).sum()) for c in used}
        for k in np.flatnonzero(~as_top):
            c = int(clusters[rng.choice(uncertain)])
            out_cluster[k], out_rank[k] = c, taken[c]
            taken[c] += 1
            out_reason[k] = uncertain_reason(
                check_scores[k],
                uncertainty[k],
                kind=kind,
                threshold=threshold,
                short_rule=selection.short_rule,
                cluster=c,
                n_clusters=len(used),
                rank=out_rank[k],
                cluster_size=max(selection.cluster_sizes[c], out_rank[k] + 1),
            )
    regular_rank = np.asarray(selection.rank_in_cluster, dtype=int).copy()
    regular_reason = list(reasons_in)
    if as_top.any():
        # The top-score part ranked again by score, the checks among its cases.
        regular_top = np.flatnonzero(top)
        checks_top = np.flatnonzero(as_top)
        members = [("regular", int(i)) for i in regular_top] + [
            ("check", int(k)) for k in checks_top
        ]
        member_scores = np.concatenate([regular_scores[regular_top], check_scores[checks_top]])
        order = np.argsort(-member_scores, kind="stable")
        n_candidates = max(selection.n_candidates, len(regular_top)) + len(checks_top)
        for rank, m in enumerate(order):
            who, i = members[m]
            reason = top_score_reason(member_scores[m], rank, n_candidates)
            if who == "regular":
                regular_rank[i], regular_reason[i] = rank, reason
            else:
                out_rank[i], out_reason[i] = rank, reason
    return CheckLook(uncertainty, out_cluster, out_rank, out_reason, regular_rank, regular_reason)
