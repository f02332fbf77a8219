"""Expert answers: store a label, undo one, and keep the pool state of the case in step.

The pool rule (SPEC "The loop", step 5):

* ``confirmed``     -> ``confirmed`` (the case joins P; the loop up-weights it);
* ``not_confirmed`` -> ``not_confirmed`` (back into U for training, recorded, never offered again);
* ``skipped``       -> ``skipped`` (may be offered again in a later batch).

History is append-only: an undo is a new row with answer ``undone`` that points at the row it
cancels. Every write records an :class:`~labelapp.models.AuditEvent`.

Races: both services lock the case row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite runs
every write transaction ``IMMEDIATE``, which serialises them), then decide on what is committed.
Of two experts answering the same case at the same moment exactly one label is stored; the other
gets :class:`LabelConflict`. A repeated submit with the same idempotency key returns the label the
first one stored (:func:`label_create_or_replay` says which of the two it was), and a repeated
answer without a key (a double-clicked "skip") is refused rather than stored twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from labelapp.models import BatchItem, Case, Label, PatternTag, PoolState
from labelapp.services.audit import audit_event_create

#: How long after answering an expert may still undo the answer.
UNDO_WINDOW = timedelta(hours=2)

#: Answers that settle a case (a skip does not: someone else may still answer).
SETTLING_ANSWERS = (Label.Answer.CONFIRMED, Label.Answer.NOT_CONFIRMED)
ANSWERS = (*SETTLING_ANSWERS, Label.Answer.SKIPPED)

POOL_STATE_FOR_ANSWER = {
    Label.Answer.CONFIRMED: PoolState.CONFIRMED,
    Label.Answer.NOT_CONFIRMED: PoolState.NOT_CONFIRMED,
    Label.Answer.SKIPPED: PoolState.SKIPPED,
}


class LabelError(Exception):
    """A label request that cannot be carried out; the message is meant for the expert."""


class LabelConflict(LabelError):
    """The case was already answered (by another expert, or the label was already undone)."""


class LabelNotAllowed(LabelError):
    """The user may not do this (undo someone else's answer, or an answer too old to undo)."""


def effective_labels(case: Case):
    """The case's answers that still count: not undo rows, and not undone."""
    return Label.objects.filter(case=case, undone_by__isnull=True).exclude(
        answer=Label.Answer.UNDONE
    )


def label_create(
    *,
    user: Any,
    case: Case,
    answer: str,
    pattern: PatternTag | None = None,
    comment: str = "",
    via: str = "page",
    idempotency_key: str | None = None,
    batch_item: BatchItem | None = None,
    seconds_spent: float | None = None,
    review_round: int = 1,
) -> Label:
    """Store one expert answer for ``case`` and apply the pool rule.

    Parameters
    ----------
    answer : {"confirmed", "not_confirmed", "skipped"}
    pattern : optional taxonomy tag; only kept with a ``confirmed`` answer.
    idempotency_key : a client-chosen key; a second call with the same key returns the first label.
    batch_item : the batch item answered; found from the case's open batch item when omitted.
    review_round : 1 for a first answer. For a batch item that needs double labeling the round is
        the next one not yet answered, whatever is passed.

    Raises
    ------
    LabelConflict
        The case already holds a settling answer (from another expert, or from this one), this
        user already skipped it in this batch, or the idempotency key was used for another case
        or by another user.
    ValueError
        Unknown answer.
    """
    label, _ = label_create_or_replay(
        user=user,
        case=case,
        answer=answer,
        pattern=pattern,
        comment=comment,
        via=via,
        idempotency_key=idempotency_key,
        batch_item=batch_item,
        seconds_spent=seconds_spent,
        review_round=review_round,
    )
    return label


def label_create_or_replay(
    *,
    user: Any,
    case: Case,
    answer: str,
    pattern: PatternTag | None = None,
    comment: str = "",
    via: str = "page",
    idempotency_key: str | None = None,
    batch_item: BatchItem | None = None,
    seconds_spent: float | None = None,
    review_round: int = 1,
) -> tuple[Label, bool]:
    """:func:`label_create`, and whether this call stored the label (``False``: a replay of the
    submit with the same idempotency key, decided under the case's lock)."""
    if answer not in ANSWERS:
        raise ValueError(f"unknown answer {answer!r}; expected one of {', '.join(ANSWERS)}")
    if idempotency_key:
        existing = _label_for_key(idempotency_key, user=user, case=case)
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            return _label_create_locked(
                user=user,
                case=case,
                answer=answer,
                pattern=pattern if answer == Label.Answer.CONFIRMED else None,
                comment=comment.strip(),
                via=via,
                idempotency_key=idempotency_key or None,
                batch_item=batch_item,
                seconds_spent=seconds_spent,
                review_round=review_round,
            )
    except IntegrityError:
        # Two submits with one key raced past the first check: the other one stored the label.
        if idempotency_key:
            existing = _label_for_key(idempotency_key, user=user, case=case)
            if existing is not None:
                return existing, False
        raise


def _label_for_key(key: str, *, user: Any, case: Case) -> Label | None:
    existing = Label.objects.filter(idempotency_key=key).first()
    if existing is None:
        return None
    if existing.user_id != user.pk or existing.case_id != case.pk:
        raise LabelConflict("This request key was already used for another answer.")
    return existing


def _label_create_locked(
    *,
    user: Any,
    case: Case,
    answer: str,
    pattern: PatternTag | None,
    comment: str,
    via: str,
    idempotency_key: str | None,
    batch_item: BatchItem | None,
    seconds_spent: float | None,
    review_round: int,
) -> tuple[Label, bool]:
    case = _lock_case(case.pk)
    if idempotency_key:
        # The first submit may have committed while we waited for the lock.
        existing = _label_for_key(idempotency_key, user=user, case=case)
        if existing is not None:
            return existing, False
    if batch_item is None:
        batch_item = _open_batch_item(case)
    elif batch_item.case_id != case.pk:
        raise ValueError("the batch item belongs to another case")
    else:
        batch_item = BatchItem.objects.select_for_update().get(pk=batch_item.pk)

    rows = _case_rows(case, batch_item)
    labels = _effective(rows)
    settled = [label for label in labels if label.answer in SETTLING_ANSWERS]
    required = batch_item.required_answers if batch_item is not None else 1
    if any(label.user_id == user.pk for label in settled):
        mine = next(label for label in settled if label.user_id == user.pk)
        raise LabelConflict(
            f"You already answered case {case.case_id} ({mine.get_answer_display()}); "
            "undo that answer first to change it."
        )
    skipped_here = [
        label
        for label in labels
        if label.answer == Label.Answer.SKIPPED
        and label.user_id == user.pk
        and label.batch_item_id == (batch_item.pk if batch_item else None)
    ]
    if answer == Label.Answer.SKIPPED and skipped_here:
        # A second skip adds nothing but a row: it is a repeated submit (a double click).
        raise LabelConflict(f"You already skipped case {case.case_id}.")
    if len(settled) >= required:
        first = settled[0]
        raise LabelConflict(
            f"Case {case.case_id} was already answered by {first.user.get_username()} "
            f"({first.get_answer_display()}) at {timezone.localtime(first.created_at):%H:%M:%S}. "
            "Your answer was not stored."
        )
    if required > 1:
        review_round = len(settled) + 1

    # The case's latest row, undo rows included: "undone" tells a reader the answer was redone.
    previous = rows[-1].answer if rows else ""
    label = Label.objects.create(
        case=case,
        batch_item=batch_item,
        user=user,
        answer=answer,
        previous_answer=previous,
        pattern=pattern,
        comment=comment,
        via=via,
        review_round=review_round,
        idempotency_key=idempotency_key,
        seconds_spent=seconds_spent,
    )
    previous_state = case.pool_state
    _sync_case_and_item(case, batch_item, [*(lb.answer for lb in labels), answer], user=user)
    audit_event_create(
        actor=user,
        verb="label.create",
        dataset=case.dataset,
        target=label,
        data={
            "case": case.case_id,
            "case_pk": case.pk,
            "answer": answer,
            "previous_answer": previous,
            "pool_state": case.pool_state,
            "previous_pool_state": previous_state,
            "review_round": review_round,
            "batch_item": batch_item.pk if batch_item else None,
            "pattern": pattern.name if pattern else None,
        },
        via=via,
    )
    return label, True


def _lock_case(pk: int) -> Case:
    """The case row, locked until the transaction ends (its dataset read along, not locked)."""
    return Case.objects.select_for_update(of=("self",)).select_related("dataset").get(pk=pk)


def _case_rows(case: Case, item: BatchItem | None = None) -> list[Label]:
    """The label rows of the case that count together, oldest first (a handful: one query).

    A hidden check (``item.is_check``) is a world of its own: only its own rows count there, and
    its rows count nowhere else (they measure the expert, they say nothing new of the case).
    """
    rows = Label.objects.filter(case=case)
    if item is not None and item.is_check:
        rows = rows.filter(batch_item=item)
    else:
        rows = rows.without_checks()
    return list(rows.select_related("user").order_by("created_at", "id"))


def _effective(rows: list[Label]) -> list[Label]:
    """The answers among ``rows`` that still count: not undo rows, and not undone."""
    undone = {row.undoes_id for row in rows if row.undoes_id}
    return [r for r in rows if r.answer != Label.Answer.UNDONE and r.pk not in undone]


def label_undo(*, user: Any, label: Label, via: str = "page") -> Label:
    """Cancel one of ``user``'s own recent answers; restore the case's pool state.

    Raises
    ------
    LabelNotAllowed
        The label is someone else's, or older than :data:`UNDO_WINDOW`.
    LabelConflict
        The label was already undone (or is itself an undo).
    """
    with transaction.atomic():
        case = _lock_case(label.case_id)
        item = (
            BatchItem.objects.select_for_update().get(pk=label.batch_item_id)
            if label.batch_item_id
            else None
        )
        rows = _case_rows(case, item)
        label = next(row for row in rows if row.pk == label.pk)
        if label.user_id != user.pk:
            raise LabelNotAllowed("You can only undo your own answers.")
        if label.answer == Label.Answer.UNDONE:
            raise LabelConflict("An undo cannot itself be undone; answer the case again.")
        if any(row.undoes_id == label.pk for row in rows):
            raise LabelConflict(f"Your answer on case {case.case_id} was already undone.")
        if timezone.now() - label.created_at > UNDO_WINDOW:
            raise LabelNotAllowed(
                f"Answers older than {int(UNDO_WINDOW.total_seconds() // 3600)} hours cannot be "
                "undone; ask an admin for a second review."
            )
        undo = Label.objects.create(
            case=case,
            batch_item=item,
            user=user,
            answer=Label.Answer.UNDONE,
            previous_answer=label.answer,
            undoes=label,
            via=via,
            review_round=label.review_round,
        )
        previous_state = case.pool_state
        remaining = [row.answer for row in _effective(rows) if row.pk != label.pk]
        _sync_case_and_item(case, item, remaining, user=user, undoing=True)
        audit_event_create(
            actor=user,
            verb="label.undo",
            dataset=case.dataset,
            target=undo,
            data={
                "case": case.case_id,
                "case_pk": case.pk,
                "answer": Label.Answer.UNDONE,
                "previous_answer": label.answer,
                "undoes": label.pk,
                "pool_state": case.pool_state,
                "previous_pool_state": previous_state,
                "batch_item": label.batch_item_id,
            },
            via=via,
        )
        return undo


def _open_batch_item(case: Case) -> BatchItem | None:
    """The batch item a label answers: the case's newest one that is not withdrawn."""
    return (
        BatchItem.objects.select_for_update()
        .filter(case=case)
        .exclude(status=BatchItem.Status.WITHDRAWN)
        .order_by("-iteration__number", "-id")
        .first()
    )


def pool_state_for_answers(answers: list[str], *, in_batch: bool, seed_positive: bool) -> str:
    """The pool state that the answers that count give a case (SPEC "The loop", step 5).

    Settled answers decide: ``confirmed`` only when every settling answer confirms (precision
    first: two experts who disagree leave the case not confirmed). Otherwise a standing skip
    makes it ``skipped``; with no answer the case is in its batch (``shown``), or P/U.
    """
    settled = [a for a in answers if a in SETTLING_ANSWERS]
    if settled:
        if all(a == Label.Answer.CONFIRMED for a in settled):
            return PoolState.CONFIRMED
        return PoolState.NOT_CONFIRMED
    if Label.Answer.SKIPPED in answers:
        return PoolState.SKIPPED
    if in_batch:
        return PoolState.SHOWN
    return PoolState.POSITIVE if seed_positive else PoolState.UNLABELED


def _sync_case_and_item(
    case: Case,
    item: BatchItem | None,
    labels: list[str],
    *,
    user: Any,
    undoing: bool = False,
) -> None:
    """Derive the case's pool state and the batch item's status from the answers that count.

    ``labels`` are those answers (after the change); ``item`` is locked by the caller. The state
    is :func:`pool_state_for_answers`'s, except on a hidden check, where the case keeps its own.
    """
    settled = [a for a in labels if a in SETTLING_ANSWERS]
    state = pool_state_for_answers(
        labels, in_batch=item is not None, seed_positive=case.seed_positive
    )
    # A hidden check's answers measure the expert; the case stays the known positive it was.
    if case.pool_state != state and not (item is not None and item.is_check):
        case.pool_state = state
        case.save(update_fields=["pool_state"])

    if item is None:
        return
    if item.status == BatchItem.Status.WITHDRAWN:
        return
    if len(settled) >= item.required_answers:
        item.status = BatchItem.Status.ANSWERED
    elif not settled and Label.Answer.SKIPPED in labels:
        item.status = BatchItem.Status.SKIPPED
    else:
        item.status = BatchItem.Status.OPEN
    now = timezone.now()
    held_by_other = (
        item.assigned_to_id not in (None, user.pk)
        and item.lease_expires_at is not None
        and item.lease_expires_at > now
    )
    if held_by_other:
        pass  # another expert holds the case now: leave their lease alone
    elif undoing and item.status == BatchItem.Status.OPEN:
        # The case comes back to the expert who undid the answer (their next case goes back).
        from labelapp.services.queue import LEASE_DURATION, queue_release_others

        item.assigned_to = user
        item.lease_expires_at = now + LEASE_DURATION
        queue_release_others(user=user, item=item)
    else:
        item.assigned_to = None
        item.lease_expires_at = None
    item.save(update_fields=["status", "assigned_to", "lease_expires_at"])
