"""Reads about labels: an expert's recent answers, the last one they may undo, stats, audit."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.utils import timezone

from labelapp.models import AuditEvent, Dataset, Label
from labelapp.selectors.checks import CheckRecall, check_recall_by_user
from labelapp.services.labels import UNDO_WINDOW


def recent_answers(*, user: Any, dataset: Dataset, limit: int = 10) -> list[Label]:
    """The user's latest rows on this dataset (answers and undos), newest first."""
    return list(
        Label.objects.filter(user=user, case__dataset=dataset)
        .select_related("case", "pattern")
        .prefetch_related("undone_by")
        .order_by("-created_at", "-id")[:limit]
    )


def last_undoable_label(*, user: Any, dataset: Dataset) -> Label | None:
    """The user's newest answer on ``dataset`` that still counts and is young enough to undo."""
    return (
        Label.objects.filter(
            user=user,
            case__dataset=dataset,
            undone_by__isnull=True,
            created_at__gte=timezone.now() - UNDO_WINDOW,
        )
        .exclude(answer=Label.Answer.UNDONE)
        .select_related("case")
        .order_by("-created_at", "-id")
        .first()
    )


@dataclass(frozen=True)
class ExpertStats:
    username: str
    labels: int
    confirmed: int
    not_confirmed: int
    skipped: int
    undone: int
    confirmation_rate: float | None
    median_seconds: float | None
    checks: CheckRecall | None = None


def expert_stats(
    *, dataset: Dataset | None = None, user: Any | None = None, with_checks: bool = False
) -> list[ExpertStats]:
    """Per expert: answers that count, confirmation rate among settled answers, median time.

    ``with_checks`` (for admins): hidden checks apart, as each expert's recall on them
    (``checks``), and left out of the other columns. Without it they count as the answers they
    looked like to the expert (an expert's own line must not tell them which cases were checks).
    Undone answers and undo rows are left out of the counts (``undone`` says how many there were).
    """
    recall = check_recall_by_user(dataset=dataset, user=user) if with_checks else {}
    rows = Label.objects.all()
    if with_checks:
        rows = rows.without_checks()
    if dataset is not None:
        rows = rows.filter(case__dataset=dataset)
    if user is not None:
        rows = rows.filter(user=user)
    empty = {"confirmed": 0, "not_confirmed": 0, "skipped": 0, "undone": 0}
    per_user: dict[int, dict[str, Any]] = {uid: {**empty, "seconds": []} for uid in recall}
    values = rows.values_list("user_id", "answer", "seconds_spent", "undone_by__id")
    for user_id, answer, seconds, undone_by in values:
        entry = per_user.setdefault(
            user_id,
            {"confirmed": 0, "not_confirmed": 0, "skipped": 0, "undone": 0, "seconds": []},
        )
        if answer == Label.Answer.UNDONE:
            continue
        if undone_by is not None:
            entry["undone"] += 1
            continue
        entry[answer] += 1
        if seconds is not None:
            entry["seconds"].append(seconds)
    names = dict(get_user_model().objects.filter(pk__in=per_user).values_list("pk", "username"))
    stats = []
    for user_id, e in per_user.items():
        settled = e["confirmed"] + e["not_confirmed"]
        stats.append(
            ExpertStats(
                username=names.get(user_id, "?"),
                labels=settled + e["skipped"],
                confirmed=e["confirmed"],
                not_confirmed=e["not_confirmed"],
                skipped=e["skipped"],
                undone=e["undone"],
                confirmation_rate=e["confirmed"] / settled if settled else None,
                median_seconds=statistics.median(e["seconds"]) if e["seconds"] else None,
                checks=recall.get(user_id),
            )
        )
    return sorted(stats, key=lambda s: (-s.labels, s.username))


def label_audit_events(*, dataset: Dataset | None = None, limit: int = 200) -> QuerySet:
    events = AuditEvent.objects.filter(verb__startswith="label.").select_related("actor")
    if dataset is not None:
        events = events.filter(dataset=dataset)
    return events.order_by("-created_at", "-id")[:limit]
