"""Hidden checks of expert recall: the admin's share, and the checks each new batch gets.

When a dataset's ``hidden_check_share`` is above 0, every batch an iteration writes gets
``round(share x batch size)`` more items: seed positives (pool state ``P``) chosen at random,
those checked least often first, at random places in the batch, written like the batch's other
items (:func:`learning.checks.check_look`). Their answers are stored like any other (append-only,
undo works) but never change the case's state: the case stays ``P`` and the training set stays
what it was (:mod:`labelapp.services.labels` keeps a check's answers to the check).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db.models import Count, Q

from labelapp.models import BatchItem, Case, Dataset, Iteration, NoiseFlag, PoolState
from labelapp.services.audit import audit_event_create
from learning.checks import MAX_SHARE, check_count, check_look, check_positions, choose_checks
from learning.sampling import BatchSelection

#: Mixed into the iteration's seed so that the checks do not draw the selection's numbers.
CHECK_SEED_OFFSET = 104_729


class HiddenCheckShareError(ValueError):
    """A share the admin typed that cannot be used; the message says why."""


def share_parse(value: Any) -> float:
    """The share from a form or API value: a fraction (0.05) or a percent ("5%").

    Raises
    ------
    HiddenCheckShareError
        Not a number, or outside 0 to :data:`MAX_SHARE`.
    """
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        share = float(text.rstrip("%").strip()) if text else float("nan")
    except ValueError:
        share = float("nan")
    if percent:
        share /= 100.0
    if not np.isfinite(share) or not 0.0 <= share <= MAX_SHARE:
        raise HiddenCheckShareError(
            f"The share of hidden checks must be a number from 0 (off) to {MAX_SHARE:g} "
            f"({MAX_SHARE:.0%} of each batch); got {text or 'nothing'!r}."
        )
    return round(share, 4)


def dataset_hidden_check_share_set(*, user: Any, dataset: Dataset, share: Any) -> Dataset:
    """Set the share of each future batch given to hidden checks (audited; batches already
    written keep theirs)."""
    value = share_parse(share)
    previous = dataset.hidden_check_share
    Dataset.objects.filter(pk=dataset.pk).update(hidden_check_share=value)
    dataset.hidden_check_share = value
    audit_event_create(
        actor=user,
        verb="dataset.hidden_checks",
        dataset=dataset,
        target=dataset,
        data={"share": value, "previous_share": previous},
    )
    return dataset


def check_candidates(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed positives that may be checks: case ids, rows, and how often each was a check.

    Left out: seeds waiting for a second look of the label-noise audit.
    """
    waiting = NoiseFlag.objects.filter(
        dataset=dataset, status__in=[NoiseFlag.Status.OPEN, NoiseFlag.Status.SENT]
    ).values("case_id")
    rows = (
        Case.objects.filter(dataset=dataset, pool_state=PoolState.POSITIVE)
        .exclude(pk__in=waiting)
        .annotate(n=Count("batch_items", filter=Q(batch_items__is_check=True)))
        .order_by("pk")
        .values_list("pk", "row", "n")
    )
    values = list(rows)
    if not values:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    ids, case_rows, times = (np.asarray(v, dtype=np.int64) for v in zip(*values, strict=True))
    return ids, case_rows, times


def batch_with_checks(
    *,
    dataset: Dataset,
    iteration: Iteration,
    selection: BatchSelection,
    scores: np.ndarray,
    regular: list[BatchItem],
    random_state: int,
) -> tuple[list[BatchItem], int]:
    """The batch with its hidden checks, in the order experts get it, and how many checks.

    ``regular`` are the unsaved items of the new cases, each at its ``position`` in
    ``selection``; ``scores`` the new model's scores of every case (row order); ``random_state``
    the loop's, to which the iteration's number is added: a replay draws the same checks. With
    the share at 0 (or no seed to use) the batch is ``regular`` unchanged. Otherwise the checks
    take random places, every position is renumbered 0, 1, 2, ..., and the top-score part's
    ranks count the checks among its cases (:func:`learning.checks.check_look`).
    """
    wanted = check_count(dataset.hidden_check_share, len(regular))
    if wanted == 0:
        return regular, 0
    rng = np.random.RandomState((int(random_state) + CHECK_SEED_OFFSET * iteration.number) % 2**32)
    ids, rows, times = check_candidates(dataset)
    chosen = choose_checks(np.arange(len(ids)), times, wanted, random_state=rng)
    if not len(chosen):
        return regular, 0
    scores = np.asarray(scores)
    check_rows = rows[chosen]
    look = check_look(
        selection,
        scores[np.asarray(selection.indices, dtype=np.intp)],
        scores[check_rows],
        random_state=rng,
    )
    for item in regular:
        item.rank_in_cluster = int(look.regular_rank_in_cluster[item.position])
        item.reason = str(look.regular_reason[item.position])[:200]
    checks = [
        BatchItem(
            iteration=iteration,
            case_id=int(ids[i]),
            score=float(scores[row]),
            uncertainty=float(look.uncertainty[k]),
            cluster=int(look.cluster[k]),
            rank_in_cluster=int(look.rank_in_cluster[k]),
            reason=str(look.reason[k])[:200],
            is_check=True,
        )
        for k, (i, row) in enumerate(zip(chosen, check_rows, strict=True))
    ]
    return _interleave(regular, checks, rng), len(checks)


def _interleave(
    regular: list[BatchItem], checks: list[BatchItem], rng: np.random.RandomState
) -> list[BatchItem]:
    """The checks at random places among the regular items (which keep their order); positions
    renumbered 0, 1, 2, ..."""
    at = set(check_positions(len(regular), len(checks), random_state=rng).tolist())
    regular_iter, check_iter = iter(regular), iter(checks)
    merged = [
        next(check_iter) if position in at else next(regular_iter)
        for position in range(len(regular) + len(checks))
    ]
    for position, item in enumerate(merged):
        item.position = position
    return merged
