"""The experts' queue: the current batch split among experts through short leases.

An expert asking for the next case gets an open batch item of the dataset's current batch,
leased to them for :data:`LEASE_DURATION`. While the lease runs nobody else gets that case; when it
expires (the expert went home) the case returns to the queue. An item that needs double labeling
(``required_answers=2``) goes to a second, different expert after the first one answered.

"Next case" is one index-backed query over the (small) current batch, claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two experts asking at the same moment get
two different cases without waiting on each other. One expert asking twice at the same moment
(two tabs, a double click) gets one case: each expert's requests take turns on a lock of their
own user row, so the second sees the lease the first took and gets that case back. An expert
holds one open lease per batch (cases reserved for a second look aside).
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Case, Count, Exists, OuterRef, Q, QuerySet, When
from django.utils import timezone

from labelapp.models import BatchItem, Dataset, Iteration, Label, NoiseFlag
from labelapp.services.audit import audit_event_create

#: How long a case stays reserved for the expert who opened it (experts spend 5-15 min a case).
LEASE_DURATION = timedelta(minutes=30)


def current_batch_iteration(dataset: Dataset) -> Iteration | None:
    """The dataset's newest iteration that selected a batch (the batch experts work on).

    Remembered on the ``dataset`` instance, so one request asks the database once.
    """
    if not hasattr(dataset, "_current_batch_iteration"):
        has_batch = Exists(BatchItem.objects.filter(iteration=OuterRef("pk")))
        dataset._current_batch_iteration = (
            Iteration.objects.filter(has_batch, dataset=dataset).order_by("-number").first()
        )
    return dataset._current_batch_iteration


def _answered_by(user: Any) -> Exists:
    """Batch items on which ``user`` already has an answer that counts (including a skip)."""
    return Exists(
        Label.objects.filter(batch_item=OuterRef("pk"), user=user, undone_by__isnull=True).exclude(
            answer=Label.Answer.UNDONE
        )
    )


def _offerable_items(*, iteration: Iteration, user: Any, now) -> QuerySet[BatchItem]:
    free = Q(assigned_to__isnull=True) | Q(lease_expires_at__lte=now) | Q(assigned_to=user)
    return (
        BatchItem.objects.filter(iteration=iteration, status=BatchItem.Status.OPEN)
        .filter(free)
        .exclude(_answered_by(user))
    )


def queue_next_case(*, user: Any, dataset: Dataset) -> BatchItem | None:
    """Lease the next case of the current batch to ``user``; ``None`` when nothing is left.

    An expert who already holds a live lease gets that same case back (reloading the page never
    burns through the queue); its lease is renewed.
    """
    iteration = current_batch_iteration(dataset)
    if iteration is None:
        return None
    with transaction.atomic():
        _take_turns(user)
        now = timezone.now()
        held_by_user = Q(assigned_to=user, lease_expires_at__gt=now)
        # One query: the case the user already holds first, else the first free one.
        candidates = (
            _offerable_items(iteration=iteration, user=user, now=now)
            .annotate(held=Case(When(held_by_user, then=0), default=1))
            .order_by("held", "position", "id")
        )
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        item = candidates.select_related("case__dataset__current_model", "iteration").first()
        if item is None:
            return None
        item.assigned_to = user
        item.lease_expires_at = now + LEASE_DURATION
        item.save(update_fields=["assigned_to", "lease_expires_at"])
        return item


def _take_turns(user: Any) -> None:
    """Lock the user's row until the transaction ends: one user's queue requests run one at a
    time (other users' are not held up). SQLite serialises write transactions anyway."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).exists()


def queue_lease_for_case(*, user: Any, item: BatchItem) -> bool:
    """Take or renew the lease on one item (an expert opened its case page). False if held.

    Uses a conditional ``UPDATE``: the lease is taken only if the item is open and free (or
    already ours), so two experts opening the same case cannot both hold it. The user's other
    lease in the batch, if any, goes back to the queue (one open lease per expert and batch).
    """
    with transaction.atomic():
        _take_turns(user)
        now = timezone.now()
        free = Q(assigned_to__isnull=True) | Q(lease_expires_at__lte=now) | Q(assigned_to=user)
        changed = (
            BatchItem.objects.filter(pk=item.pk, status=BatchItem.Status.OPEN)
            .filter(free)
            .update(assigned_to=user, lease_expires_at=now + LEASE_DURATION)
        )
        if changed:
            queue_release_others(user=user, item=item)
    return changed == 1


def queue_release_others(*, user: Any, item: BatchItem) -> int:
    """Give back the user's other live leases in ``item``'s batch (not cases reserved for them
    for a second look); returns how many."""
    reserved = Exists(
        NoiseFlag.objects.filter(review_item=OuterRef("pk"), status=NoiseFlag.Status.SENT)
    )
    return (
        BatchItem.objects.filter(
            iteration_id=item.iteration_id,
            assigned_to=user,
            status=BatchItem.Status.OPEN,
            lease_expires_at__gt=timezone.now(),
        )
        .exclude(pk=item.pk)
        .exclude(reserved)
        .update(assigned_to=None, lease_expires_at=None)
    )


def queue_release(*, user: Any, item: BatchItem) -> bool:
    """Give a leased case back to the queue before its lease runs out."""
    changed = BatchItem.objects.filter(pk=item.pk, assigned_to=user).update(
        assigned_to=None, lease_expires_at=None
    )
    return changed == 1


def queue_progress(*, dataset: Dataset, user: Any | None = None) -> dict[str, int]:
    """Counts of the current batch: total, open, answered, skipped, held by ``user``; and the
    batch's ``iteration_id`` (absent when there is no batch)."""
    iteration = current_batch_iteration(dataset)
    counts = {"total": 0, "open": 0, "answered": 0, "skipped": 0, "withdrawn": 0, "mine": 0}
    if iteration is None:
        return counts
    counts["iteration_id"] = iteration.pk
    per_status = (
        BatchItem.objects.filter(iteration=iteration)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    for status, n in per_status:
        counts["total"] += n
        counts[status] = n
    if user is not None:
        counts["mine"] = BatchItem.objects.filter(
            iteration=iteration,
            status=BatchItem.Status.OPEN,
            assigned_to=user,
            lease_expires_at__gt=timezone.now(),
        ).count()
    return counts


def earlier_batches_open(dataset: Dataset) -> list[dict[str, int]]:
    """Open items of batches older than the current one: the queue no longer offers them.

    One row per such iteration, newest first: ``{"number": N, "open": count}``.
    """
    current = current_batch_iteration(dataset)
    if current is None:
        return []
    rows = (
        BatchItem.objects.filter(
            iteration__dataset=dataset,
            iteration__number__lt=current.number,
            status=BatchItem.Status.OPEN,
        )
        .order_by()
        .values("iteration__number")
        .annotate(n=Count("id"))
        .order_by("-iteration__number")
    )
    return [{"number": row["iteration__number"], "open": row["n"]} for row in rows]


def batch_request_double_labeling(
    *, user: Any, iteration: Iteration, fraction: float, random_state: int | None = None
) -> int:
    """Mark a random ``fraction`` of the batch's open items for two answers (agreement).

    Returns the number of items marked. Items already answered keep their single answer.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError("fraction must be in (0, 1]")
    with transaction.atomic():
        ids = list(
            BatchItem.objects.filter(iteration=iteration, status=BatchItem.Status.OPEN)
            .order_by("position")
            .values_list("pk", flat=True)
        )
        n = max(1, round(fraction * len(ids))) if ids else 0
        chosen = random.Random(random_state).sample(ids, n)
        BatchItem.objects.filter(pk__in=chosen).update(required_answers=2)
        audit_event_create(
            actor=user,
            verb="batch.double_labeling",
            dataset=iteration.dataset,
            target=iteration,
            data={"fraction": fraction, "items": len(chosen)},
        )
    return len(chosen)
