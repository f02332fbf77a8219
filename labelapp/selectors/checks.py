"""Reads of the hidden checks of expert recall: each expert's recall on them, and what an expert
is shown of a case that is a check (the same as of any other case of the batch).

A hidden check is a seed positive put in a batch (``BatchItem.is_check``). Its case stays ``P``;
an expert must not learn that from any page or answer of the API, so the views pass the cases
they show to experts through :func:`cases_shown_as_regular`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from labelapp.models import BatchItem, Case, Dataset, Label, PoolState
from labelapp.roles import is_admin
from labelapp.services.labels import pool_state_for_answers
from learning.checks import wilson_interval

SETTLING = (Label.Answer.CONFIRMED, Label.Answer.NOT_CONFIRMED)


@dataclass(frozen=True)
class CheckRecall:
    """An expert's recall on hidden checks: confirmed / answered (skips left out), 95% Wilson."""

    confirmed: int
    answered: int
    n: int = 0  # how many checks there were (answered or not), where it is known

    @property
    def recall(self) -> float | None:
        return self.confirmed / self.answered if self.answered else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.confirmed, self.answered)

    @property
    def low(self) -> float | None:
        return self.interval[0] if self.answered else None

    @property
    def high(self) -> float | None:
        return self.interval[1] if self.answered else None


def check_labels() -> QuerySet[Label]:
    """Answers given on hidden checks that still count (not undo rows, not undone)."""
    return Label.objects.filter(batch_item__is_check=True, undone_by__isnull=True).exclude(
        answer=Label.Answer.UNDONE
    )


def check_recall_by_user(
    *, dataset: Dataset | None = None, user: Any | None = None
) -> dict[int, CheckRecall]:
    """Per user id: their recall on the hidden checks they answered (of ``dataset``, or all)."""
    labels = check_labels().filter(answer__in=SETTLING)
    if dataset is not None:
        labels = labels.filter(case__dataset=dataset)
    if user is not None:
        labels = labels.filter(user=user)
    counts: dict[int, list[int]] = {}
    for user_id, answer in labels.values_list("user_id", "answer"):
        entry = counts.setdefault(user_id, [0, 0])
        entry[0] += answer == Label.Answer.CONFIRMED
        entry[1] += 1
    return {uid: CheckRecall(confirmed=c, answered=n) for uid, (c, n) in counts.items()}


def iteration_checks(iteration_id: int) -> CheckRecall | None:
    """An iteration's hidden checks for its admin: how many (``n``), and their answers so far as
    a recall (``None`` when the batch has none)."""
    n = BatchItem.objects.filter(iteration_id=iteration_id, is_check=True).count()
    if not n:
        return None
    answers = list(
        check_labels()
        .filter(batch_item__iteration_id=iteration_id, answer__in=SETTLING)
        .values_list("answer", flat=True)
    )
    return CheckRecall(confirmed=answers.count(Label.Answer.CONFIRMED), answered=len(answers), n=n)


def check_case_ids(case_ids: Iterable[int]) -> set[int]:
    """The cases among ``case_ids`` that were ever a hidden check."""
    return set(
        BatchItem.objects.filter(case_id__in=list(case_ids), is_check=True).values_list(
            "case_id", flat=True
        )
    )


def has_check() -> Exists:
    """For a case queryset: whether the case was ever a hidden check."""
    return Exists(BatchItem.objects.filter(case=OuterRef("pk"), is_check=True))


def shown_pool_states(case_ids: Iterable[int]) -> dict[int, str]:
    """For the cases among ``case_ids`` that were hidden checks: the pool state an expert is
    shown, the one a regular case of the batch with the same answers would have."""
    items = (
        BatchItem.objects.filter(case_id__in=list(case_ids), is_check=True)
        .exclude(status=BatchItem.Status.WITHDRAWN)
        .order_by("case_id", "-iteration__number", "-id")
    )
    newest: dict[int, int] = {}
    for case_id, item_id in items.values_list("case_id", "pk"):
        newest.setdefault(case_id, item_id)
    answers: dict[int, list[str]] = {item_id: [] for item_id in newest.values()}
    for item_id, answer in (
        check_labels().filter(batch_item_id__in=answers).values_list("batch_item_id", "answer")
    ):
        answers[item_id].append(answer)
    return {
        case_id: pool_state_for_answers(answers[item_id], in_batch=True, seed_positive=False)
        for case_id, item_id in newest.items()
    }


