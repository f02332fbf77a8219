"""Reads of cases for lists and details: filters and the current answer, over the cases the
user may see (:func:`labelapp.policy.cases_visible_to`)."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.expressions import OrderBy

from labelapp.models import Case, Dataset, Label
from labelapp.policy import cases_visible_to
from labelapp.roles import is_admin
from labelapp.selectors.case_expressions import case_expression_filter, case_expression_parse
from labelapp.selectors.checks import has_check, shown_pool_states

NO_ANSWER = "none"


def current_answer_subquery() -> Subquery:
    """The case's standing answer: its latest label that is neither an undo nor undone."""
    standing = (
        Label.objects.filter(case=OuterRef("pk"))
        .exclude(answer=Label.Answer.UNDONE)
        .exclude(Exists(Label.objects.filter(undoes=OuterRef("pk"))))
        .order_by("-created_at", "-id")
        .values("answer")[:1]
    )
    return Subquery(standing)


def case_list(
    *,
    user: Any,
    dataset: Dataset,
    pool_state: list[str] | None = None,
    score_min: float | None = None,
    score_max: float | None = None,
    answer: list[str] | None = None,
    iteration: int | None = None,
    where: str = "",
    search: str = "",
    ordering: str = "row",
) -> QuerySet[Case]:
    """The dataset's cases visible to ``user``, filtered, with ``current_answer`` annotated.

    ``answer`` values are label answers or ``"none"`` (no standing answer); ``iteration`` keeps
    the cases selected into that iteration's batch; ``where`` is a condition in the expression
    language (``learning.expressions.ExpressionError`` if it is not one); ``search`` a case or
    entity id.
    """
    cases = cases_visible_to(user, dataset.cases.with_shown_scores(dataset)).annotate(
        current_answer=current_answer_subquery()
    )
    if pool_state:
        cases = cases.filter(pool_state_filter(user, cases, pool_state))
    if score_min is not None:
        cases = cases.filter(score__gte=score_min)
    if score_max is not None:
        cases = cases.filter(score__lte=score_max)
    if answer:
        wanted = Q(current_answer__in=[a for a in answer if a != NO_ANSWER])
        if NO_ANSWER in answer:
            wanted |= Q(current_answer__isnull=True)
        cases = cases.filter(wanted)
    if iteration is not None:
        cases = cases.filter(batch_items__iteration_id=iteration)
    if search:
        cases = cases.filter(Q(case_id=search) | Q(entity_id=search))
    if where.strip():
        expression = case_expression_parse(dataset, where)
        cases = cases.filter(case_expression_filter(dataset, expression))
    return cases.order_by(_order(ordering), "id")


def _order(ordering: str) -> OrderBy | str:
    """``score``/``-score`` in the null placement the score index holds (forward or backward)."""
    if ordering.lstrip("-") != "score":
        return ordering
    if ordering.startswith("-"):
        return F("score").desc(nulls_last=True)
    return F("score").asc(nulls_first=True)


def pool_state_filter(user: Any, cases: QuerySet[Case], pool_state: list[str]) -> Q:
    """Cases in ``pool_state``; for an expert, a hidden check counts in the state they are shown
    (:func:`labelapp.selectors.checks.shown_pool_states`), never as the seed it is."""
    wanted = Q(pool_state__in=pool_state)
    if is_admin(user):
        return wanted
    checks = list(cases.filter(has_check()).values_list("pk", flat=True))
    if not checks:
        return wanted
    shown = shown_pool_states(checks)
    keep = [pk for pk, state in shown.items() if state in pool_state]
    return (wanted & ~Q(pk__in=list(shown))) | Q(pk__in=keep)


def case_detail_queryset(user: Any) -> QuerySet[Case]:
    """Cases visible to ``user`` with what a case's detail shows (labels, batch items)."""
    return (
        cases_visible_to(user)
        .select_related("dataset", "dataset__current_model")
        .prefetch_related("labels__user", "labels__pattern", "batch_items")
        .annotate(current_answer=current_answer_subquery())
    )
