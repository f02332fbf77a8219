"""Seed positives defined in the app: mark or unmark cases named by a rule, a list of case ids or
one case; undo a change.

The rules of what may change are :mod:`labelapp.selectors.seeds`'s (a ``U`` or ``skipped`` case
becomes ``P``; answered or shown cases are reported, not changed; unmarking turns ``P`` back into
``U``). A change runs in one transaction with the dataset row locked, so two changes of one
dataset never interleave: ``Case.seed_positive``, ``Case.pool_state`` and
``Dataset.n_seed_positive`` move together or not at all. Each change is an :class:`AuditEvent`
(``seeds.mark`` / ``seeds.unmark``) holding the source and every case it changed with its
previous state, which is what an undo (``seeds.undo``, itself audited) restores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F

from labelapp.models import AuditEvent, BatchItem, Case, Dataset, PoolState
from labelapp.selectors.seeds import (
    MAX_SEED_CHANGE,
    SEED_VERBS,
    UNDO_VERB,
    SeedPreview,
    SeedSource,
    SeedSourceError,
    changeable_cases,
    open_check,
    seed_preview,
    seed_source_cases,
)
from labelapp.services.audit import audit_event_create

CHUNK = 2000


@dataclass
class SeedChangeResult:
    event: AuditEvent | None
    n_changed: int
    preview: SeedPreview


class SeedUndoError(ValueError):
    """The event is no seed change, or it was undone already."""


def seeds_apply(
    *,
    dataset: Dataset,
    source: SeedSource,
    user: Any = None,
    remove: bool = False,
    via: str = "page",
) -> SeedChangeResult:
    """Mark (or with ``remove`` unmark) the cases ``source`` names, all or nothing.

    Returns the audit event (None when nothing changed), how many cases changed, and the
    counts of what was left alone.

    Raises
    ------
    SeedSourceError, learning.expressions.ExpressionError
        A bad rule, unknown ids (nothing changed), or more than :data:`MAX_SEED_CHANGE` cases.
    """
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        preview = seed_preview(locked, source, remove=remove)
        if preview.n_change > MAX_SEED_CHANGE:
            raise SeedSourceError(
                f"this would change {preview.n_change} cases; one change takes at most "
                f"{MAX_SEED_CHANGE}. Narrow the rule."
            )
        rows = list(
            changeable_cases(seed_source_cases(locked, source), remove=remove)
            .select_for_update()
            .order_by("row")
            .values_list("pk", "case_id", "pool_state")
        )
        if not rows:
            return SeedChangeResult(event=None, n_changed=0, preview=preview)
        withdrawn = [] if remove else _withdraw_skipped_items(rows)
        new_state = PoolState.UNLABELED if remove else PoolState.POSITIVE
        _set_states([pk for pk, _, _ in rows], state=new_state, seed=not remove)
        delta = -len(rows) if remove else len(rows)
        Dataset.objects.filter(pk=locked.pk).update(n_seed_positive=F("n_seed_positive") + delta)
        event = audit_event_create(
            actor=user,
            verb=SEED_VERBS[1] if remove else SEED_VERBS[0],
            dataset=locked,
            data={
                "source": source.describe(),
                "n_changed": len(rows),
                "n_already": preview.n_already,
                "not_changed": preview.not_changed,
                "cases": [[pk, case_id, state] for pk, case_id, state in rows],
                "withdrawn_items": withdrawn,
            },
            via=via,
        )
    dataset.refresh_from_db(fields=["n_seed_positive"])
    return SeedChangeResult(event=event, n_changed=len(rows), preview=preview)


def _withdraw_skipped_items(rows: list[tuple[int, str, str]]) -> list[int]:
    """A skipped case that becomes a seed leaves its batches: its skipped items are withdrawn
    (so undoing the old skip cannot put the seed back into a queue). Returns their ids."""
    skipped = [pk for pk, _, state in rows if state == PoolState.SKIPPED]
    items: list[int] = []
    for start in range(0, len(skipped), CHUNK):
        chunk = BatchItem.objects.filter(
            case_id__in=skipped[start : start + CHUNK], status=BatchItem.Status.SKIPPED
        )
        ids = list(chunk.values_list("pk", flat=True))
        BatchItem.objects.filter(pk__in=ids).update(
            status=BatchItem.Status.WITHDRAWN, assigned_to=None, lease_expires_at=None
        )
        items += ids
    return items


def _set_states(pks: list[int], *, state: str, seed: bool) -> None:
    for start in range(0, len(pks), CHUNK):
        Case.objects.filter(pk__in=pks[start : start + CHUNK]).update(
            pool_state=state, seed_positive=seed
        )


def seeds_undo(*, event: AuditEvent, user: Any = None, via: str = "page") -> AuditEvent:
    """Undo a seed change: each case it changed that is still as the change left it gets its
    previous state back (withdrawn batch items reopen as skipped); cases changed since are left
    as they are and listed in the undo's audit event.

    Raises
    ------
    SeedUndoError
        ``event`` is not a seed change, or it was undone already.
    """
    if event.verb not in SEED_VERBS or event.dataset_id is None:
        raise SeedUndoError("only a seed change (mark or unmark) can be undone")
    removed = event.verb == SEED_VERBS[1]
    with transaction.atomic():
        dataset = Dataset.objects.select_for_update().get(pk=event.dataset_id)
        if AuditEvent.objects.filter(
            verb=UNDO_VERB, target_type="AuditEvent", target_id=str(event.pk)
        ).exists():
            raise SeedUndoError(f"seed change #{event.pk} was undone already")
        previous = {pk: (case_id, state) for pk, case_id, state in event.data.get("cases", [])}
        left_as = PoolState.UNLABELED if removed else PoolState.POSITIVE
        still: set[int] = set()
        pks = list(previous)
        for start in range(0, len(pks), CHUNK):
            still.update(
                Case.objects.select_for_update()
                .filter(
                    pk__in=pks[start : start + CHUNK],
                    pool_state=left_as,
                    seed_positive=not removed,
                )
                .exclude(open_check())
                .values_list("pk", flat=True)
            )
        by_state: dict[str, list[int]] = {}
        for pk in still:
            by_state.setdefault(previous[pk][1], []).append(pk)
        for state, group in by_state.items():
            _set_states(group, state=state, seed=removed)
        if not removed:
            BatchItem.objects.filter(
                pk__in=event.data.get("withdrawn_items", []),
                case_id__in=still,
                status=BatchItem.Status.WITHDRAWN,
            ).update(status=BatchItem.Status.SKIPPED)
        delta = len(still) if removed else -len(still)
        Dataset.objects.filter(pk=dataset.pk).update(n_seed_positive=F("n_seed_positive") + delta)
        changed_since = sorted(previous[pk][0] for pk in set(previous) - still)
        return audit_event_create(
            actor=user,
            verb=UNDO_VERB,
            dataset=dataset,
            target=event,
            data={
                "undoes": event.pk,
                "undoes_verb": event.verb,
                "n_restored": len(still),
                "cases": sorted(previous[pk][0] for pk in still),
                "changed_since": changed_since,
            },
            via=via,
        )
