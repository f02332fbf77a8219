"""Similar cases: the case page's htmx panel and the admin's "more like this" action."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from labelapp.models import Case
from labelapp.policy import Action, require_case, requires
from labelapp.roles import is_admin
from labelapp.selectors.checks import check_case_ids
from labelapp.selectors.similar import similar_cases
from labelapp.services.similar import MORE_LIKE_THIS_SIZE, batch_more_like_this


@requires(Action.CASE_VIEW)
def case_similar_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Fragment: the most similar known positives and "not confirmed" cases, the kNN score."""
    case = get_object_or_404(Case.objects.select_related("dataset__current_model"), pk=pk)
    require_case(request.user, case)  # the case page's own rule: a case in the expert's queue
    panel = similar_cases(case)
    if not is_admin(request.user):
        # A seed listed here that the expert met as a batch case would give the check away.
        checks = check_case_ids(s.case.pk for s in panel.confirmed)
        panel.confirmed = [s for s in panel.confirmed if s.case.pk not in checks]
    return render(
        request,
        "labelapp/case_similar.html",
        {"case": case, "panel": panel, "more_like_this_size": MORE_LIKE_THIS_SIZE},
    )


@requires(Action.ITERATION_RUN)
@require_POST
def more_like_this_view(request: HttpRequest, pk: int) -> HttpResponse:
    case = get_object_or_404(Case.objects.select_related("dataset"), pk=pk)
    try:
        size = max(1, min(int(request.POST.get("size", MORE_LIKE_THIS_SIZE)), 500))
    except ValueError:
        size = MORE_LIKE_THIS_SIZE
    try:
        iteration, items = batch_more_like_this(user=request.user, case=case, size=size)
    except FileNotFoundError as exc:
        messages.error(request, f"No batch built: {exc}.")
    else:
        messages.success(
            request,
            f"{len(items)} cases like {case.case_id} added to the batch of iteration "
            f"#{iteration.number}.",
        )
    return redirect("case-detail", pk=case.pk)


urlpatterns = [
    path("cases/<int:pk>/similar/", case_similar_view, name="case-similar"),
    path("cases/<int:pk>/more-like-this/", more_like_this_view, name="case-more-like-this"),
]