def pool_counts_shown_to(user: Any, dataset: Dataset, counts: dict[str, int]) -> dict[str, int]:
    """Cases per pool state as ``user`` is shown them: for an expert each hidden check counts
    in the state a batch case with its answers would be in, not in P (a count that did not move
    when they answered would give the check away)."""
    if is_admin(user):
        return counts
    checks = (
        BatchItem.objects.filter(
            iteration__dataset=dataset, is_check=True, case__pool_state=PoolState.POSITIVE
        )
        .values_list("case_id", flat=True)
        .distinct()
    )
    shown = dict(counts)
    for state in shown_pool_states(checks).values():
        shown[PoolState.POSITIVE.value] -= 1
        shown[state] = shown.get(state, 0) + 1
    return shown


def n_labeled_shown_to(user: Any, dataset: Dataset) -> int:
    """``dataset.n_labeled`` (confirmed and not confirmed cases) as ``user`` is shown it."""
    n = getattr(dataset, "n_labeled", 0) or 0
    if is_admin(user):
        return n
    counts = pool_counts_shown_to(user, dataset, {PoolState.POSITIVE.value: 0})
    return n + sum(counts.get(s, 0) for s in (PoolState.CONFIRMED, PoolState.NOT_CONFIRMED))


def cases_shown_as_regular(user: Any, cases: Iterable[Case]) -> None:
    """Show ``user`` (unless an admin) the check cases among ``cases`` as regular batch cases.

    Changes the instances in memory only (``pool_state`` as a regular case would have it,
    ``seed_positive`` off): they are for display and must never be saved.
    """
    if is_admin(user):
        return
    cases = [case for case in cases if case is not None]
    if not cases:
        return
    states = shown_pool_states(case.pk for case in cases if case.pool_state == PoolState.POSITIVE)
    for case in cases:
        if case.pk in states:
            case.pool_state = states[case.pk]
            case.seed_positive = False


def labels_in_scope(labels: Iterable[Label], item: BatchItem | None) -> list[Label]:
    """The labels among a case's ``labels`` that count together with ``item``, the way
    :mod:`labelapp.services.labels` counts them: a hidden check's own answers on a check, the
    answers given outside hidden checks anywhere else."""
    labels = list(labels)
    if item is not None and item.is_check:
        return [lb for lb in labels if lb.batch_item_id == item.pk]
    item_ids = {lb.batch_item_id for lb in labels if lb.batch_item_id}
    if not item_ids:
        return labels
    checks = set(
        BatchItem.objects.filter(pk__in=item_ids, is_check=True).values_list("pk", flat=True)
    )
    return [lb for lb in labels if lb.batch_item_id not in checks]


def labels_shown_with(user: Any, labels: Iterable[Label], item: BatchItem | None) -> list[Label]:
    """A case's labels as ``user`` may see them beside ``item``: an admin every one, an expert
    those that count with it (another expert's answer to an earlier check of a seed would tell
    that the case is one)."""
    return list(labels) if is_admin(user) else labels_in_scope(labels, item)


@dataclass(frozen=True)
class Answerer:
    """Who gave a standing answer on a case, with their recall on hidden checks."""

    username: str
    answer: str
    checks: CheckRecall | None


def answerers_with_recall(dataset: Dataset, case_ids: Iterable[int]) -> dict[int, list[Answerer]]:
    """Per case id: the experts whose settled answers stand on it (hidden checks aside), each
    with their recall on the dataset's hidden checks: how far their "confirmed" can be trusted
    to find a positive, beside a flag that doubts it."""
    recall = check_recall_by_user(dataset=dataset)
    labels = (
        Label.objects.filter(case_id__in=list(case_ids), answer__in=SETTLING)
        .filter(undone_by__isnull=True)
        .without_checks()
        .order_by("created_at", "id")
        .values_list("case_id", "user_id", "user__username", "answer")
    )
    out: dict[int, list[Answerer]] = {}
    for case_id, user_id, username, answer in labels:
        out.setdefault(case_id, []).append(Answerer(username, answer, recall.get(user_id)))
    return out
