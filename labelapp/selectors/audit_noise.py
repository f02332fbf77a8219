"""Reads of the label-noise audit: flags, the experts' answers, agreement between experts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import QuerySet

from labelapp.models import Dataset, Label, NoiseFlag
from learning.noise import cohens_kappa, paired_answers

SETTLING = (Label.Answer.CONFIRMED, Label.Answer.NOT_CONFIRMED)


@dataclass
class ExpertAnswers:
    """Answers that count (not undone), in time order: case row, expert's name, answer.

    Answers on hidden checks are left out: they measure the expert, not the case."""

    rows: np.ndarray
    users: np.ndarray
    answers: np.ndarray
    rounds: np.ndarray


def expert_answers(dataset: Dataset) -> ExpertAnswers:
    values = list(
        Label.objects.filter(case__dataset=dataset, answer__in=SETTLING, undone_by__isnull=True)
        .without_checks()
        .order_by("created_at", "id")
        .values_list("case__row", "user__username", "answer", "review_round")
    )
    if not values:
        empty = np.array([], dtype=object)
        return ExpertAnswers(np.array([], dtype=np.int64), empty, empty, np.array([], int))
    rows, users, answers, rounds = zip(*values, strict=True)
    return ExpertAnswers(
        np.asarray(rows, dtype=np.int64),
        np.asarray(users, dtype=object),
        np.asarray(answers, dtype=object),
        np.asarray(rounds, dtype=int),
    )


@dataclass
class Agreement:
    """Agreement between experts on the cases two of them answered."""

    kappa: float
    n_pairs: int
    n_agree: int
    n_reviewed: int
    n_upheld: int

    @property
    def observed(self) -> float | None:
        return self.n_agree / self.n_pairs if self.n_pairs else None


def expert_agreement(dataset: Dataset) -> Agreement:
    """Cohen's kappa over every case answered by two experts (double labeling, second looks);
    and how many second looks upheld the flagged positive."""
    answers = expert_answers(dataset)
    first, second = paired_answers(answers.rows, answers.users, answers.answers)
    reviewed = NoiseFlag.objects.filter(dataset=dataset, status=NoiseFlag.Status.REVIEWED)
    upheld = Label.objects.filter(
        case__noise_flags__in=reviewed,
        via=Label.Via.REVIEW,
        answer=Label.Answer.CONFIRMED,
        undone_by__isnull=True,
    )
    return Agreement(
        kappa=cohens_kappa(first, second),
        n_pairs=len(first),
        n_agree=int((first == second).sum()) if len(first) else 0,
        n_reviewed=reviewed.count(),
        n_upheld=upheld.values("case").distinct().count(),
    )


def noise_flags(dataset: Dataset, *, status: str | None = None) -> QuerySet[NoiseFlag]:
    flags = NoiseFlag.objects.filter(dataset=dataset).select_related("case", "reviewer")
    return flags.filter(status=status) if status else flags


def reviews_for(user: Any) -> QuerySet[NoiseFlag]:
    """Flags sent to ``user`` for a second look and not answered yet."""
    return (
        NoiseFlag.objects.filter(reviewer=user, status=NoiseFlag.Status.SENT)
        .select_related("case", "dataset")
        .order_by("sent_at", "id")
    )


def first_answers(flag: NoiseFlag) -> list[Label]:
    return list(
        Label.objects.filter(case=flag.case, answer__in=SETTLING, undone_by__isnull=True)
        .without_checks()
        .select_related("user")
        .order_by("created_at", "id")
    )
